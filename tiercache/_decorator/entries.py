"""What a caller asks of one entry directly: peek at it, or put a value in it (``cache_get``/``cache_set``).

Flows, as ``flow``'s, driven by the same shells. Neither runs the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tiercache._core.ops import Flow, know_generation, l2_op, write_in_generation
from tiercache._core.repairs import drop_keys, replay_repairs
from tiercache._decorator.call import Call
from tiercache._decorator.flow import read_op
from tiercache._decorator.tags import claim_tokens
from tiercache._l1.lru import MISSING

if TYPE_CHECKING:
    from tiercache._decorator.function import FunctionCache
    from tiercache._l2.deployments import Endpoint

__all__ = ["peek", "put"]


def peek(
    cache: FunctionCache,
    key_values: tuple[Any, ...],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> Flow:
    """Return the live value of the call with these key values (L1, else L2), or MISSING.

    A stale value is not live. Found in L2, it is kept in L1 as a hit would be (under a lease
    taken before the read, so an invalidation meanwhile keeps it out).
    """
    enabled, endpoint = cache.route()
    if not enabled:
        return MISSING
    l1_key, canonical = cache.keys.l1_key(key_values)
    call = Call(l1_key, key_values, args, kwargs, canonical=canonical)
    if cache.has_l1:
        call.lease = cache.l1.lease()
        value, due = cache.l1.lookup(l1_key)
        if value is not MISSING:
            return value
        if due is not None and cache.l1.due(due):
            return due[0]  # still within its life
    if cache.tags is not None:
        cache.tags.note(call)  # (what we keep in L1 below, invalidate_tags() must find)
    if endpoint is None or not endpoint.breaker.allow():
        return MISSING
    return (yield from _peek_l2(cache, call, endpoint))


def _peek_l2(cache: FunctionCache, call: Call, endpoint: Endpoint) -> Flow:
    if cache.owed.any and not (yield from replay_repairs(cache, endpoint)):
        return MISSING
    call.redis_key, generation_key, call.generation = cache.read_of(call)
    ok, reply = yield from l2_op(cache, endpoint, read_op(cache, call, endpoint, generation_key))
    if not ok:
        return MISSING
    tags = cache.tags.take(call, reply[2]) if cache.tags is not None else None
    _, _, found = cache.remote.take_read(endpoint, generation_key, reply[0], reply[1], call.redis_key, tags)
    if found is MISSING or found[1] <= 0:
        return MISSING
    value, fresh_for = found
    if cache.has_l1:
        cache.l1.set(call.l1_key, value, cache.lifetimes.l1_seconds(value, fresh_for), call.lease)
    return value


def put(
    cache: FunctionCache,
    key_values: tuple[Any, ...],
    value: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> Flow:
    """Make ``value`` the call's cached result in both tiers, as an invalidation would clear it.

    It replaces what the entry held under a new token, so a value computed from before (here or
    in another process) is refused as after ``cache_invalidate``, and other L1s drop theirs. A
    value Redis cannot hold (its type, its size, an outage) leaves the old one invalidated there,
    now or once Redis is back; InvalidationError if Redis refuses that too. The TTL functions and
    jitter apply; ``cache_if`` does not (the caller asked for this value).
    """
    enabled, endpoint = cache.route()
    l1_key, canonical = cache.keys.l1_key(key_values)
    if endpoint is None and canonical is None:
        cache.keys.check_raw(key_values)  # (with L2, redis_key() encodes the key, and checks it)
    cache.coherence.drop_local((l1_key,))  # runs under way here write nothing from now on
    # Before the write: another process's change of the key from now on (heard as a drop)
    # keeps our value out of L1, as it is after ours in Redis.
    since = cache.l1.lease()
    l1_seconds, l2_seconds, to_l1, to_l2 = cache.lifetimes.keeping(value, asked=True)
    call = Call(l1_key, key_values, args, kwargs, canonical=canonical)
    if cache.tags is not None:
        cache.tags.note(call)  # (the value we keep in L1, invalidate_tags() must find)
    if endpoint is None:  # L1 is the only store there is: the last set wins
        _keep(cache, call, value, l1_seconds, cache.l1.lease(), keep=enabled and to_l1)
        return
    # (redis_key() notes the key's digest: other processes' announcements of it must find
    # the entry we are about to keep in L1)
    key = cache.redis_key(call)
    kept = False
    lease: int | None = None
    # Another set of the key at once: which one Redis kept is not known here.
    cache.sets_under_way.begin(l1_key)
    try:
        written = False
        try:
            if enabled and to_l2:
                written = yield from _write(cache, endpoint, call, key, value, l2_seconds)
            if not written:  # no new value in Redis: the old one must not outlive this call there
                yield from drop_keys(cache, endpoint, (key,), action="cache_set()")
        finally:
            # Again, as invalidate() does: a caller that missed L1 after the first drop may have
            # read the old value from Redis before our write, and be about to keep it in L1.
            # Our own write keeps a lease, unless the key was dropped since ``since``.
            lease = cache.coherence.drop_since(l1_key, since)
        kept = enabled and to_l1
    finally:
        cache.sets_under_way.end(l1_key, lambda: _keep(cache, call, value, l1_seconds, lease, keep=kept))


def _keep(
    cache: FunctionCache, call: Call, value: Any, seconds: float | None, lease: int | None, *, keep: bool
) -> None:
    """Keep a set's value in L1 (``keep``) under ``lease``, taken at the set's last drop (None: none).

    None: the key was dropped while the set wrote Redis (another process's change, after ours
    there), so L1 keeps nothing and the next read asks Redis.
    """
    if lease is None:
        return
    if cache.tags is not None:
        # Noted again, after the lease: a drop of these tags since the first note (another
        # process's, or the echo of one made here before) took that note away, and our entry
        # would have been kept where no invalidation of its tags could find it. From the lease
        # on, such a drop voids it instead (and keeps this value out of L1: a miss, not stale).
        cache.tags.note(call)
    if keep and cache.has_l1:
        cache.l1.set(call.l1_key, value, seconds, lease)


def _write(  # noqa: PLR0917 - one put's state
    cache: FunctionCache, endpoint: Endpoint, call: Call, key: str, value: Any, seconds: float | None
) -> Flow:
    """Write ``value`` under ``key`` unconditionally, and announce it; return whether Redis took it."""
    if not endpoint.breaker.allow():
        return False
    if cache.owed.any and not (yield from replay_repairs(cache, endpoint)):
        return False
    if not (yield from know_generation(cache, endpoint)):
        return False
    tags = b""
    if cache.tags is not None:  # the tokens the tags hold now (claimed where none): an invalidation
        # from now on makes this value a miss, as it would any value set before it
        held = yield from claim_tokens(cache, endpoint, cache.tags.keys_of(call))
        tags = (cache.tags.take(call, held) if held is not None else b"") or b""
        if not tags:
            return False
    ttl_ms = cache.lifetimes.l2_ttl_ms(seconds)

    def seal() -> tuple[tuple[str, bytes, int], ...]:
        payload = cache.remote.seal_value(endpoint, value, key, read=None, ttl=seconds, tags=tags)
        return () if payload is None else ((key, payload, ttl_ms),)

    return (yield from write_in_generation(cache, endpoint, seal, cache.coherence.announce((key,))))
