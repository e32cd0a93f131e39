"""The routing decisions, tested by sending values into the flow: no Redis, no event loop."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from tiercache import _flow, tiered_cache
from tiercache._codec import encode_value, seal
from tiercache._flight import Settled
from tiercache._flow import Compute, Join, Land, Read, Write
from tiercache._function import Call, FunctionCache
from tiercache._remote import RemoteRejected, RemoteUnavailable


@pytest.fixture
def cache() -> FunctionCache:
    @tiered_cache(name="flow.f")
    def f(x: str) -> str:
        return x

    return f.__tiercache__  # type: ignore[attr-defined, no-any-return]


def call(cache: FunctionCache, key: str = "k") -> Call:
    l1_key, canonical = cache.l1_key((key,))
    return Call(l1_key, (key,), (key,), None, fast=False, canonical=canonical)


def payload(value: Any, generation: bytes = b"", fresh_for: float = 60) -> bytes:
    return seal(encode_value(value), generation, round((time.time() + fresh_for) * 1000))


def finish(flow: Generator[Any, Any, Any], reply: Any) -> Any:
    with pytest.raises(StopIteration) as stop:
        flow.send(reply)
    return stop.value.value


def test_l1_hit_needs_no_io(cache: FunctionCache) -> None:
    cache.local.set("k", "cached")
    flow = _flow.serve(cache, call(cache))
    with pytest.raises(StopIteration) as stop:
        next(flow)
    assert stop.value.value == "cached"
    assert cache.snapshot().l1_hits == 1


def test_miss_reads_l2_joins_computes_and_writes_back(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    read = next(flow)
    assert (
        isinstance(read, Read) and read.key == cache.redis_key_for(("k",)) and read.generation_key is not None
    )
    assert isinstance(flow.send((None, None)), Join)
    assert isinstance(flow.send(None), Compute)
    write = flow.send("computed")
    assert isinstance(write, Write) and write.ttl_ms == 86_400_000
    land = flow.send(None)
    assert isinstance(land, Land) and land.settled.value == "computed"
    assert land.linger  # in L2 now: callers whose read raced the write may take it from the flight
    assert finish(flow, None) == "computed"
    assert cache.local.get("k") == "computed"
    stats = cache.snapshot()
    assert (stats.misses, stats.l2_lookups, stats.l2_hits) == (1, 1, 0)


def test_l2_hit_fills_l1_and_skips_the_function(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    assert finish(flow, (None, payload({"v": 1}))) == {"v": 1}
    assert cache.local.get("k") == {"v": 1}
    assert cache.snapshot().l2_hits == 1


def test_entry_of_another_generation_is_a_miss(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    assert isinstance(flow.send((b"new-generation", payload("old", generation=b""))), Join)


def test_unreadable_payload_is_a_counted_miss_and_gets_overwritten(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    assert isinstance(flow.send((None, b"\x80\x04pickle?")), Join)
    flow.send(None)
    assert isinstance(flow.send("fresh"), Write)
    assert cache.snapshot().l2_corrupt == 1


def test_failed_read_skips_l2_for_the_rest_of_the_call(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    assert isinstance(flow.throw(RemoteUnavailable("down")), Join)
    assert isinstance(flow.send(None), Compute)
    land = flow.send("value")  # no Write after a failed read
    assert isinstance(land, Land) and not land.linger
    assert finish(flow, None) == "value"
    assert cache.snapshot().l2_errors == 1


def test_failed_write_still_returns_the_value(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    flow.send((None, None))
    flow.send(None)
    flow.send("value")
    land = flow.throw(RemoteRejected("OOM command not allowed"))
    assert isinstance(land, Land) and not land.linger
    assert finish(flow, None) == "value"
    assert cache.snapshot().l2_errors == 1


def test_follower_gets_the_leaders_value_or_exception(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    flow.send((None, None))
    assert finish(flow, Settled("shared", None)) == "shared"
    flow = _flow.serve(cache, call(cache))
    next(flow)
    flow.send((None, None))
    with pytest.raises(KeyError):
        flow.send(Settled(None, KeyError("x")))
    stats = cache.snapshot()
    assert (stats.coalesced, stats.errors) == (2, 1)


def test_function_exception_is_recorded_and_not_cached(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    flow.send((None, None))
    flow.send(None)
    error = ValueError("boom")
    land = flow.throw(error)
    assert isinstance(land, Land) and land.settled.error is error  # followers get it too
    with pytest.raises(ValueError):
        flow.send(None)
    assert len(cache.local) == 0
    assert cache.snapshot().errors == 1


def test_value_computed_across_an_invalidation_is_returned_but_not_stored(cache: FunctionCache) -> None:
    flow = _flow.serve(cache, call(cache))
    next(flow)
    flow.send((None, None))
    flow.send(None)
    cache.epoch += 1  # an invalidation happened while the function ran
    land = flow.send("maybe-stale")
    assert isinstance(land, Land) and not land.linger
    assert finish(flow, None) == "maybe-stale"
    assert len(cache.local) == 0


def test_invalidate_and_clear_flows(cache: FunctionCache) -> None:
    cache.local.set("k", "v")
    flow = _flow.invalidate(cache, ("k",))
    delete = next(flow)
    assert delete.keys == (cache.redis_key_for(("k",)),) and len(cache.local) == 0
    with pytest.raises(StopIteration):
        flow.throw(RemoteUnavailable("down"))  # a failed delete is counted, not raised
    assert cache.snapshot().l2_errors == 1
    flow = _flow.clear(cache)
    new_generation = next(flow)
    assert new_generation.generation_key == cache.generation_key and len(new_generation.token) == 8
