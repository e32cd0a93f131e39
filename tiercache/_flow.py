"""The tier routing, written once.

Each flow is a generator that decides, records and yields the I/O it wants done; it is sent the
results (or has the I/O's exception thrown into it). ``_shells`` drives flows for sync and async
callers, differing only by ``await``. Nothing here imports redis or asyncio, so every decision can
be tested by sending values in.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._flight import Settled
from ._local import MISSING
from ._remote import Endpoint, RemoteError

if TYPE_CHECKING:
    from ._function import FunctionCache

from ._function import Call

__all__ = [
    "Compute",
    "Delete",
    "Join",
    "Land",
    "NewGeneration",
    "Op",
    "Read",
    "Write",
    "clear",
    "invalidate",
    "serve",
]


class Read(NamedTuple):
    """Fetch ``key`` (and the function's generation, when ``generation_key`` is set)."""

    endpoint: Endpoint
    key: str
    generation_key: str | None


class Write(NamedTuple):
    """Store ``payload`` under ``key`` for ``ttl_ms``."""

    endpoint: Endpoint
    key: str
    payload: bytes
    ttl_ms: int


class Delete(NamedTuple):
    """Delete ``keys``."""

    endpoint: Endpoint
    keys: tuple[str, ...]


class NewGeneration(NamedTuple):
    """Set the function's generation to ``token``, staling every entry written before."""

    endpoint: Endpoint
    generation_key: str
    token: bytes


class Join(NamedTuple):
    """Join the single flight for ``key``: sent None to lead it, or how another run settled."""

    key: Hashable


class Land(NamedTuple):
    """End the single flight this call leads: wake its followers with ``settled``.

    ``linger``: keep the result briefly for callers whose L2 read raced our L2 write; only
    sound once the value is in L2, where they would have found it a moment later.
    """

    key: Hashable
    settled: Settled
    linger: bool


class Compute(NamedTuple):
    """Run the function with ``call``'s arguments; sent its value or thrown its exception."""

    call: Call


Op = Read | Write | Delete | NewGeneration | Join | Land | Compute
Flow = Generator[Op, Any, Any]


def serve(cache: FunctionCache, call: Call) -> Flow:
    """Answer a call the fast path could not: from L1, else L2, else one run per key."""
    value = cache.local.get(call.l1_key)
    if value is not MISSING:
        cache.finish(call, "l1_hits")
        return value
    if not cache.enabled():
        return (yield from _run(cache, call, None, leading=False))
    endpoint = cache.endpoint()
    if endpoint is not None:
        cache.stats.count("l2_lookups")
        generation_key = cache.generation_key_if_due(endpoint)
        try:
            generation, payload = yield Read(endpoint, cache.redis_key(call), generation_key)
        except RemoteError as exc:
            cache.remote_failed(endpoint, exc)
            endpoint = None  # one failed operation per call at most
        else:
            if generation_key is not None:
                cache.learn_generation(endpoint, generation)
            found = cache.open_payload(endpoint, payload)
            if found is not MISSING:
                value, fresh_for = found
                cache.local.set(call.l1_key, value, fresh_for)
                cache.finish(call, "l2_hits")
                return value
    settled: Settled | None = yield Join(call.l1_key)
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
    return (yield from _run(cache, call, endpoint, leading=True))


def _run(cache: FunctionCache, call: Call, endpoint: Endpoint | None, *, leading: bool) -> Flow:
    """Run the function once, write its value back to the tiers that are up, and share it."""
    epoch = cache.epoch
    try:
        value = yield Compute(call)
    except Exception as exc:
        if leading:
            yield Land(call.l1_key, Settled(None, exc), linger=False)
        cache.finish(call, "misses", error=True)
        raise
    stored = False
    # An invalidation while we computed means the value may predate it: return it, keep it out.
    if cache.enabled() and cache.epoch == epoch:
        cache.local.set(call.l1_key, value)
        payload = cache.seal_value(endpoint, value) if endpoint is not None else None
        if endpoint is not None and payload is not None:
            try:
                yield Write(endpoint, cache.redis_key(call), payload, cache.ttl_l2_ms)
                stored = True
            except RemoteError as exc:
                cache.remote_failed(endpoint, exc)
    if leading:
        yield Land(call.l1_key, Settled(value, None), linger=stored)
    cache.finish(call, "misses")
    return value


def invalidate(cache: FunctionCache, key_values: tuple[Any, ...]) -> Flow:
    """Drop one call's entry from L1, from any lingering flight, and from L2."""
    l1_key, canonical = cache.l1_key(key_values)
    cache.epoch += 1
    cache.local.delete(l1_key)
    cache.forget_flight(l1_key)
    endpoint = cache.endpoint()
    if endpoint is not None:
        try:
            yield Delete(endpoint, (cache.redis_key_for(key_values, canonical),))
        except RemoteError as exc:
            cache.remote_failed(endpoint, exc)


def clear(cache: FunctionCache) -> Flow:
    """Drop every entry of the function: L1 at once, L2 by starting a new generation."""
    cache.epoch += 1
    cache.local.clear()
    cache.forget_flight(None)
    endpoint = cache.endpoint()
    if endpoint is not None:
        token = os.urandom(8)
        try:
            yield NewGeneration(endpoint, cache.generation_key, token)
        except RemoteError as exc:
            cache.remote_failed(endpoint, exc)
        else:
            cache.learn_generation(endpoint, token)
