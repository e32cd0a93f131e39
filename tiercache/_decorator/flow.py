"""The tier routing of a decorated function, written once.

Each flow is a generator that decides, records and yields the I/O it wants done (``_core.ops``);
it is sent the results, or has the I/O's exception thrown into it. ``_core.shells`` drives flows
for sync and async callers. Nothing here waits on I/O or imports asyncio or redis (L2 appears as
its endpoint, whether its breaker allows a try, and its errors; what payloads and tokens are is
the cache's business), so every decision can be tested by sending values in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from tiercache._core import ops
from tiercache._core.flights import Settled
from tiercache._core.ops import Await, Compute, Flow, Join, Land, Op, Outcome, Overran, Sleep, Spawn, l2_op
from tiercache._core.repairs import drop_keys, new_generation, replay_repairs
from tiercache._core.stats import LOOKED_UP
from tiercache._decorator.call import Call
from tiercache._decorator.keys import UnkeyableArgumentError
from tiercache._decorator.tags import claim_tokens
from tiercache._errors import ComputeTimeoutError
from tiercache._l1.lru import MISSING
from tiercache._l2.errors import RemoteError, RemoteUnavailable

#: Seconds of a tombstone's life a write keeps clear of (Redis's clock and ours may differ).
TOMBSTONE_MARGIN: Final = 1.0

if TYPE_CHECKING:
    from tiercache._decorator.function import FunctionCache
    from tiercache._decorator.function_tags import FunctionTags
    from tiercache._l2.deployments import Endpoint

__all__ = ["CHUNK", "clear", "invalidate", "note_before_run", "refresh", "serve", "write_op"]


def serve(cache: FunctionCache, call: Call) -> Flow:  # noqa: PLR0912 - a branch per tier, see below
    """Answer a call the fast path could not: from L1, else L2, else one run per key.

    The L2 read is yielded from here, not from a helper generator: every L2 hit takes this
    path, and each generator level costs a frame on every step.
    """
    enabled, endpoint = cache.route()  # resolves settings (and joins the channel) before the lease
    if call.canonical is None:
        try:  # (raw keys, as the fast path took them: only their size can be wrong)
            cache.keys.check_raw(call.key_values)
        except UnkeyableArgumentError:
            cache.record(call, "misses", error=True)  # an error, not the L1 hit its tick counted
            raise
    stale = None
    answered = False  # whether L2 answered our read (see _unanswered)
    if cache.has_l1:
        call.lease = cache.l1.lease()  # before any slow read: an invalidation from now on voids it
        value, stale = cache.l1.lookup(call.l1_key)
        if value is not MISSING:
            cache.record(call, "l1_hits")
            return value
    if cache.tags is not None:
        cache.tags.note(call)  # before the read: invalidate_tags() from now on voids the lease
    if not enabled:
        return (yield from _run(cache, call, None, stale, leading=False))
    if endpoint is not None and cache.owed.any:
        endpoint = yield from _unless_owed(cache, call, endpoint)
    # The breaker's state is read here, not asked (allow(), success()): a closed breaker with no
    # failures counted is the common case, and each call would be a frame on every L2 hit.
    if endpoint is not None and (endpoint.breaker.closed or endpoint.breaker.allow()):
        # Noted with the read: its generation, and when it went (real seconds: a value computed
        # from it may only be written while the key's tombstones last, and Redis times those).
        call.flags |= LOOKED_UP
        call.read_at = time.monotonic()
        call.redis_key, generation_key, call.generation = cache.read_of(call)
        read = (  # (read_op(), spelt out: a frame less per hit)
            ops.read_tagged(endpoint, call.redis_key, generation_key, cache.tags.keys_of(call), owner=cache)
            if cache.tags is not None
            else ops.Command(ops.READ, endpoint, (call.redis_key, generation_key), cache)
        )
        try:
            reply = yield read
        except RemoteError as exc:
            endpoint = _read_failed(cache, call, read, exc)
        else:
            if endpoint.breaker.failures or not endpoint.breaker.closed:
                endpoint.breaker.success()
            answered = True
            learned, call.token, call.found = cache.remote.take_read(
                endpoint,
                generation_key,
                reply[0],
                reply[1],
                call.redis_key,
                cache.tags.take(call, reply[2]) if cache.tags is not None else None,
            )
            if learned is not None:  # (as _read_done does; spelt out here, a frame less per hit)
                call.generation = learned
            if call.found is not MISSING and call.found[1] > 0:
                value, fresh_for = call.found
                lifetimes = cache.lifetimes
                if cache.has_l1:
                    seconds = lifetimes.l1_seconds(value, fresh_for) if lifetimes.l1_varies else fresh_for
                    cache.l1.set(call.l1_key, value, seconds, call.lease)
                if cache.options.refresh_ahead and lifetimes.due_in_l2(value, fresh_for):
                    return (yield from _serve_ahead(cache, call, value, endpoint, "l2_hits"))
                cache.record(call, "l2_hits")
                return value
            if call.found is not MISSING or (stale is not None and call.found_something):
                value, stale = yield from _not_fresh(cache, call, endpoint, stale)
                if value is not MISSING:
                    return value
    else:
        endpoint = None  # the breaker keeps this call off L2
    return (yield from _unanswered(cache, call, endpoint, stale, answered))


def _not_fresh(
    cache: FunctionCache, call: Call, endpoint: Endpoint, stale: tuple[Any, float] | None
) -> Generator[Op, Any, tuple[Any, tuple[Any, float] | None]]:
    """Take in what L2 found that is no fresh value: return the answer (else MISSING) and ``stale``.

    ``stale`` comes back None where Redis says the L1 entry was invalidated.
    """
    if call.found is not MISSING:
        if cache.stale_ttl:
            # Stale in L2, within stale_ttl: serve it now and have it refreshed behind our back.
            return (yield from _serve_stale(cache, call, call.found[0], endpoint)), stale
        # Past its TTL by our clock, not yet by Redis's (the two differ by their skew, or a
        # test's clock moved on): a miss. Writers' clocks behind ours only make it early.
        call.found = MISSING
        return MISSING, stale
    # Redis holds a tombstone, an entry of a cleared generation or of an old tag token: what L1
    # keeps stale was invalidated (unheard here: a deaf process, a channel lost for a moment),
    # so it is no fallback for a slow or failing run.
    if stale is not None:
        cache.l1.discard(call.l1_key, stale)
    return MISSING, None


def _unless_owed(cache: FunctionCache, call: Call, endpoint: Endpoint) -> Generator[Op, Any, Endpoint | None]:
    """Return ``endpoint``, or None while invalidations owed to it cover the call's key.

    Invalidations wait for Redis: until they are replayed there, Redis may still hold what they
    dropped, so the call does not read it (not even if the breaker closes meanwhile). Other keys'
    entries are not theirs to hide (on a cluster, their primary may be up).
    """
    if endpoint.breaker.allow() and (yield from replay_repairs(cache, endpoint)):
        return endpoint
    return None if cache.owed.covers(cache.redis_key(call)) else endpoint


def _unanswered(
    cache: FunctionCache,
    call: Call,
    endpoint: Endpoint | None,
    stale: tuple[Any, float] | None,
    answered: bool,
) -> Flow:
    """Answer a call neither tier could: from a stale L1 entry where one may, else one run per key.

    ``answered``: whether L2 answered the read (a miss there outranks a due L1 entry).
    """
    if stale is not None and not answered and cache.l1.due(stale):
        # Still within its life, near its end, and L2 has nothing newer to say: a hit.
        return (yield from _serve_ahead(cache, call, stale[0], endpoint, "l1_hits"))
    if stale is not None and cache.endpoint() is None:
        return (yield from _serve_stale(cache, call, stale[0], None))  # L1 is the only tier
    settled: Settled | None = yield Join(call.l1_key, cache.flights)
    if settled is not None:
        cache.record(call, "coalesced", error=settled.error is not None)
        return settled.unwrap()
    if cache.tags is not None:
        cache.tags.keep_findable(call)
    # Leading now: a run that ended while our L2 read was under way wrote L1 before it let go
    # of the key, so this look catches it and we do not run the function a second time.
    value = cache.l1.get(call.l1_key) if cache.has_l1 else MISSING
    if value is not MISSING:
        yield Land(call.l1_key, Settled(value, None), linger=False)
        cache.record(call, "l1_hits")
        return value
    return (yield from _run(cache, call, endpoint, stale, leading=True))


def read_op(cache: FunctionCache, call: Call, endpoint: Endpoint, generation_key: str | None) -> ops.Command:
    """Return the L2 read of ``call``: its entry (and generation), with its tags' tokens if it has tags."""
    if cache.tags is not None:
        return ops.read_tagged(
            endpoint, call.redis_key, generation_key, cache.tags.keys_of(call), owner=cache
        )
    return ops.read(endpoint, call.redis_key, generation_key, owner=cache)


def _read_done(cache: FunctionCache, call: Call, read: ops.Command, reply: tuple[Any, ...]) -> None:
    """Leave what the read found in ``call.found``, and the key's token in ``call.token``."""
    tags = (
        cache.tags.take(call, reply[2]) if cache.tags is not None and read.kind is ops.READ_TAGGED else None
    )
    learned, call.token, call.found = cache.remote.take_read(
        read.endpoint, read.arg("generation_key"), reply[0], reply[1], read.arg("key"), tags
    )
    if learned is not None:
        call.generation = learned  # the read's: a value computed from it is of this generation


def _read_failed(cache: FunctionCache, call: Call, read: ops.Command, error: RemoteError) -> Endpoint | None:
    """Count a failed read; return the endpoint to go on with, None once it is unreachable."""
    cache.remote_failed(read.endpoint, error)
    if isinstance(error, RemoteUnavailable):
        return None  # one failed operation per call at most
    call.read_refused()
    return read.endpoint


def _run(
    cache: FunctionCache,
    call: Call,
    endpoint: Endpoint | None,
    stale: tuple[Any, float] | None,
    *,
    leading: bool,
) -> Flow:
    """Run the function once, write its value back to the tiers that are up, and share it."""
    note_before_run(cache, call)
    # With a stale value at hand, a caller waits ``timeout`` at most; else ``hard_timeout``.
    soft = stale is not None and cache.options.timeout is not None
    if soft and stale is not None and cache.refreshes.running(call.l1_key):
        # A run of this key already outlasted its callers (or refreshes it): start no other.
        if leading:
            yield Land(call.l1_key, Settled(stale[0], None), linger=False)
        cache.record(call, "stale_served")
        return stale[0]
    wait = cache.options.timeout if soft else cache.options.hard_timeout
    overrun = cache.refreshes.overrun_of(call.l1_key) if wait is not None else None
    if overrun is not None and wait is not None:
        return (yield from _await_overrun(cache, call, overrun, wait, stale if soft else None, leading))
    lock = None
    if leading and endpoint is not None and cache.lock_ttl_ms:
        lock = yield from _lock_or_wait(cache, call, endpoint)
        if call.found is not MISSING:  # another process filled L2 while we waited
            value, fresh_for = call.found
            cache.l1.set(call.l1_key, value, cache.lifetimes.l1_seconds(value, fresh_for), call.lease)
            yield Land(call.l1_key, Settled(value, None), linger=False)
            cache.record(call, "l2_hits")
            return value
    if (
        cache.tags is not None
        and endpoint is not None
        and call.tag_tokens is not None
        and None in call.tag_tokens
    ):
        yield from _claim_tags(cache, cache.tags, call, endpoint)
    try:
        value = yield Compute(cache.function, call, wait, cache)
    except Overran as overran:
        return (
            yield from _overran(
                cache, call, endpoint, stale if soft else None, lock, overran.pending, leading
            )
        )
    except Exception as exc:
        if lock is not None and endpoint is not None:
            yield from l2_op(
                cache, endpoint, ops.release_lock(endpoint, cache.lock_key(call), lock, owner=cache)
            )
        return (yield from _failed(cache, call, stale, leading, exc))
    stored = yield from _store(cache, call, endpoint, value)
    if lock is not None and endpoint is not None:
        yield from l2_op(cache, endpoint, ops.release_lock(endpoint, cache.lock_key(call), lock, owner=cache))
    if leading:
        yield Land(call.l1_key, Settled(value, None), linger=stored)
    cache.record(call, "misses")
    return value


def _claim_tags(
    cache: FunctionCache, tags: FunctionTags, call: Call, endpoint: Endpoint
) -> Generator[Op, Any, None]:
    """Give the call's tags Redis holds no token for one, before the function runs.

    An entry never carries "no token" (a tag key that expired would otherwise bring entries
    invalidated under it back): the first claimant's token wins, and the value computed next
    carries it. If Redis cannot say, ``call.tag_tokens`` keeps its gaps and the value stays
    out of L2.
    """
    tokens = call.tag_tokens or []
    missing = [i for i, token in enumerate(tokens) if token is None]
    keys = tags.keys_of(call)
    held = yield from claim_tokens(cache, endpoint, tuple(keys[i] for i in missing))
    if held is None:
        return
    found = list(tokens)
    for i, token in zip(missing, held, strict=True):
        found[i] = token
    tags.take(call, found)


def _failed(
    cache: FunctionCache, call: Call, stale: tuple[Any, float] | None, leading: bool, error: Exception
) -> Flow:
    """Answer a caller whose run raised ``error``: with ``stale`` (fail-safe), else the error."""
    if stale is not None:  # fail-safe: a stale value beats an exception
        cache.log_once("fail-safe", "%s raised %r; serving its stale value instead", cache.label, error)
        if leading:
            yield Land(call.l1_key, Settled(stale[0], None), linger=False)
        cache.record(call, "stale_served")
        return stale[0]
    if leading:
        yield Land(call.l1_key, Settled(None, error), linger=False)
    cache.record(call, "misses", error=True)
    raise error


def _await_overrun(  # noqa: PLR0917 - _run's state, handed on whole
    cache: FunctionCache,
    call: Call,
    pending: Any,
    wait: float,
    stale: tuple[Any, float] | None,
    leading: bool,
) -> Flow:
    """Wait for the run of this key that outlasted an earlier caller, as long as for a run of our own.

    No second run starts (a hung upstream would get a thread per call); the run stores its value
    itself when it ends (see _finish).
    """
    try:
        value = yield Await(pending, wait)
    except Overran:
        return (yield from _timed_out(cache, call, stale, leading))
    except Exception as exc:
        return (yield from _failed(cache, call, stale, leading, exc))
    if leading:
        yield Land(call.l1_key, Settled(value, None), linger=False)
    cache.record(call, "coalesced")
    return value


def _overran(  # noqa: PLR0917 - _run's state, handed on whole
    cache: FunctionCache,
    call: Call,
    endpoint: Endpoint | None,
    stale: tuple[Any, float] | None,
    lock: bytes | None,
    pending: Any,
    leading: bool,
) -> Flow:
    """Answer a caller the function outlasted: with ``stale``, else ComputeTimeoutError.

    The run goes on; once it ends, its value is stored as any computed value is (under this
    call's lease and token: an invalidation meanwhile keeps it out of both tiers).
    """
    claimed = cache.refreshes.claim(call.l1_key, overrun=pending)  # (later callers wait for this run)
    release = (lambda: cache.refreshes.release(call.l1_key)) if claimed else None
    yield Spawn(_finish(cache, call, endpoint, lock, pending, claimed=claimed), pending, release)
    return (yield from _timed_out(cache, call, stale, leading))


def _timed_out(cache: FunctionCache, call: Call, stale: tuple[Any, float] | None, leading: bool) -> Flow:
    """Answer a caller a run outlasted: with ``stale``, else ComputeTimeoutError."""
    cache.stats.count("timeouts")
    if stale is not None:
        timeout = cache.options.timeout
        cache.log_once("timeout", "%s outlasted timeout=%g s; serving its stale value", cache.label, timeout)
        if leading:
            yield Land(call.l1_key, Settled(stale[0], None), linger=False)
        cache.record(call, "stale_served")
        return stale[0]
    error = ComputeTimeoutError(cache.label, cache.options.hard_timeout or 0.0)
    if leading:
        yield Land(call.l1_key, Settled(None, error), linger=False)
    cache.record(call, "misses", error=True)
    raise error


def _finish(
    cache: FunctionCache,
    call: Call,
    endpoint: Endpoint | None,
    lock: bytes | None,
    pending: Any,
    *,
    claimed: bool,
) -> Flow:
    """Store the value of a run that outlasted its callers, once it has ended."""
    try:
        try:
            value = yield Outcome(pending)
        except Exception as exc:
            cache.stats.count("refresh_errors")
            cache.log_once("overran", "%s: a run that outlasted its timeout raised %r", cache.label, exc)
        else:
            yield from _store(cache, call, endpoint, value)
        if lock is not None and endpoint is not None:
            yield from l2_op(
                cache, endpoint, ops.release_lock(endpoint, cache.lock_key(call), lock, owner=cache)
            )
    finally:
        # Whatever ended the run (a cancelled task, SystemExit in its thread, a TTL function
        # that raised), the key must not stay claimed: its callers would get the stale value
        # for good and never run the function again. (No yield here: see refresh().)
        if claimed:
            cache.refreshes.release(call.l1_key)


def _store(cache: FunctionCache, call: Call, endpoint: Endpoint | None, value: Any) -> Flow:
    """Write a computed value to L2, then L1; return whether it reached L2.

    Nothing is written once the entry was invalidated after the call began: Redis refuses the
    write if the key's token changed since our read (an invalidation anywhere, this process's
    included), and L1 refuses it if the call's lease is void (an invalidation here, or one
    another process announced). The value still goes to the callers who asked before. A result
    the function's policy rejects (``cache_if``, a TTL function's None) goes nowhere it says.
    """
    if not cache.enabled():
        return False
    keeping = cache.lifetimes.keeping(value)
    if keeping is None:
        return False
    l1_seconds, l2_seconds, keep_l1, keep_l2 = keeping
    write = write_op(cache, call, endpoint, value, l2_seconds) if endpoint is not None and keep_l2 else None
    if write is not None and cache.owed.any and not (yield from replay_repairs(cache, write.endpoint)):
        write = None
    stored = False
    if write is not None:
        try:  # l2_op(), inlined: every miss writes here
            stored = yield write
        except RemoteError as exc:
            cache.remote_failed(write.endpoint, exc)
        else:
            write.endpoint.breaker.success()
            if not stored:
                cache.stats.count("l2_writes_refused")
                return False  # invalidated elsewhere since we read it: keep it out of L1 too
    if not call.redis_key and call.canonical is None:
        cache.keys.check_raw(call.key_values)  # (L2 was skipped: nothing encoded the key yet)
    if cache.has_l1 and keep_l1:
        cache.l1.set(call.l1_key, value, l1_seconds, call.lease)
    return stored


def write_op(
    cache: FunctionCache, call: Call, endpoint: Endpoint, value: Any, seconds: float | None = None
) -> ops.Command | None:
    """Return the conditional L2 write of ``call``'s value, or None if it may not go to L2 now.

    It stays fresh for ``seconds`` (None: the cache's ``ttl_l2``).
    """
    if not call.flags & LOOKED_UP or not endpoint.breaker.allow():
        return None
    # A tombstone outlives no write whose reader saw the key longer ago than it lives: such a
    # write could land on a key whose invalidation has already expired, so it is not sent.
    if time.monotonic() - call.read_at > (cache.tombstone_ms or 0) / 1000 - TOMBSTONE_MARGIN:
        return None
    tags = b""
    if cache.tags is not None:
        tags = cache.tags.block_of(call) or b""
        if not tags:
            return None  # which tokens its tags had when it read is not known: nothing proves it fresh
    key = call.redis_key or cache.redis_key(call)
    payload = cache.remote.seal_value(
        endpoint, value, key, read=call.token, ttl=seconds, generation=call.generation, tags=tags
    )
    if payload is None:
        return None
    return ops.write(endpoint, key, payload, cache.lifetimes.l2_ttl_ms(seconds), call.token, owner=cache)


def _serve_ahead(
    cache: FunctionCache, call: Call, value: Any, endpoint: Endpoint | None, outcome: str
) -> Flow:
    """Serve a hit near the end of its life; start one background refresh of it (per key, per process)."""
    if cache.refreshes.claim(call.l1_key, call.started_ns):
        cache.stats.count("refreshes_ahead")
        yield Spawn(refresh(cache, call, endpoint), dropped=lambda: cache.refreshes.release(call.l1_key))
    cache.record(call, outcome)
    return value


def _serve_stale(cache: FunctionCache, call: Call, value: Any, endpoint: Endpoint | None) -> Flow:
    """Return a stale value at once; start one background refresh of it (per key, per process)."""
    if cache.refreshes.claim(call.l1_key, call.started_ns):
        yield Spawn(refresh(cache, call, endpoint), dropped=lambda: cache.refreshes.release(call.l1_key))
    cache.record(call, "stale_served")
    return value


def note_before_run(cache: FunctionCache, call: Call) -> None:
    """Note ``call``'s key for announcements before its run, where no L2 read noted it.

    As a read notes it before it goes: an invalidation another process announces while the
    function reads its data must find the entry (and void the call's lease), not a key noted
    only once the value is kept in L1, when the announcement has already dropped nothing.
    """
    if not call.redis_key and cache.has_l1 and cache.coherence.channel is not None:
        call.redis_key = cache.redis_key(call)


def refresh(cache: FunctionCache, call: Call, endpoint: Endpoint | None) -> Flow:
    """Recompute a stale entry in the background; on failure keep serving the stale value.

    It writes under the lease and token of the call that found the entry stale, so an
    invalidation since then keeps its value out of both tiers.
    """
    try:
        note_before_run(cache, call)
        lock = None
        if endpoint is not None and cache.lock_ttl_ms:
            lock = os.urandom(8)
            acquire = ops.acquire_lock(endpoint, cache.lock_key(call), lock, cache.lock_ttl_ms, owner=cache)
            ok, acquired = yield from l2_op(cache, endpoint, acquire)
            if ok and not acquired:
                return  # another process is refreshing it
            if not ok:
                lock = None
        try:
            value = yield Compute(cache.function, call, owner=cache)
        except Exception as exc:
            cache.stats.count("refresh_errors")
            cache.log_once(
                "refresh", "%s: refreshing a stale value raised %r; still serving it", cache.label, exc
            )
            return
        yield from _store(cache, call, endpoint, value)
        if lock is not None and endpoint is not None:
            yield from l2_op(
                cache, endpoint, ops.release_lock(endpoint, cache.lock_key(call), lock, owner=cache)
            )
    finally:
        cache.refreshes.release(call.l1_key)


def _lock_or_wait(cache: FunctionCache, call: Call, endpoint: Endpoint) -> Generator[Op, Any, bytes | None]:
    """Take the key's cross-process lock, or wait for its holder to fill L2 (into ``call.found``).

    Return our lock token, or None when we did not get the lock (another process had it, or
    Redis failed); a holder too slow for ``lock`` seconds is not waited for any longer.
    """
    lock = os.urandom(8)
    ok, acquired = yield from l2_op(
        cache,
        endpoint,
        ops.acquire_lock(endpoint, cache.lock_key(call), lock, cache.lock_ttl_ms, owner=cache),
    )
    if not ok:
        return None  # no coordination without Redis: compute ourselves
    if acquired:
        return lock
    deadline = time.monotonic() + cache.lock_ttl_ms / 1000  # real seconds, as Redis times the lock
    pause = 0.005
    while (left := deadline - time.monotonic()) > 0:
        yield Sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
        read_at = time.monotonic()
        call.redis_key = cache.redis_key(call)
        read = read_op(cache, call, endpoint, cache.generation_key)
        ok, reply = yield from l2_op(cache, endpoint, read)
        if not ok:
            return None
        call.read_at = read_at
        _read_done(cache, call, read, reply)
        if call.found is not MISSING:
            return None
    return None


#: Keys one Redis command of a batch names at most (tiered_cache_many's reads, writes and
#: invalidations): one MGET of 200,000 ids outlasted the L2 timeout, and every other client of
#: Redis waits while one runs.
CHUNK: Final = 1000


def invalidate(cache: FunctionCache, *calls: tuple[Any, ...]) -> Flow:
    """Drop the calls' entries: from L1 and their runs in flight, then from L2 (now or later).

    Raise InvalidationError (after the local drop) if Redis refused.
    """
    keys = [cache.keys.l1_key(key_values) for key_values in calls]
    l1_keys = tuple(l1_key for l1_key, _ in keys)
    cache.coherence.drop_local(l1_keys)
    cache.stats.count("invalidations", len(calls))
    endpoint = cache.endpoint()
    if endpoint is not None and calls:
        redis_keys = tuple(
            cache.keys.redis_key_for(key_values, canonical)
            for key_values, (_, canonical) in zip(calls, keys, strict=True)
        )
        try:
            for start in range(0, len(redis_keys), CHUNK):  # (one command of 300k keys blocks Redis)
                yield from drop_keys(cache, endpoint, redis_keys[start : start + CHUNK])
        finally:
            # Again: a thread that missed L1 after the first drop may have read the old value
            # from L2 before it was gone there, and be about to put it in L1.
            cache.coherence.drop_local(l1_keys)


def clear(cache: FunctionCache) -> Flow:
    """Drop every entry of the function: L1 and runs in flight at once, L2 by a new generation."""
    cache.coherence.drop_local(None)
    cache.stats.count("invalidations")
    endpoint = cache.endpoint()
    if endpoint is not None:
        try:
            yield from new_generation(cache, endpoint)
        finally:
            cache.coherence.drop_local(None)  # again, as in invalidate()
