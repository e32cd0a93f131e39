"""The routing decisions, tested by sending values into the flow: no Redis, no event loop."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from tiercache import tiered_cache
from tiercache._core.flights import Settled
from tiercache._core.ops import (
    ACQUIRE_LOCK,
    INVALIDATE,
    RAISE_GENERATION,
    READ,
    RELEASE_LOCK,
    WRITE,
    Command,
    Compute,
    Join,
    Kind,
    Land,
    Sleep,
    Spawn,
)
from tiercache._decorator import flow as _flow
from tiercache._decorator.call import Call
from tiercache._decorator.function import FunctionCache
from tiercache._l2.codec import encode_value
from tiercache._l2.envelope import ABSENT, FOREIGN_TOKEN, NO_TOKEN, prefix_of, seal, token_of, tombstone
from tiercache._l2.errors import RemoteRejected, RemoteUnavailable

Flow = Generator[Any, Any, Any]


def is_command(op: object, kind: Kind) -> bool:
    """Whether ``op`` is an L2 command of ``kind``."""
    return isinstance(op, Command) and op.kind is kind


def make_cache(**options: Any) -> FunctionCache:
    @tiered_cache(name="flow.f", **options)
    def f(x: str) -> str:
        return x

    return f.__tiercache__  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def cache() -> FunctionCache:
    return make_cache()


def call(cache: FunctionCache, key: str = "k") -> Call:
    l1_key, canonical = cache.keys.l1_key((key,))
    return Call(l1_key, (key,), (key,), None, fast=False, canonical=canonical)


def payload(value: Any, generation: int = 0, fresh_for: float = 60, token: bytes = NO_TOKEN) -> bytes:
    return seal(encode_value(value), generation, token, round((time.time() + fresh_for) * 1000))


def finish(flow: Flow, reply: Any = None) -> Any:
    with pytest.raises(StopIteration) as stop:
        flow.send(reply)
    return stop.value.value


def start(cache: FunctionCache, the_call: Call | None = None) -> tuple[Flow, Any]:
    flow = _flow.serve(cache, the_call or call(cache))
    return flow, next(flow)


def test_l1_hit_needs_no_io(cache: FunctionCache) -> None:
    cache.local.set("k", "cached")
    flow = _flow.serve(cache, call(cache))
    with pytest.raises(StopIteration) as stop:
        next(flow)
    assert stop.value.value == "cached"
    assert cache.snapshot().l1_hits == 1


def test_miss_reads_l2_joins_computes_and_writes_back(cache: FunctionCache) -> None:
    flow, read = start(cache)
    assert (
        is_command(read, READ)
        and read.arg("key") == cache.keys.redis_key_for(("k",))
        and read.arg("generation_key") is not None
    )
    assert isinstance(flow.send((None, None)), Join)
    assert isinstance(flow.send(None), Compute)
    write = flow.send("computed")
    assert is_command(write, WRITE) and write.arg("ttl_ms") == 86_400_000 and write.arg("token") == ABSENT
    land = flow.send(True)
    assert isinstance(land, Land) and land.settled.value == "computed"
    assert land.linger  # in L2 now: callers whose read raced the write may take it from the flight
    assert finish(flow) == "computed"
    assert cache.local.get("k") == "computed"
    stats = cache.snapshot()
    assert (stats.misses, stats.l2_lookups, stats.l2_hits) == (1, 1, 0)


def test_l2_hit_fills_l1_and_skips_the_function(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    assert finish(flow, (None, payload({"v": 1}))) == {"v": 1}
    assert cache.local.get("k") == {"v": 1}
    assert cache.snapshot().l2_hits == 1


def test_entry_of_another_generation_is_a_miss(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    assert isinstance(flow.send((b"5", payload("old", generation=4))), Join)


def test_unreadable_payload_is_a_counted_miss_and_gets_overwritten(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    assert isinstance(flow.send((None, b"\x80\x04pickle?")), Join)
    flow.send(None)
    assert is_command(flow.send("fresh"), WRITE)
    assert cache.snapshot().l2_corrupt == 1


def test_a_refused_read_is_garbage_not_an_outage(cache: FunctionCache) -> None:
    """Redis refused the read (an ACL that denies the key, say): a miss, and our write replaces it."""
    endpoint = cache.endpoint()
    assert endpoint is not None
    cache.remote.learn_generation(endpoint, b"0")  # known from an earlier read (a refused one learns none)
    flow, read = start(cache)
    assert read.arg("generation_key") == cache.generation_key  # every read fetches the generation too
    assert isinstance(flow.throw(RemoteRejected("NOPERM")), Join)
    flow.send(None)
    write = flow.send("value")
    assert is_command(write, WRITE)
    assert write.arg("token") == FOREIGN_TOKEN  # (Redis replaces what it holds only if it is not ours)
    assert token_of(write.arg("payload")) == NO_TOKEN
    assert not endpoint.breaker.is_open


def test_what_a_value_carries_depends_on_what_was_read_for_it(cache: FunctionCache) -> None:
    """Nothing read: no token; a token read: that one; a value set by hand: a new one each time."""
    flow, _ = start(cache)
    flow.send((b"0", None))
    flow.send(None)
    write = flow.send("v")
    assert write.arg("token") == ABSENT and token_of(write.arg("payload")) == NO_TOKEN
    endpoint = cache.endpoint()
    assert endpoint is not None
    carried = cache.remote.seal_value(endpoint, "v", "k", read=b"12345678")
    assert carried is not None and token_of(carried) == b"12345678"
    assert token_of(cache.remote.seal_value(endpoint, "v", "k") or b"") == NO_TOKEN
    new = {token_of(cache.remote.seal_value(endpoint, "v", "k", read=None) or b"") for _ in range(3)}
    assert len(new) == 3 and NO_TOKEN not in new and all(len(token) == len(NO_TOKEN) for token in new)


def test_unreachable_read_opens_the_breaker_and_skips_l2_for_the_rest_of_the_call(
    cache: FunctionCache,
) -> None:
    flow, _ = start(cache)
    assert isinstance(flow.throw(RemoteUnavailable("down")), Join)
    assert isinstance(flow.send(None), Compute)
    land = flow.send("value")  # no Write after a failed read
    assert isinstance(land, Land) and not land.linger
    assert finish(flow) == "value"
    stats = cache.snapshot()
    assert stats.l2_errors == 1 and stats.degraded
    # While the breaker is open the next call does not even try L2.
    assert isinstance(start(cache, call(cache, "other"))[1], Join)


def test_failed_write_still_returns_the_value(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    flow.send("value")
    land = flow.throw(RemoteRejected("OOM command not allowed"))
    assert isinstance(land, Land) and not land.linger
    assert finish(flow) == "value"
    assert cache.snapshot().l2_errors == 1


def test_follower_gets_the_leaders_value_or_exception(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    flow.send((None, None))
    assert finish(flow, Settled("shared", None)) == "shared"
    flow, _ = start(cache)
    flow.send((None, None))
    with pytest.raises(KeyError):
        flow.send(Settled(None, KeyError("x")))
    stats = cache.snapshot()
    assert (stats.coalesced, stats.errors) == (2, 1)


def test_function_exception_is_recorded_shared_and_not_cached(cache: FunctionCache) -> None:
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    error = ValueError("boom")
    land = flow.throw(error)
    assert isinstance(land, Land) and land.settled.error is error  # followers get it too
    with pytest.raises(ValueError):
        flow.send(None)
    assert len(cache.local) == 0
    assert cache.snapshot().errors == 1


def test_a_write_names_the_token_and_generation_its_read_saw(cache: FunctionCache) -> None:
    """Redis can then refuse it if the key was invalidated (or the function cleared) since."""
    flow, _ = start(cache)
    mark = tombstone(b"12345678")
    flow.send((b"7", mark))
    flow.send(None)
    write = flow.send("v")
    assert write.arg("token") == token_of(mark) == b"12345678"
    assert token_of(write.arg("payload")) == b"12345678"  # the value carries the token on
    assert write.arg("payload").startswith(b"tc\x02\x00" + (7).to_bytes(8, "big"))


def test_a_value_computed_across_a_clear_is_of_the_generation_before_it(cache: FunctionCache) -> None:
    """A clear landing while the function runs makes the value a miss for whoever knows of it."""
    flow, _ = start(cache)
    flow.send((b"4", None))  # read while generation 4 was current
    flow.send(None)
    endpoint = cache.endpoint()
    assert endpoint is not None
    cache.remote.learn_generation(endpoint, 5)  # the clear: this process knows generation 5 now
    write = flow.send("maybe-stale")
    assert write.arg("payload").startswith(prefix_of(4))
    assert cache.remote.known_generation() == 5


def test_a_value_redis_refuses_is_returned_but_kept_out_of_both_tiers(cache: FunctionCache) -> None:
    """Redis says the key was invalidated after our read: the value may predate it."""
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    assert is_command(flow.send("maybe-stale"), WRITE)
    land = flow.send(False)
    assert isinstance(land, Land) and not land.linger
    assert finish(flow) == "maybe-stale"
    assert len(cache.local) == 0
    assert cache.snapshot().l2_writes_refused == 1


def test_an_invalidation_here_while_computing_keeps_the_value_out_of_l1(cache: FunctionCache) -> None:
    """The call's L1 lease is void: even a write Redis took (it cannot know) stays out of L1."""
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    cache.coherence.drop_local((call(cache).l1_key,))  # invalidated while the function ran
    assert is_command(flow.send("maybe-stale"), WRITE)
    flow.send(True)
    assert finish(flow) == "maybe-stale"
    assert len(cache.local) == 0


def test_invalidate_and_clear_reach_l2(cache: FunctionCache) -> None:
    cache.local.set("k", "v")
    flow = _flow.invalidate(cache, ("k",))
    invalidate = next(flow)
    assert is_command(invalidate, INVALIDATE) and invalidate.keys == (cache.keys.redis_key_for(("k",)),)
    assert invalidate.arg("tombstone") is not None and token_of(invalidate.arg("tombstone")) != NO_TOKEN
    assert invalidate.arg("ttl_ms") >= cache.l2_ttl_ms
    assert len(cache.local) == 0
    finish(flow)
    flow = _flow.clear(cache)
    raise_generation = next(flow)
    assert is_command(raise_generation, RAISE_GENERATION) and raise_generation.arg("step") == 1
    finish(flow, (3, True))
    assert cache.remote.known_generation() == 3
    assert cache.owed.pending()[:3] == (0, False, ())


def test_invalidations_that_cannot_reach_l2_are_replayed_before_its_next_read(
    cache: FunctionCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = cache.endpoint()
    assert endpoint is not None
    # (not in the background once the breaker closes: that is test_guarantee's; here the flow's)
    monkeypatch.setattr(endpoint.debts, "owe", lambda debtor, settle: None)
    flow = _flow.invalidate(cache, ("a",))
    next(flow)
    with pytest.raises(StopIteration):
        flow.throw(RemoteUnavailable("down"))  # counted and deferred, never raised
    flow = _flow.invalidate(cache, ("b",))
    with pytest.raises(StopIteration):
        next(flow)  # breaker open: not even tried
    flow = _flow.clear(cache)
    with pytest.raises(StopIteration):
        next(flow)
    clears, _, keys, _ = cache.owed.pending()
    assert clears == 1 and keys == ()  # the clear covers the deletions
    assert cache.snapshot().pending_invalidations == 1
    endpoint.breaker.success()  # what the background prober does once Redis answers again
    flow, replay = start(cache)
    assert is_command(replay, RAISE_GENERATION) and replay.arg("step") == 1
    assert is_command(flow.send((1, True)), READ)
    assert cache.owed.pending()[:3] == (0, False, ())


def test_stale_l2_value_is_served_at_once_and_refreshed_in_the_background() -> None:
    cache = make_cache(stale_ttl=30)
    flow, _ = start(cache)
    spawn = flow.send((None, payload("old", fresh_for=-5)))  # 5 s past ttl_l2, within stale_ttl
    assert isinstance(spawn, Spawn)
    assert finish(flow) == "old"
    assert cache.snapshot().stale_served == 1
    refresh = spawn.flow
    assert isinstance(next(refresh), Compute)
    assert is_command(refresh.send("new"), WRITE)
    finish(refresh, True)
    assert cache.local.get("k") == "new"
    # Only one refresh per key at a time.
    cache.local.clear()
    flow, _ = start(cache)
    assert isinstance(flow.send((None, payload("old", fresh_for=-5))), Spawn)
    finish(flow)
    second, _ = start(cache)
    assert finish(second, (None, payload("old", fresh_for=-5))) == "old"  # no Spawn: one is running


def test_a_failing_refresh_keeps_serving_the_stale_value() -> None:
    cache = make_cache(stale_ttl=30)
    flow, _ = start(cache)
    refresh = flow.send((None, payload("old", fresh_for=-5))).flow
    next(refresh)
    with pytest.raises(StopIteration):
        refresh.throw(ConnectionError("backend down"))
    assert cache.snapshot().refresh_errors == 1
    assert cache.refreshes.claim(call(cache).l1_key)  # released for the next attempt


def test_fail_safe_serves_the_expired_l1_copy_when_the_function_raises() -> None:
    cache = make_cache(stale_ttl=30)
    cache.local.data["k"] = ("last good", time.monotonic() - 1)  # expired a second ago, within stale_ttl
    flow, _ = start(cache)
    flow.send((None, None))  # L2 lost it
    flow.send(None)
    land = flow.throw(ConnectionError("backend down"))
    assert land.settled.value == "last good"  # followers get it too
    assert finish(flow) == "last good"
    assert cache.snapshot().stale_served == 1


def test_without_a_stale_copy_the_exception_is_raised() -> None:
    cache = make_cache(stale_ttl=30)
    cache.local.data["k"] = ("too old", time.monotonic() - 60)
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    flow.throw(ConnectionError("backend down"))
    with pytest.raises(ConnectionError):
        flow.send(None)


def test_lock_holder_computes_and_releases() -> None:
    cache = make_cache(lock=1.5)
    flow, _ = start(cache)
    flow.send((None, None))
    acquire = flow.send(None)
    assert (
        is_command(acquire, ACQUIRE_LOCK)
        and acquire.arg("ttl_ms") == 1500
        and acquire.arg("key").endswith(":lock")
    )
    assert isinstance(flow.send(True), Compute)
    assert is_command(flow.send("v"), WRITE)
    release = flow.send(True)
    assert is_command(release, RELEASE_LOCK) and release.arg("token") == acquire.arg("token")
    assert isinstance(flow.send(None), Land)
    assert finish(flow) == "v"


def test_lock_waiter_takes_the_holders_value_from_l2() -> None:
    cache = make_cache(lock=1.5)
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    assert isinstance(flow.send(False), Sleep)  # another process holds the lock
    assert is_command(flow.send(None), READ)
    assert isinstance(flow.send((None, None)), Sleep)  # not there yet
    flow.send(None)
    land = flow.send((None, payload("theirs")))
    assert isinstance(land, Land) and land.settled.value == "theirs"
    assert finish(flow) == "theirs"
    assert cache.snapshot().l2_hits == 1


def test_lock_waiter_computes_itself_when_the_holder_is_too_slow() -> None:
    cache = make_cache(lock=0.05)
    flow, _ = start(cache)
    flow.send((None, None))
    flow.send(None)
    op = flow.send(False)
    while not isinstance(op, Compute):
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            op = flow.send(None)
        else:
            op = flow.send((None, None))
    assert is_command(flow.send("mine"), WRITE)


def test_a_caller_whose_read_crossed_a_refresh_starts_no_second_one(cache: FunctionCache) -> None:
    """One background refresh per key, even for a hit that read the old value as it was replaced."""
    seen = time.perf_counter_ns()  # a hit read the value, due for a refresh...
    assert cache.refreshes.claim("k", seen)  # ...another hit started that refresh...
    assert not cache.refreshes.claim("k", seen)  # ...which is under way,
    cache.refreshes.release("k")  # ...and has replaced the value by the time the first hit asks:
    assert not cache.refreshes.claim("k", seen)
    assert cache.refreshes.claim("k", time.perf_counter_ns())  # a value read afterwards may be refreshed
