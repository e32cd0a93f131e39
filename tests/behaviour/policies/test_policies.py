"""Per-result policies: cache_if, TTL functions, jitter, refresh-ahead, timeouts.

Each against L1 alone, fakeredis and the suite's real redis-server, sync and async, with a
clock the test moves (no sleeping for expiry).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache
from tests.support.clock import Clock
from tests.support.faults import opened
from tests.support.tiers import L2S, TIERS, await_until, client_for, stored, ttls, wait_until
from tiercache import NOT_NONE, ComputeTimeoutError, MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._core.shells import running_computations
from tiercache._l1.lru import MISSING

# -- cache_if ---------------------------------------------------------------------------------


@pytest.mark.parametrize("l2", TIERS)
def test_cache_if_keeps_a_rejected_result_out_of_both_tiers(l2: str, request: pytest.FixtureRequest) -> None:
    """get_session("gone") -> None is asked again each time; a real session is cached."""
    client = client_for(request, l2)
    runs: list[str] = []

    @tiered_cache(cache_if=NOT_NONE, **ttls(l2))
    def get_session(session_id: str) -> dict[str, str] | None:
        runs.append(session_id)
        return None if session_id == "gone" else {"id": session_id}

    assert get_session("gone") is None and get_session("gone") is None
    assert runs == ["gone", "gone"]
    assert not stored(get_session, client, "gone")
    assert get_session.cache_stats().not_cached == 2
    assert get_session("s1") == {"id": "s1"} == get_session("s1")
    assert runs.count("s1") == 1 and stored(get_session, client, "s1")


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_cache_if_keeps_a_rejected_result_out(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)
    runs: list[int] = []

    @tiered_cache(cache_if=lambda n: n > 0, **ttls(l2))
    async def score(n: int) -> int:
        runs.append(n)
        return n

    assert await score(-1) == -1 and await score(-1) == -1 and runs == [-1, -1]
    assert not stored(score, client, -1)
    assert await score(3) == 3 and await score(3) == 3 and runs.count(3) == 1
    assert stored(score, client, 3)


@settings(max_examples=60, deadline=None)
@given(results=st.lists(st.one_of(st.none(), st.integers(-50, 50), st.text(max_size=3)), max_size=12))
def test_cache_if_never_stores_a_rejected_value(results: list[Any]) -> None:
    """Property: whatever the results, an entry exists (L1 or L2) exactly for those cache_if kept."""
    server = fakeredis.FakeServer()
    tiercache.configure(
        redis_client=fakeredis.FakeRedis(server=server),
        async_redis_client=lambda: fakeredis.FakeAsyncRedis(server=server),
    )
    client = fakeredis.FakeRedis(server=server)

    def keep(value: Any) -> bool:
        return isinstance(value, int) and value % 3 != 0

    @tiered_cache(cache_if=keep, name=f"prop{id(results)}")
    def result(index: int) -> Any:
        return results[index]

    for index, value in enumerate(results):
        assert result(index) == value
        cache = result.__tiercache__
        assert (index in cache.local.data) == keep(value)
        assert bool(client.exists(result.cache_key(index))) == keep(value)


def test_cache_if_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"tiered_cache\(\): cache_if must be a function of the result"):
        tiered_cache(cache_if=True)


# -- TTL functions ----------------------------------------------------------------------------


@pytest.mark.parametrize("l2", TIERS)
def test_a_ttl_function_remembers_none_briefly(l2: str, request: pytest.FixtureRequest) -> None:
    """The mission's case: "no such session" for 5 s, a real session for an hour."""
    client_for(request, l2)
    clock = Clock()
    sessions: dict[str, str] = {}
    runs: list[str] = []

    @tiered_cache(clock=clock, **ttls(l2, lambda session: 5 if session is None else 3600))
    def get_session(session_id: str) -> str | None:
        runs.append(session_id)
        return sessions.get(session_id)

    assert get_session("new") is None
    sessions["new"] = "alice"  # created a moment later
    assert get_session("new") is None  # still remembered as missing...
    clock.now += 6
    assert get_session("new") == "alice"  # ...but for 5 s only
    clock.now += 1800
    assert get_session("new") == "alice" and runs == ["new", "new"]
    clock.now += 1801
    assert get_session("new") == "alice" and runs == ["new", "new", "new"]


@pytest.mark.parametrize("l2", L2S)
def test_a_ttl_function_sets_redis_own_ttl(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)

    @tiered_cache(ttl_l1=60, ttl_l2=lambda value: 5 if value is None else 3600, stale_ttl=10)
    def find(key: str) -> str | None:
        return None if key == "none" else key

    find("none")
    find("some")
    assert 14_000 < client.pttl(find.cache_key("none")) <= 15_000  # 5 s fresh + 10 s stale
    assert 3_600_000 < client.pttl(find.cache_key("some")) <= 3_610_000


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_ttl_function_can_keep_a_result_out_of_a_tier(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """A TTL function returning None keeps that result out of its tier (here: every tier used)."""
    client = client_for(request, l2)
    runs: list[str] = []

    @tiered_cache(**ttls(l2, lambda value: None if value == "volatile" else 60))
    async def fetch(key: str) -> str:
        runs.append(key)
        return key

    await fetch("volatile")
    await fetch("volatile")
    await fetch("steady")
    await fetch("steady")
    assert runs == ["volatile", "volatile", "steady"]
    assert not stored(fetch, client, "volatile") and stored(fetch, client, "steady")


def test_a_ttl_function_returning_garbage_names_the_function_and_option() -> None:
    @tiered_cache(ttl_l1=lambda value: "soon", ttl_l2=None)
    def broken(key: str) -> str:
        return key

    with pytest.raises(TypeError, match=r"test_policies\..*broken: ttl_l1 returned 'soon' for a str result"):
        broken("a")
    with pytest.raises(TypeError, match=r"ttl_l1 must be a number of seconds or None when given by position"):
        tiered_cache(lambda value: 5, None)


# -- jitter ------------------------------------------------------------------------------------


def test_ttl_jitter_spreads_l1_expiries_below_the_ttl() -> None:
    clock = Clock(1000.0)

    @tiered_cache(ttl_l1=100, ttl_l2=None, ttl_jitter=0.5, max_entries=500, clock=clock)
    def item(n: int) -> int:
        return n

    for n in range(300):
        item(n)
    lifetimes = [entry[1] - 1000.0 for entry in item.__tiercache__.local.data.values()]
    assert all(50 <= life <= 100 for life in lifetimes)
    assert max(lifetimes) - min(lifetimes) > 30 and len(set(lifetimes)) > 250


def test_jitter_leaves_the_application_s_seeded_random_sequence_alone() -> None:
    """TTL jitter and the breaker's probe jitter drew from the global random module: an
    application's seeded sequence moved with every miss (and hypothesis, which checks the global
    state while it draws, failed tests while a prober ran in the background)."""
    import random  # noqa: PLC0415

    from tiercache._l2.breaker import _jittered  # noqa: PLC0415

    @tiered_cache(ttl_l1=100, ttl_l2=None, ttl_jitter=0.5)
    def item(n: int) -> int:
        return n

    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    for n in range(20):
        item(n)
        _jittered(1.0)
    assert [random.random() for _ in range(3)] == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", L2S)
async def test_ttl_jitter_spreads_redis_ttls(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)

    @tiered_cache(ttl_l1=None, ttl_l2=100, ttl_jitter=0.4)
    async def item(n: int) -> int:
        return n

    for n in range(100):
        await item(n)
    ttls_ms = [client.pttl(item.cache_key(n)) for n in range(100)]
    assert all(59_000 <= ttl <= 100_000 for ttl in ttls_ms)
    assert max(ttls_ms) - min(ttls_ms) > 15_000


def test_ttl_jitter_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match=r"ttl_jitter must be a fraction \(0 <= x < 1\), not 1.5"):
        tiered_cache(ttl_jitter=1.5)
    with pytest.raises(ValueError, match=r"refresh_ahead must be a fraction \(0 < x < 1\), not 0"):
        tiered_cache(refresh_ahead=0)


# -- refresh-ahead -----------------------------------------------------------------------------


class Gate:
    """A function body whose runs after the first wait until the test opens the gate."""

    def __init__(self) -> None:
        self.runs = 0
        self.open = threading.Event()
        self.entered = threading.Event()

    def __call__(self, key: str) -> str:
        self.runs += 1
        if self.runs > 1:
            self.entered.set()
            assert self.open.wait(10)
        return f"{key}#{self.runs}"


@pytest.mark.parametrize("l2", TIERS)
def test_refresh_ahead_serves_at_once_and_refreshes_once(l2: str, request: pytest.FixtureRequest) -> None:
    """Near its end an entry is served as a hit while one background run replaces it."""
    client_for(request, l2)
    clock = Clock()
    gate = Gate()
    hot = tiered_cache(refresh_ahead=0.2, clock=clock, name=f"hot-{l2}", **ttls(l2, 100))(gate)

    assert hot("k") == "k#1"
    clock.now += 79
    assert hot("k") == "k#1" and gate.runs == 1  # not due yet
    clock.now += 6  # 85 s of 100: due
    started = time.monotonic()
    assert hot("k") == "k#1"  # at once, though the refresh is blocked
    assert gate.entered.wait(5)
    assert hot("k") == "k#1" and hot("k") == "k#1"
    assert time.monotonic() - started < 2
    assert gate.runs == 2  # one refresh, however many hits
    gate.open.set()
    wait_until(lambda: hot("k") == "k#2")
    stats = hot.cache_stats()
    assert stats.refreshes_ahead == 1 and stats.misses == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_refresh_ahead(l2: str, request: pytest.FixtureRequest) -> None:
    client_for(request, l2)
    clock = Clock()
    runs: list[int] = []
    release = asyncio.Event()

    @tiered_cache(refresh_ahead=0.25, clock=clock, name=f"async-hot-{l2}", **ttls(l2, 40))
    async def hot(key: str) -> str:
        runs.append(1)
        if len(runs) > 1:
            await opened(release)
        return f"{key}#{len(runs)}"

    assert await hot("k") == "k#1"
    clock.now += 31
    assert await hot("k") == "k#1"
    await asyncio.sleep(0.01)
    assert await hot("k") == "k#1" and len(runs) == 2
    release.set()

    async def refreshed() -> bool:
        return await hot("k") == "k#2"

    await await_until(refreshed)
    assert hot.cache_stats().refreshes_ahead == 1


@pytest.mark.parametrize("l2", TIERS)
def test_an_invalidation_during_a_refresh_ahead_keeps_its_value_out(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """The refresh writes under the lease and token of the hit that started it."""
    client = client_for(request, l2)
    clock = Clock()
    gate = Gate()
    hot = tiered_cache(refresh_ahead=0.2, clock=clock, name=f"inv-{l2}", **ttls(l2, 100))(gate)

    hot("k")
    clock.now += 90
    assert hot("k") == "k#1"
    assert gate.entered.wait(5)
    hot.cache_invalidate("k")
    gate.open.set()
    wait_until(lambda: not hot.__tiercache__.refreshes.running("k"))
    assert not stored(hot, client, "k") or (client is not None and hot.cache_get("k") is tiercache.NO_VALUE)
    assert hot("k") == "k#3"  # computed anew, not the refresh's k#2


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("l2", L2S)
def test_timeout_serves_the_stale_value_and_the_run_fills_the_cache(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """Redis lost the entry, L1 has it stale, the function hangs: stale after timeout=."""
    client = client_for(request, l2)
    clock = Clock()
    gate = Gate()
    lookup = tiered_cache(ttl_l1=10, ttl_l2=10, stale_ttl=60, timeout=0.05, clock=clock, name=f"slow-{l2}")(
        gate
    )

    assert lookup("k") == "k#1"
    clock.now += 15
    client.delete(lookup.cache_key("k"))
    started = time.monotonic()
    assert lookup("k") == "k#1"
    assert 0.04 < time.monotonic() - started < 2
    assert lookup("k") == "k#1"  # the run is still going: no second one
    results: list[str] = []
    callers = [threading.Thread(target=lambda: results.append(lookup("k"))) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5)
    assert results == ["k#1"] * 8  # leaders and followers alike, none of them running it again
    assert gate.runs == 2
    gate.open.set()
    wait_until(lambda: lookup("k") == "k#2")
    assert client.exists(lookup.cache_key("k"))
    stats = lookup.cache_stats()
    assert stats.timeouts == 1 and stats.stale_served >= 2 and gate.runs == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", L2S)
async def test_async_timeout_serves_the_stale_value(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)
    clock = Clock()
    runs: list[int] = []
    release = asyncio.Event()

    @tiered_cache(ttl_l1=10, ttl_l2=10, stale_ttl=60, timeout=0.05, clock=clock, name=f"async-slow-{l2}")
    async def lookup(key: str) -> str:
        runs.append(1)
        if len(runs) > 1:
            await opened(release)
        return f"{key}#{len(runs)}"

    assert await lookup("k") == "k#1"
    clock.now += 15
    client.delete(lookup.cache_key("k"))
    assert await asyncio.wait_for(lookup("k"), 2) == "k#1"
    release.set()

    async def filled() -> bool:
        return await lookup("k") == "k#2"

    await await_until(filled)
    assert len(runs) == 2 and lookup.cache_stats().timeouts == 1


@pytest.mark.parametrize("l2", TIERS)
def test_hard_timeout_raises_and_the_run_still_fills_the_cache(
    l2: str, request: pytest.FixtureRequest
) -> None:
    client_for(request, l2)
    gate = Gate()
    gate.runs = 1  # every run waits at the gate
    lookup = tiered_cache(hard_timeout=0.05, name=f"hard-{l2}", **ttls(l2, 60))(gate)

    with pytest.raises(
        ComputeTimeoutError, match=r"hard-.*: the function ran longer than hard_timeout=0.05 s"
    ):
        lookup("k")
    gate.open.set()
    wait_until(lambda: lookup.cache_contains("k"))
    assert lookup("k") == "k#2" and gate.runs == 2
    assert lookup.cache_stats().timeouts == 1


@pytest.mark.asyncio
async def test_async_hard_timeout_raises(fake_l2: object) -> None:
    release = asyncio.Event()

    @tiered_cache(hard_timeout=0.05, name="async-hard")
    async def lookup(key: str) -> str:
        await opened(release)
        return key

    with pytest.raises(TimeoutError):
        await lookup("k")
    release.set()

    async def filled() -> bool:
        return bool(await lookup.cache_contains("k"))

    await await_until(filled)


@pytest.mark.parametrize("l2", TIERS)
def test_a_hung_run_is_the_only_run_of_its_key(l2: str, request: pytest.FixtureRequest) -> None:
    """15 calls while the first run hangs: each waits hard_timeout for that run, none starts another.

    Before, each call started a run (and a thread): a hung upstream grew threads without bound.
    """
    client_for(request, l2)
    gate = Gate()
    gate.runs = 1  # every run waits at the gate
    lookup = tiered_cache(hard_timeout=0.02, name=f"hung-{l2}", **ttls(l2, 60))(gate)
    for _ in range(15):
        with pytest.raises(ComputeTimeoutError):
            lookup("k")
    assert gate.runs == 2  # the one run, still waiting at the gate
    assert running_computations() == 1
    assert lookup.cache_stats().timeouts == 15
    gate.open.set()
    wait_until(lambda: lookup.cache_contains("k"))
    assert lookup("k") == "k#2" and gate.runs == 2
    wait_until(lambda: running_computations() == 0)


@pytest.mark.asyncio
async def test_a_hung_async_run_is_the_only_run_of_its_key(fake_l2: object) -> None:
    release = asyncio.Event()
    runs: list[str] = []

    @tiered_cache(hard_timeout=0.02, name="async-hung")
    async def lookup(key: str) -> str:
        runs.append(key)
        await opened(release)
        return key

    for _ in range(15):
        with pytest.raises(ComputeTimeoutError):
            await lookup("k")
    assert runs == ["k"]
    release.set()

    async def filled() -> bool:
        return bool(await lookup.cache_contains("k"))

    await await_until(filled)
    assert await lookup("k") == "k" and runs == ["k"]


@pytest.mark.parametrize("l2", L2S)
def test_an_invalidation_while_a_run_overruns_keeps_its_value_out(
    l2: str, request: pytest.FixtureRequest
) -> None:
    client = client_for(request, l2)
    gate = Gate()
    gate.runs = 1
    lookup = tiered_cache(hard_timeout=0.05, name=f"overrun-{l2}", ttl_l1=60, ttl_l2=60)(gate)

    with pytest.raises(ComputeTimeoutError):
        lookup("k")
    lookup.cache_invalidate("k")
    gate.open.set()
    wait_until(lambda: not lookup.__tiercache__.refreshes.running("k"))
    assert lookup.cache_get("k") is tiercache.NO_VALUE
    assert lookup.__tiercache__.local.get("k") is MISSING
    assert client.get(lookup.cache_key("k")) is None or lookup.cache_get("k") is tiercache.NO_VALUE


def test_hard_timeout_shorter_than_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hard_timeout \(1\) is shorter than timeout \(2\)"):
        tiered_cache(timeout=2, hard_timeout=1)


def test_the_adapter_spreads_set_many_expiries_too(real_l2: str) -> None:
    client = redis.Redis.from_url(real_l2)
    settings = MultiTierCacheSettings(l2_url=real_l2, ttl_jitter=0.5, l1_ttl_seconds=100, l2_ttl_seconds=1000)
    cache = MultiTierCache(settings)
    cache.set_many({f"k{i}": i for i in range(100)})
    pttls = [client.pttl(cache._tiers.key(f"k{i}")) for i in range(100)]
    assert all(499_000 <= ttl <= 1_000_000 for ttl in pttls), pttls[:5]
    assert max(pttls) - min(pttls) > 200_000
    now = time.monotonic()
    lives = [entry[1] - now for entry in cache._tiers.local.data.values()]
    assert all(49 <= life <= 100.1 for life in lives) and max(lives) - min(lives) > 20


def test_adapter_ttl_jitter_is_checked_and_read_from_the_environment() -> None:
    with pytest.raises(
        ValueError, match=r"MultiTierCacheSettings: ttl_jitter must be a fraction \(0 <= x < 1\)"
    ):
        MultiTierCacheSettings(ttl_jitter=2)
    assert MultiTierCacheSettings.from_env({"TIERCACHE_TTL_JITTER": "0.2"}).ttl_jitter == 0.2


def test_a_run_that_overran_and_then_died_does_not_keep_its_key_claimed(fake_l2: object) -> None:
    """SystemExit in the run's thread (or a cancelled task) ends it without a value: the next
    caller with a stale value must be able to start a run again, not get the stale one for good."""
    clock = Clock()
    release = threading.Event()
    runs: list[int] = []

    @tiered_cache(ttl_l1=10, ttl_l2=10, stale_ttl=60, timeout=0.05, clock=clock, name="dies")
    def lookup(key: str) -> str:
        runs.append(1)
        if len(runs) == 2:
            assert release.wait(5)
            raise SystemExit  # (in the run's own thread: it ends the run, not the process)
        return f"{key}#{len(runs)}"

    client = fakeredis.FakeRedis(server=fake_l2)  # type: ignore[arg-type]
    assert lookup("k") == "k#1"
    clock.now += 15
    client.delete(lookup.cache_key("k"))
    assert lookup("k") == "k#1"  # stale after the timeout; the run goes on
    release.set()
    wait_until(lambda: not lookup.__tiercache__.refreshes.running("k"))
    assert lookup("k") == "k#3"  # a new run, not the stale value again


@pytest.mark.asyncio
async def test_a_cancelled_run_that_overran_does_not_keep_its_key_claimed(fake_l2: object) -> None:
    clock = Clock()
    release = asyncio.Event()
    runs: list[int] = []

    @tiered_cache(ttl_l1=10, ttl_l2=10, stale_ttl=60, timeout=0.05, clock=clock, name="cancelled")
    async def lookup(key: str) -> str:
        runs.append(1)
        if len(runs) == 2:
            await opened(release)
            raise asyncio.CancelledError  # the run's own task ends cancelled
        return f"{key}#{len(runs)}"

    client = fakeredis.FakeRedis(server=fake_l2)  # type: ignore[arg-type]
    assert await lookup("k") == "k#1"
    clock.now += 15
    client.delete(lookup.cache_key("k"))
    assert await lookup("k") == "k#1"
    release.set()
    deadline = time.monotonic() + 5
    while lookup.__tiercache__.refreshes.running("k"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert await lookup("k") == "k#3"
    assert lookup.cache_stats().refresh_errors == 1
