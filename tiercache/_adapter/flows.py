"""What the adapters do, written once: get, set, delete and clear over the two tiers.

Flows like ``_decorator.flow``'s, driven by the same shells: ``MultiTierCacheAdapter`` awaits them and
``MultiTierCache`` runs them in the calling thread.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final

from tiercache._core import ops
from tiercache._core.checks import milliseconds, shortening
from tiercache._core.ops import Flow, Op, know_generation, l2_op, write_in_generation
from tiercache._core.repairs import drop_keys, new_generation, replay_repairs
from tiercache._l1.lru import MISSING

if TYPE_CHECKING:
    from tiercache._adapter.tiers import AdapterTiers
    from tiercache._l2.deployments import Endpoint

__all__ = ["UNCHANGED", "clear", "delete", "get_many", "ping", "set_many", "update"]

#: What update()'s ``change`` returns to leave the key as it is.
UNCHANGED: Final = object()
#: Compare-and-swap tries before update() gives up on a key other writers keep changing.
MAX_SWAPS: Final = 64


def _usable(tiers: AdapterTiers) -> Generator[Op, Any, Endpoint | None]:
    """Return the endpoint if L2 may be used now (breaker closed, old repairs replayed)."""
    endpoint = tiers.endpoint()
    if endpoint is None or not endpoint.breaker.allow():
        return None
    return endpoint if (yield from replay_repairs(tiers, endpoint)) else None


def _ready_to_write(tiers: AdapterTiers, endpoint: Endpoint) -> Generator[Op, Any, bool]:
    """Whether L2 may be written now: breaker closed, old repairs replayed, the generation known."""
    if endpoint.breaker.allow() and (yield from replay_repairs(tiers, endpoint)):
        return (yield from know_generation(tiers, endpoint))
    return False


def get_many(tiers: AdapterTiers, keys: tuple[str, ...]) -> Flow:
    """Return ``{key: value}`` for the keys found: L1 first, the rest in one MGET."""
    started = time.perf_counter_ns()
    lease = tiers.l1.lease()  # before the L2 read: a delete from now on keeps its values out of L1
    found: dict[str, Any] = {}
    wanted: list[str] = []
    for key in keys:
        value = tiers.l1.get(key)
        if value is MISSING:
            wanted.append(key)
        else:
            found[key] = value
            tiers.record(started, "l1_hits")
    endpoint = (yield from _usable(tiers)) if wanted else None
    if endpoint is not None:
        if tiers.settings.write_back_l1_on_l2_hit:
            tiers.note(wanted)  # before the read: an invalidation from now on voids the lease
        tiers.stats.count("l2_lookups", len(wanted))
        generation_key: str | None = tiers.generation_key  # with every read: a clear is final at once
        read = ops.read_many(endpoint, tuple(tiers.key(k) for k in wanted), generation_key, owner=tiers)
        ok, reply = yield from l2_op(tiers, endpoint, read)
        if ok:
            generation, payloads = reply
            for key, payload in zip(wanted, payloads, strict=True):
                _, _, hit = tiers.remote.take_read(
                    endpoint, generation_key, generation, payload, tiers.key(key)
                )
                generation_key = None  # (learned with the first)
                if hit is not MISSING:
                    found[key], fresh_for = hit
                    if tiers.settings.write_back_l1_on_l2_hit:
                        tiers.l1.set(key, found[key], max(fresh_for, 0.0), lease)
                    tiers.record(started, "l2_hits")
    for key in wanted:
        if key not in found:
            tiers.record(started, "misses")
    return found


def set_many(tiers: AdapterTiers, items: Mapping[str, Any], ttl: float | None) -> Flow:
    """Write ``items`` to L2 in one round trip, and to L1 as the settings say.

    A delete of one of them while the write is under way wins in L1 as it does in Redis's order.
    A key Redis did not take (unreachable, refusing, a value only L1 can hold) is invalidated
    there, now or once Redis is back, so the value this set replaced is not read again; sets of
    one key at once leave it out of L1 (see SetsUnderWay).
    """
    tiers.sets += len(items)
    lease = tiers.l1.lease()
    stored: set[str] = set()
    endpoint = tiers.endpoint()
    # One jitter draw per key, for both tiers (see shortening): 1.0 without ttl_jitter.
    keep = {key: shortening(tiers.settings.ttl_jitter) for key in items}
    l1_seconds = ttl if ttl is not None else tiers.local.ttl
    if endpoint is None:
        for key, value in items.items():
            _keep_local(tiers, key, value, l1_seconds * keep[key], lease, stored=False)
        return
    tiers.note(items)  # before the write: another process's change from now on voids the lease
    for key in items:
        tiers.sets_under_way.begin(key)
    refused = True  # (until the flow ends: a value refused while sealed raises, and is kept nowhere)
    try:
        stored = yield from _write_many(tiers, endpoint, items, ttl, keep)
        # What Redis did not take, it must not go on serving: the old value is invalidated.
        left = tuple(tiers.key(key) for key in items if key not in stored)
        if left:
            yield from drop_keys(tiers, endpoint, left, action="set()")
        refused = False
    finally:
        for key, value in items.items():
            seconds = l1_seconds * keep[key]
            kept = (
                functools.partial(tiers.l1.delete, key)
                if refused
                else functools.partial(
                    _keep_local,
                    tiers,
                    key,
                    value,
                    seconds,
                    _after_write(tiers, key, lease),
                    stored=key in stored,
                )
            )
            tiers.sets_under_way.end(key, kept)


def _write_many(
    tiers: AdapterTiers,
    endpoint: Endpoint,
    items: Mapping[str, Any],
    ttl: float | None,
    keep: dict[str, float],
) -> Generator[Op, Any, set[str]]:
    """Write ``items`` to L2 in one round trip, in the current generation; return the keys Redis took."""
    if not (yield from _ready_to_write(tiers, endpoint)):
        return set()
    l2_seconds = ttl or tiers.settings.l2_ttl_seconds
    payloads: dict[str, bytes | None] = {}

    def seal() -> tuple[tuple[str, bytes, int], ...]:
        payloads.update(
            (key, tiers.remote.seal_value(endpoint, value, tiers.key(key), ttl=l2_seconds * keep[key]))
            for key, value in items.items()
        )
        return tuple(
            (tiers.key(key), payload, milliseconds(l2_seconds * keep[key]))
            for key, payload in payloads.items()
            if payload is not None
        )

    announce = tiers.coherence.announce([tiers.key(key) for key in items])
    if not (yield from write_in_generation(tiers, endpoint, seal, announce)):
        return set()
    return {key for key, payload in payloads.items() if payload is not None}


def _after_write(tiers: AdapterTiers, key: str, lease: int) -> int | None:
    """Drop ``key`` from L1 once our write of it is done; return the lease our own value keeps.

    Gets under way here may have read Redis before our write: their leases go, or one would
    keep its older answer over our value. Ours holds unless the key was dropped since ``lease``
    (another process's change, after ours in Redis): None then, and L1 keeps nothing.
    """
    return tiers.coherence.drop_since(key, lease)


def _keep_local(
    tiers: AdapterTiers, key: str, value: Any, seconds: float, lease: int | None, *, stored: bool
) -> None:
    # (None: a change heard while we wrote Redis came after ours: nothing is kept)
    if lease is None:
        tiers.l1.delete(key)
        return
    # Without write-through L1 fills on the next get; a value L2 could not take stays in L1.
    if tiers.settings.write_through or not stored:
        tiers.l1.set(key, value, seconds, lease)  # (its digest was noted before Redis was asked)
    else:
        tiers.l1.delete(key)


def update(
    tiers: AdapterTiers, key: str, change: Callable[[Any], Any], ttl: float | None, *, keep_ttl: bool = False
) -> Flow:
    """Set ``key`` to ``change(value)`` in both tiers; return ``(value, what change returned)``.

    ``change`` gets MISSING for an absent key; it returns UNCHANGED to write nothing, or raises
    to stop. In L2 the read and the write are one compare-and-swap, tried again while other
    writers change the key in between: no concurrent update is lost, and ``change`` may run more
    than once. The new value lives ``ttl`` seconds (None: the default), or with ``keep_ttl``
    what the old one had left. With L2 off or unreachable, L1 alone, as set() does, and the old
    value is invalidated in Redis (now or once it is back).
    """
    lease = tiers.l1.lease()
    endpoint = tiers.endpoint()
    l1_default = ttl if ttl is not None else tiers.local.ttl
    if endpoint is None:
        current, new = _change_locally(tiers, key, change)
        if new is not UNCHANGED:
            _keep_local(tiers, key, new, l1_default, lease, stored=False)
        return current, new
    kept: Callable[[], object] = lambda: None  # noqa: E731 - what SetsUnderWay.end() keeps in L1: nothing yet
    tiers.note((key,))  # before the swap, as set_many() does
    tiers.sets_under_way.begin(key)
    try:
        swapped = yield from _swap(tiers, endpoint, key, change, ttl, keep_ttl=keep_ttl)
        if swapped is not None:
            current, new, l1_seconds = swapped
            if new is not UNCHANGED:
                own = _after_write(tiers, key, lease)
                kept = functools.partial(_keep_local, tiers, key, new, l1_seconds, own, stored=True)
            return current, new
        # Redis could not take it: L1 alone, and Redis must not go on serving what it replaced.
        current, new = _change_locally(tiers, key, change)
        if new is not UNCHANGED:
            yield from drop_keys(tiers, endpoint, (tiers.key(key),), action="update()")
            own = _after_write(tiers, key, lease)
            kept = functools.partial(_keep_local, tiers, key, new, l1_default, own, stored=False)
        return current, new
    finally:
        tiers.sets_under_way.end(key, kept)


def _change_locally(tiers: AdapterTiers, key: str, change: Callable[[Any], Any]) -> tuple[Any, Any]:
    current = tiers.l1.get(key)
    return current, change(current)


def _swap(
    tiers: AdapterTiers,
    endpoint: Endpoint,
    key: str,
    change: Callable[[Any], Any],
    ttl: float | None,
    *,
    keep_ttl: bool,
) -> Generator[Op, Any, tuple[Any, Any, float] | None]:
    """Compare-and-swap ``key`` in L2; return ``(value, new value, its L1 seconds)``, None if L2 could not."""
    if not (yield from _ready_to_write(tiers, endpoint)):
        return None
    redis_key = tiers.key(key)
    for _ in range(MAX_SWAPS):
        # The generation is read with the key, every time: with one learned a moment ago, an
        # entry another process wrote after a clear would look stale, and be overwritten.
        read = ops.read_many(endpoint, (redis_key,), tiers.generation_key, owner=tiers)
        ok, reply = yield from l2_op(tiers, endpoint, read)
        if not ok:
            return None
        generation, (payload,) = reply
        _, _, hit = tiers.remote.take_read(endpoint, tiers.generation_key, generation, payload, redis_key)
        current, left = (MISSING, 0.0) if hit is MISSING else hit
        new = change(current)
        if new is UNCHANGED:
            return current, new, 0.0
        seconds = left if keep_ttl and left > 0 else ttl or tiers.settings.l2_ttl_seconds
        sealed = tiers.remote.seal_value(endpoint, new, redis_key, ttl=seconds)
        if sealed is None:  # only L1 can hold it
            return None
        announce = tiers.coherence.announce((redis_key,))
        swap = ops.swap(
            endpoint, redis_key, payload, sealed, milliseconds(seconds), announce=announce, owner=tiers
        )
        ok, swapped = yield from l2_op(tiers, endpoint, swap)
        if not ok:
            return None
        if swapped:
            return current, new, seconds if keep_ttl or ttl is not None else tiers.local.ttl
    raise RuntimeError(f"{tiers.label}: {key!r} changed under each of {MAX_SWAPS} tries to update it")


def delete(tiers: AdapterTiers, keys: tuple[str, ...]) -> Flow:
    """Drop ``keys`` from L1 and L2 (now, or once L2 can be reached again).

    Raise InvalidationError (after the local drop) if Redis refused.
    """
    tiers.deletes += len(keys)
    tiers.coherence.drop_local(keys)
    endpoint = tiers.endpoint()
    if endpoint is not None:
        try:
            redis_keys = tuple(tiers.key(key) for key in keys)
            yield from drop_keys(tiers, endpoint, redis_keys, action="delete()")
        finally:
            # Again: a get that missed L1 after the first drop may have read the old value from
            # L2 before it was gone there, and be about to put it in L1.
            tiers.coherence.drop_local(keys)


def clear(tiers: AdapterTiers) -> Flow:
    """Drop every entry of this adapter's namespace: L1 at once, L2 by a new generation.

    Raise InvalidationError (after the local drop) if Redis refused.
    """
    tiers.coherence.drop_local(None)
    endpoint = tiers.endpoint()
    if endpoint is not None:
        try:
            yield from new_generation(tiers, endpoint, action="clear()")
        finally:
            tiers.coherence.drop_local(None)  # again, as in delete()


def ping(tiers: AdapterTiers) -> Flow:
    """Return whether L2 answers (an unreachable one opens the breaker, never raises)."""
    endpoint = tiers.endpoint()
    if endpoint is None or not endpoint.breaker.allow():
        return False
    ok, _ = yield from l2_op(tiers, endpoint, ops.ping(endpoint, owner=tiers))
    return bool(ok)
