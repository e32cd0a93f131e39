"""One behaviour spec for the decorator, run for {sync, async} x {L1 only, L2 only, L1+L2}, with
L2 on fakeredis and on the suite's own real redis-server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import tiercache
from tests.support.clock import Clock
from tests.support.subjects import Subject, make_subject
from tiercache._decorator.registry import named_caches

SETUPS = [
    pytest.param(("l1", None), id="l1"),
    pytest.param(("l2", "fake"), id="l2-fake"),
    pytest.param(("l2", "real"), id="l2-real"),
    pytest.param(("l1+l2", "fake"), id="both-fake"),
    pytest.param(("l1+l2", "real"), id="both-real"),
]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SETUPS)
def tiers(request: pytest.FixtureRequest) -> str:
    tier, backend = request.param
    if backend is not None:
        url = request.getfixturevalue(f"{backend}_l2")
        if backend == "real":
            # (the spec is what a call does, not how fast a loaded machine connects: a CI run
            # once took more than the default 0.1 s to connect, and the call ran the function)
            tiercache.configure(redis_url=url, timeout=5.0, connect_timeout=5.0)
    return str(tier)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def subject(mode: str, tiers: str, clock: Clock) -> Subject:
    return make_subject(mode, tiers, clock=clock)


def other_process(mode: str, tiers: str, clock: Clock) -> Subject:
    """The same function as another process sees it: same Redis keys, its own L1 and stats."""
    return make_subject(mode, tiers, clock=clock)


def uses_l1(tiers: str) -> bool:
    return tiers in ("l1", "l1+l2")


def uses_l2(tiers: str) -> bool:
    return tiers in ("l2", "l1+l2")


pytestmark = pytest.mark.asyncio


async def following_others(subject: Subject) -> None:
    """Wait until the subject hears other processes' invalidations (L2 on): until then L1 lives
    at most DEAF_L1_SECONDS, and a sync function called on this event loop does not wait."""
    cache = subject.function.__tiercache__
    if cache.endpoint() is None:
        return
    for _ in range(200):
        if cache.snapshot().coherent:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the subject never followed its invalidation channel")


async def test_a_result_is_computed_once_then_served_from_the_nearest_tier(
    subject: Subject, tiers: str
) -> None:
    first = await subject("a")
    second = await subject("a")
    assert first == second == {"args": ["a"], "run": 1}
    assert subject.runs == [("a",)]
    stats = subject.stats()
    assert (stats.calls, stats.misses) == (2, 1)
    assert (stats.l1_hits, stats.l2_hits) == ((1, 0) if uses_l1(tiers) else (0, 1))


async def test_distinct_arguments_are_distinct_entries(subject: Subject) -> None:
    assert (await subject("a"))["run"] == 1
    assert (await subject("b"))["run"] == 2
    assert (await subject("a", 1))["run"] == 3
    assert (await subject("a"))["run"] == 1


async def test_none_is_cached(mode: str, tiers: str) -> None:
    runs: list[int] = []
    subject = make_subject(mode, tiers, body=lambda *a: runs.append(1))
    assert await subject("k") is None
    assert await subject("k") is None
    assert runs == [1]


async def test_exceptions_are_not_cached_and_are_counted(mode: str, tiers: str) -> None:
    outcomes: list[Any] = [ValueError("boom"), "ok"]

    def body(*args: Any) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    subject = make_subject(mode, tiers, body=body)
    with pytest.raises(ValueError, match="boom"):
        await subject("k")
    assert await subject("k") == "ok"
    assert await subject("k") == "ok"
    stats = subject.stats()
    assert (stats.calls, stats.misses, stats.errors) == (3, 2, 1)


async def test_l2_is_shared_between_processes(mode: str, tiers: str, clock: Clock) -> None:
    if not uses_l2(tiers):
        pytest.skip("L1 is private to a process")
    one, two = other_process(mode, tiers, clock), other_process(mode, tiers, clock)
    assert await one("a") == {"args": ["a"], "run": 1}
    assert await two("a") == {"args": ["a"], "run": 1}
    assert two.runs == []
    assert two.stats().l2_hits == 1


async def test_invalidate_drops_the_entry_from_both_tiers(mode: str, tiers: str, clock: Clock) -> None:
    one, two = other_process(mode, tiers, clock), other_process(mode, tiers, clock)
    await one("a")
    await one("b")
    await one.invalidate("a")
    assert (await one("a"))["run"] == 3
    assert (await one("b"))["run"] == 2  # untouched
    if uses_l2(tiers):
        await two.invalidate("b")
        assert (await two("b"))["run"] == 1 and two.runs == [("b",)]


async def test_clear_drops_every_entry_of_the_function(mode: str, tiers: str, clock: Clock) -> None:
    one = other_process(mode, tiers, clock)
    await one("a")
    await one("b")
    await one.clear()
    assert (await one("a"))["run"] == 3
    assert (await one("b"))["run"] == 4
    if uses_l2(tiers):
        # A process that starts after the clear sees the new generation at once.
        late = other_process(mode, tiers, clock)
        assert (await late("a"))["run"] == 3


async def test_clear_zeroes_the_stats_as_functools_does(subject: Subject) -> None:
    await subject("a")
    await subject("a")
    assert subject.function.cache_info()[:2] != (0, 0)
    await subject.clear()  # (functools.lru_cache's cache_clear() clears its statistics too)
    assert subject.function.cache_info()[:2] == (0, 0)
    assert subject.function.cache_stats().calls == 0
    await subject("a")
    assert subject.function.cache_info()[:2] == (0, 1)


async def test_clear_reaches_another_process_at_its_next_read(mode: str, tiers: str, clock: Clock) -> None:
    if not uses_l2(tiers):
        pytest.skip("L1 is private to a process")
    # (every L2 read fetches the generation with the entry: no wait for a recheck)
    one, two = other_process(mode, tiers, clock), other_process(mode, tiers, clock)
    await one("a")
    assert (await two("a"))["run"] == 1
    await one.clear()
    two.function.__tiercache__.local.clear()  # L1 coherence across processes is another issue
    assert (await two("a")) == {"args": ["a"], "run": 1}  # two's own first run


async def test_l1_entries_expire_after_ttl_l1(mode: str, tiers: str, clock: Clock) -> None:
    if not uses_l1(tiers):
        pytest.skip("no L1")
    subject = make_subject(mode, tiers, clock=clock, ttl_l1=10)
    await following_others(subject)
    await subject("a")
    clock.now += 9.9
    await subject("a")
    assert subject.stats().l1_hits == 1
    clock.now += 0.2
    again = await subject("a")
    stats = subject.stats()
    if uses_l2(tiers):
        assert again["run"] == 1 and stats.l2_hits == 1
    else:
        assert again["run"] == 2 and stats.misses == 2


async def test_an_entry_from_l2_stays_in_l1_no_longer_than_in_l2(mode: str, tiers: str, clock: Clock) -> None:
    if tiers != "l1+l2":
        pytest.skip("needs both tiers")
    one = make_subject(mode, tiers, clock=clock, ttl_l1=600, ttl_l2=0.5)
    two = make_subject(mode, tiers, clock=clock, ttl_l1=600, ttl_l2=0.5)
    await one("a")
    await two("a")
    assert two.stats().l2_hits == 1
    clock.now += 1.0  # past the L2 entry's lifetime, well within ttl_l1
    await two("a")
    assert two.stats().l1_hits == 0


async def test_max_entries_bounds_l1_least_recently_used_first(mode: str, tiers: str) -> None:
    if not uses_l1(tiers):
        pytest.skip("no L1")
    subject = make_subject(mode, "l1", max_entries=2)
    await subject("a")
    await subject("b")
    await subject("a")  # a is now the most recently used
    await subject("c")  # evicts b
    assert subject.function.cache_info().currsize == 2
    await subject("a")
    await subject("b")
    assert subject.runs == [("a",), ("b",), ("c",), ("b",)]


async def test_stats_count_every_call_once(subject: Subject, tiers: str) -> None:
    for key in ("a", "b", "a", "a", "c", "b"):
        await subject(key)
    stats = subject.stats()
    assert stats.calls == 6
    assert stats.misses == 3
    assert stats.l1_hits + stats.l2_hits == 3
    assert stats.calls == stats.l1_hits + stats.l2_hits + stats.misses + stats.coalesced + stats.stale_served
    assert stats.combined_hit_rate == pytest.approx(0.5)
    assert stats.l2_lookups == (0 if tiers == "l1" else 6 if tiers == "l2" else 3)
    assert stats.avg_latency_ms > 0 and 0 < stats.p50_ms <= stats.p99_ms
    reset = subject.function.cache_stats(reset=True)
    assert reset.calls == 6
    assert subject.stats().calls == 0
    await subject("a")
    assert subject.stats().calls == 1


async def test_disabled_function_calls_straight_through(mode: str, tiers: str) -> None:
    subject = make_subject(mode, tiers, enabled=False)
    await subject("a")
    await subject("a")
    assert len(subject.runs) == 2
    assert subject.stats().misses == 2


async def test_configure_enabled_false_bypasses_even_warm_l1(subject: Subject) -> None:
    await subject("a")
    tiercache.configure(enabled=False)
    assert (await subject("a"))["run"] == 2
    tiercache.configure(enabled=True)
    assert (await subject("b"))["run"] == 3
    assert (await subject("b"))["run"] == 3


async def test_configure_l2_false_keeps_functions_in_l1(mode: str, tiers: str, clock: Clock) -> None:
    if tiers != "l1+l2":
        pytest.skip("needs both tiers")
    tiercache.configure(l2=False)
    one, two = other_process(mode, tiers, clock), other_process(mode, tiers, clock)
    await one("a")
    await two("a")
    assert one.stats().l2_lookups == two.stats().l2_lookups == 0
    assert len(two.runs) == 1


async def test_values_l2_cannot_hold_stay_in_l1_and_are_logged_once(
    mode: str, tiers: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Opaque:
        pass

    subject = make_subject(mode, tiers, body=lambda *a: Opaque())
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        first = await subject("a")
        await subject("b")
    assert isinstance(first, Opaque)
    if uses_l1(tiers):
        assert await subject("a") is first
    if uses_l2(tiers):
        assert subject.stats().unencodable == 2
        messages = [r.getMessage() for r in caplog.records if "Opaque" in r.getMessage()]
        assert len(messages) == 1 and "register_type" in messages[0]


async def test_tiercache_stats_lists_every_function(subject: Subject) -> None:
    await subject("a")
    everything = tiercache.stats()
    # (an earlier test's twin may still be alive, awaiting the garbage collector: ours is the
    # youngest of the name, "tests.subject#2" then)
    (name,) = [name for name, cache in named_caches() if cache is subject.function.__tiercache__]
    assert name.partition("#")[0] == "tests.subject"
    assert everything[name].calls >= 1
    assert everything[name].as_dict()["calls"] >= 1
