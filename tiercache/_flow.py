"""The tier routing of a decorated function, written once.

Each flow is a generator that decides, records and yields the I/O it wants done; it is sent the
results (or has the I/O's exception thrown into it). ``_shells`` drives flows for sync and async
callers, differing only by ``await``. Nothing here imports redis or asyncio, so every decision can
be tested by sending values in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ._flight import Settled
from ._function import Call
from ._local import MISSING
from ._ops import (
    AcquireLock,
    Compute,
    Flow,
    Join,
    Land,
    Op,
    Read,
    ReleaseLock,
    Sleep,
    Spawn,
    Write,
    drop_keys,
    l2_op,
    new_generation,
    replay_repairs,
)
from ._remote import Endpoint, RemoteUnavailable

if TYPE_CHECKING:
    from ._function import FunctionCache

__all__ = ["clear", "invalidate", "refresh", "serve"]


def serve(cache: FunctionCache, call: Call) -> Flow:  # noqa: PLR0911 - one exit per tier that can answer
    """Answer a call the fast path could not: from L1, else L2, else one run per key."""
    value, stale = cache.local.lookup(call.l1_key)
    if value is not MISSING:
        cache.finish(call, "l1_hits")
        return value
    if stale is None and call.expired is not None:
        stale = cache.local.within_grace(call.expired)  # the fast path took it out for us
    if not cache.enabled():
        return (yield from _run(cache, call, None, stale, leading=False))
    endpoint = cache.endpoint()
    if endpoint is not None:
        epoch = cache.epoch
        endpoint = yield from _read(cache, call, endpoint)
        if call.found is not MISSING:
            value, fresh_for = call.found
            if fresh_for > 0 or not cache.stale_ttl:  # without stale_ttl, Redis's TTL is the judge
                if cache.epoch == epoch:  # else an invalidation crossed our read: keep it out of L1
                    cache.local.set(call.l1_key, value, max(fresh_for, 0.0))
                cache.finish(call, "l2_hits")
                return value
            # Stale in L2, within stale_ttl: serve it now and have it refreshed behind our back.
            return (yield from _serve_stale(cache, call, value, endpoint))
    if stale is not None and cache.endpoint() is None:
        cache.local.restore(call.l1_key, stale)  # L1 is the only tier: it keeps the stale copy
        return (yield from _serve_stale(cache, call, stale[0], None))
    settled: Settled | None = yield Join(call.l1_key, cache)
    if settled is not None:
        cache.finish(call, "coalesced", error=settled.error is not None)
        return settled.unwrap()
    # Leading now: a run that ended while our L2 read was under way wrote L1 before it let go
    # of the key, so this look catches it and we do not run the function a second time.
    value = cache.local.get(call.l1_key)
    if value is not MISSING:
        yield Land(call.l1_key, Settled(value, None), linger=False)
        cache.finish(call, "l1_hits")
        return value
    return (yield from _run(cache, call, endpoint, stale, leading=True))


def _read(cache: FunctionCache, call: Call, endpoint: Endpoint) -> Generator[Op, Any, Endpoint | None]:
    """Look ``call`` up in L2, leaving what it found in ``call.found``.

    Return the endpoint to keep using for this call, or None once it could not be reached
    (one failed operation per call at most).
    """
    if not endpoint.breaker.allow():
        return None
    if cache.has_repairs() and not (yield from replay_repairs(cache, endpoint)):
        return None
    call.looked_up = True
    generation_key = cache.generation_key_if_due(endpoint)
    key = cache.redis_key(call)
    ok, reply = yield from l2_op(cache, endpoint, Read(endpoint, key, generation_key))
    if not ok:
        return endpoint if not isinstance(reply, RemoteUnavailable) else None
    generation, payload = reply
    if generation_key is not None:
        cache.learn_generation(endpoint, generation)
    call.found = cache.open_payload(endpoint, payload, key)
    return endpoint


def _run(
    cache: FunctionCache,
    call: Call,
    endpoint: Endpoint | None,
    stale: tuple[Any, float] | None,
    *,
    leading: bool,
) -> Flow:
    """Run the function once, write its value back to the tiers that are up, and share it."""
    token = None
    if leading and endpoint is not None and cache.lock_ttl_ms:
        token = yield from _lock_or_wait(cache, call, endpoint)
        if call.found is not MISSING:  # another process filled L2 while we waited
            value, fresh_for = call.found
            cache.local.set(call.l1_key, value, max(fresh_for, 0.0))
            yield Land(call.l1_key, Settled(value, None), linger=False)
            cache.finish(call, "l2_hits")
            return value
    epoch = cache.epoch
    try:
        value = yield Compute(cache.function, call)
    except Exception as exc:
        if token is not None and endpoint is not None:
            yield from l2_op(cache, endpoint, ReleaseLock(endpoint, cache.lock_key(call), token))
        if stale is not None:  # fail-safe: a stale value beats an exception
            cache.local.restore(call.l1_key, stale)
            cache.log_once("fail-safe", "%s raised %r; serving its stale value instead", cache.label, exc)
            if leading:
                yield Land(call.l1_key, Settled(stale[0], None), linger=False)
            cache.finish(call, "stale_served")
            return stale[0]
        if leading:
            yield Land(call.l1_key, Settled(None, exc), linger=False)
        cache.finish(call, "misses", error=True)
        raise
    stored = yield from _store(cache, call, endpoint, value, epoch)
    if token is not None and endpoint is not None:
        yield from l2_op(cache, endpoint, ReleaseLock(endpoint, cache.lock_key(call), token))
    if leading:
        yield Land(call.l1_key, Settled(value, None), linger=stored)
    cache.finish(call, "misses")
    return value


def _store(cache: FunctionCache, call: Call, endpoint: Endpoint | None, value: Any, epoch: int) -> Flow:
    """Write a computed value to L1 and L2; return whether it reached L2."""
    # An invalidation while we computed means the value may predate it: return it, keep it out.
    if not cache.enabled() or cache.epoch != epoch:
        return False
    cache.local.set(call.l1_key, value)
    if endpoint is None or not endpoint.breaker.allow():
        return False
    key = cache.redis_key(call)
    payload = cache.seal_value(endpoint, value, key)
    if payload is None:
        return False
    ok, _ = yield from l2_op(cache, endpoint, Write(endpoint, key, payload, cache.l2_ttl_ms))
    return bool(ok)


def _serve_stale(cache: FunctionCache, call: Call, value: Any, endpoint: Endpoint | None) -> Flow:
    """Return a stale value at once; start one background refresh of it (per key, per process)."""
    if cache.claim_refresh(call.l1_key):
        yield Spawn(refresh(cache, call, endpoint))
    cache.finish(call, "stale_served")
    return value


def refresh(cache: FunctionCache, call: Call, endpoint: Endpoint | None) -> Flow:
    """Recompute a stale entry in the background; on failure keep serving the stale value."""
    try:
        token = None
        if endpoint is not None and cache.lock_ttl_ms:
            token = os.urandom(8)
            lock = AcquireLock(endpoint, cache.lock_key(call), token, cache.lock_ttl_ms)
            ok, acquired = yield from l2_op(cache, endpoint, lock)
            if ok and not acquired:
                return  # another process is refreshing it
            if not ok:
                token = None
        epoch = cache.epoch
        try:
            value = yield Compute(cache.function, call)
        except Exception as exc:
            cache.stats.count("refresh_errors")
            cache.log_once(
                "refresh", "%s: refreshing a stale value raised %r; still serving it", cache.label, exc
            )
            return
        yield from _store(cache, call, endpoint, value, epoch)
        if token is not None and endpoint is not None:
            yield from l2_op(cache, endpoint, ReleaseLock(endpoint, cache.lock_key(call), token))
    finally:
        cache.release_refresh(call.l1_key)


def _lock_or_wait(cache: FunctionCache, call: Call, endpoint: Endpoint) -> Generator[Op, Any, bytes | None]:
    """Take the key's cross-process lock, or wait for its holder to fill L2 (into ``call.found``).

    Return our lock token, or None when we did not get the lock (another process had it, or
    Redis failed); a holder too slow for ``lock`` seconds is not waited for any longer.
    """
    token = os.urandom(8)
    ok, acquired = yield from l2_op(
        cache, endpoint, AcquireLock(endpoint, cache.lock_key(call), token, cache.lock_ttl_ms)
    )
    if not ok:
        return None  # no coordination without Redis: compute ourselves
    if acquired:
        return token
    deadline = time.monotonic() + cache.lock_ttl_ms / 1000
    pause = 0.005
    while (left := deadline - time.monotonic()) > 0:
        yield Sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
        key = cache.redis_key(call)
        ok, reply = yield from l2_op(cache, endpoint, Read(endpoint, key, None))
        if not ok:
            return None
        call.found = cache.open_payload(endpoint, reply[1], key)
        if call.found is not MISSING:
            return None
    return None


def invalidate(cache: FunctionCache, key_values: tuple[Any, ...]) -> Flow:
    """Drop one call's entry from L1, from any lingering flight, and from L2 (now or later)."""
    l1_key, canonical = cache.l1_key(key_values)
    cache.epoch += 1
    cache.local.delete(l1_key)
    cache.forget_flight(l1_key)
    endpoint = cache.endpoint()
    if endpoint is not None:
        yield from drop_keys(cache, endpoint, (cache.redis_key_for(key_values, canonical),), (l1_key,))


def clear(cache: FunctionCache) -> Flow:
    """Drop every entry of the function: L1 at once, L2 by starting a new generation."""
    cache.epoch += 1
    cache.local.clear()
    cache.forget_flight(None)
    endpoint = cache.endpoint()
    if endpoint is not None:
        yield from new_generation(cache, endpoint)
