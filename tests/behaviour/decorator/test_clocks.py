"""One injected clock moves every clock of a cache: L1 expiry, L2 freshness, flights."""

from __future__ import annotations

import asyncio
import time

import pytest

import tiercache
from tests.support.clock import Clock
from tiercache import tiered_cache
from tiercache._core.clocks import Clocks


def test_real_clocks_unless_a_test_gives_one() -> None:
    """time.monotonic gives the real clocks; a fake one moves the wall clock with it."""
    assert Clocks.following(time.monotonic) == Clocks()
    clock = Clock(100.0)
    clocks = Clocks.following(clock)
    start = clocks.wall()
    assert start == pytest.approx(time.time(), abs=1)
    clock.now += 3600
    assert clocks.monotonic() == 3700
    assert clocks.wall() == start + 3600


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_l2_freshness_follows_the_injected_clock(l2: str, request: pytest.FixtureRequest) -> None:
    """An L2 entry goes stale, then out, when the test's clock says so: no sleeping."""
    request.getfixturevalue(l2)
    # Not the 0.1 s default: a read timing out on a loaded machine runs the function (that is
    # fail-safe, tested elsewhere), and would count here as a run the clock did not cause.
    tiercache.configure(timeout=5.0)
    clock = Clock()
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, ttl_l2=60, stale_ttl=60, clock=clock)
    def lookup(key: str) -> str:
        runs.append(key)
        return f"{key}#{len(runs)}"

    assert lookup("a") == "a#1"
    assert lookup("a") == "a#1" and lookup.cache_stats().l2_hits == 1
    clock.now += 90  # past ttl_l2, within stale_ttl: served stale, refreshed behind our back
    assert lookup("a") == "a#1"
    assert lookup.cache_stats().stale_served == 1
    deadline = time.monotonic() + 5
    while lookup("a") != "a#2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runs == ["a", "a"]
    clock.now += 200  # past ttl_l2 and stale_ttl: the entry is gone, a plain miss
    assert lookup("a") == "a#3"


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
async def test_async_l2_freshness_follows_the_injected_clock(l2: str, request: pytest.FixtureRequest) -> None:
    """The same for a coroutine function."""
    request.getfixturevalue(l2)
    tiercache.configure(timeout=5.0)  # (as above)
    clock = Clock()
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, ttl_l2=60, clock=clock)
    async def lookup(key: str) -> str:
        runs.append(key)
        await asyncio.sleep(0)
        return f"{key}#{len(runs)}"

    assert await lookup("a") == "a#1"
    clock.now += 30
    assert await lookup("a") == "a#1"
    clock.now += 60  # 90 s after the write: past ttl_l2 and the deadline's slack for clock skew
    assert await lookup("a") == "a#2"


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_an_entry_past_its_ttl_by_our_clock_is_a_miss_even_under_the_stampede_lock(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """Redis still holds it (its clock is behind ours); the lock's path must not serve it as found."""
    request.getfixturevalue(l2)
    tiercache.configure(timeout=5.0)  # (as above)
    clock = Clock()
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, ttl_l2=60, lock=True, clock=clock)
    def lookup(key: str) -> str:
        runs.append(key)
        return f"{key}#{len(runs)}"

    assert lookup("a") == "a#1"
    clock.now += 60.5  # past ttl_l2 by our clock, within the deadline's slack for clock skew
    assert lookup("a") == "a#2"
    assert lookup.cache_stats().l2_hits == 0 and lookup.cache_stats().misses == 2


def test_flights_linger_by_the_injected_clock(fake_l2: object) -> None:
    """A function without L1 lingers its settled flights by the cache's clock."""
    clock = Clock()

    @tiered_cache(ttl_l1=None, ttl_l2=60, clock=clock)
    def lookup(key: str) -> str:
        return key

    cache = lookup.__tiercache__
    assert cache.flights.thread._clock is clock
