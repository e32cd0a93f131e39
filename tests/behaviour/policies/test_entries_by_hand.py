"""cache_get / cache_contains / cache_set / cache_warm, on L1 alone, fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import fakeredis
import pytest

import tiercache
from tests.support.concurrency import at_once
from tests.support.tiers import TIERS, client_for, stored, ttls, wait_until
from tiercache import NO_VALUE, WarmReport, tiered_cache
from tiercache._l1.lru import MISSING as MISSING_VALUE
from tiercache._l2 import stores


@pytest.mark.parametrize("l2", TIERS)
def test_get_and_contains_peek_without_running(l2: str, request: pytest.FixtureRequest) -> None:
    client_for(request, l2)
    runs: list[str] = []

    @tiered_cache(name=f"peek-{l2}", **ttls(l2))
    def lookup(key: str) -> str:
        runs.append(key)
        return key.upper()

    assert lookup.cache_get("a") is NO_VALUE and not lookup.cache_contains("a") and runs == []
    lookup("a")
    assert lookup.cache_get("a") == "A" and lookup.cache_contains("a") and runs == ["a"]


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_get_finds_what_another_process_wrote(l2: str, request: pytest.FixtureRequest) -> None:
    """Peek at L2 when L1 has nothing (here: L1 emptied, as in a fresh process); fill L1 from it."""
    client_for(request, l2)

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"other-{l2}")
    def lookup(key: str) -> str:
        return key * 2

    lookup("b")
    lookup.__tiercache__.local.clear()
    assert lookup.cache_get("b") == "bb"
    assert lookup.__tiercache__.local.get("b") == "bb"


@pytest.mark.parametrize("l2", TIERS)
def test_set_replaces_the_entry_in_both_tiers(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)
    runs: list[str] = []

    @tiered_cache(name=f"set-{l2}", ttl_l1=60, ttl_l2=None if l2 == "l1" else 600)
    def lookup(key: str) -> str:
        runs.append(key)
        return "computed"

    assert lookup("a") == "computed"
    lookup.cache_set("put", "a")
    assert lookup("a") == "put" and runs == ["a"]
    if client is not None:
        lookup.__tiercache__.local.clear()  # as another process sees it
        assert lookup("a") == "put" and runs == ["a"]
    lookup.cache_set("fresh", key="z")  # keyword arguments name the call as for the function
    assert lookup("z") == "fresh" and runs == ["a"]
    assert stored(lookup, client, "z")


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_run_under_way_cannot_overwrite_a_set(l2: str, request: pytest.FixtureRequest) -> None:
    """cache_set during a run: the run's caller gets its value, the cache keeps the set one."""
    client_for(request, l2)
    entered, release = threading.Event(), threading.Event()

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"race-{l2}")
    def lookup(key: str) -> str:
        entered.set()
        assert release.wait(5)
        return "old, computed before the set"

    result: list[str] = []
    caller = threading.Thread(target=lambda: result.append(lookup("k")))
    caller.start()
    assert entered.wait(5)
    lookup.cache_set("set", "k")
    release.set()
    caller.join(5)
    assert result == ["old, computed before the set"]
    assert lookup("k") == "set"
    lookup.__tiercache__.local.clear()
    assert lookup.cache_get("k") == "set"  # L2 refused the run's write too
    assert lookup.cache_stats().l2_writes_refused == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_get_set_contains(l2: str, request: pytest.FixtureRequest) -> None:
    client_for(request, l2)

    @tiered_cache(name=f"async-entries-{l2}", **ttls(l2))
    async def lookup(key: str) -> str:
        return key

    assert await lookup.cache_get("a") is NO_VALUE
    assert not await lookup.cache_contains("a")
    await lookup.cache_set("A!", "a")
    assert await lookup.cache_get("a") == "A!" and await lookup.cache_contains("a")
    assert await lookup("a") == "A!"
    await lookup.cache_invalidate("a")
    assert await lookup.cache_get("a") is NO_VALUE


def test_set_with_redis_down_leaves_no_old_value_behind(fake_l2: Any) -> None:
    """A set that cannot reach Redis invalidates the key there once Redis is back."""
    server = fakeredis.FakeServer()
    tiercache.configure(redis_client=fakeredis.FakeRedis(server=server))

    @tiered_cache(ttl_l1=60, ttl_l2=600, name="set-down")
    def lookup(key: str) -> str:
        return "old"

    lookup("k")
    server.connected = False
    lookup.cache_set("new", "k")
    assert lookup("k") == "new"
    assert lookup.cache_stats().pending_invalidations == 1
    server.connected = True
    breaker = lookup.__tiercache__.endpoint().breaker
    wait_until(lambda: not breaker.is_open)  # its probe finds Redis back
    lookup.__tiercache__.local.clear()
    assert lookup.cache_get("k") is NO_VALUE  # the replayed invalidation dropped "old"


# -- warming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("l2", TIERS)
def test_warm_computes_what_is_missing(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)
    runs: list[tuple[str, int]] = []
    seen: list[tuple[int, int | None]] = []

    @tiered_cache(name=f"warm-{l2}", **ttls(l2))
    def price(sku: str, qty: int = 1) -> int:
        runs.append((sku, qty))
        if sku == "bad":
            raise ValueError("no such sku")
        return qty * 10

    price("a")
    report = price.cache_warm(
        ["a", ("b", 2), {"sku": "c", "qty": 3}, "bad"],
        concurrency=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.total, report.computed, report.cached, report.failed) == (4, 2, 1, 1)
    assert isinstance(report.errors[0][1], ValueError) and report.errors[0][0] == "bad"
    assert sorted(seen) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert runs.count(("a", 1)) == 1
    assert price("b", 2) == 20 and price(sku="c", qty=3) == 30 and len(runs) == 4
    assert stored(price, client, "b", 2)


def test_warm_runs_concurrently_and_lazily() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    @tiered_cache(ttl_l2=None)
    def slow(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return n

    report = slow.cache_warm((n for n in range(24)), concurrency=6)
    assert report == WarmReport(24, 24, 0, 0)
    assert 2 <= peak <= 6
    with pytest.raises(ValueError, match=r"cache_warm\(\): concurrency must be a whole number >= 1"):
        slow.cache_warm([1], concurrency=0)


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_warm(l2: str, request: pytest.FixtureRequest) -> None:
    client = client_for(request, l2)
    active = 0
    peak = 0

    @tiered_cache(name=f"async-warm-{l2}", **ttls(l2))
    async def fetch(n: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return n * n

    await fetch(1)
    report = await fetch.cache_warm(range(10), concurrency=4)
    assert (report.computed, report.cached, report.failed) == (9, 1, 0)
    assert peak == 4
    assert await fetch.cache_get(7) == 49 and stored(fetch, client, 7)


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_after_a_set_returns_no_reader_puts_the_old_value_back(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """Stress: readers miss L1 and read L2 while cache_set replaces the value; once it returns,
    the set value (or a later one) is what every tier answers, never the one before it."""
    client_for(request, l2)
    stop = threading.Event()

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"set-stress-{l2}")
    def lookup(key: str) -> int:
        return -1

    def reader() -> None:
        while not stop.is_set():
            lookup("k")
            lookup.__tiercache__.local.data.pop("k", None)  # expired, as it were: read L2 again

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    stale = 0
    try:
        for version in range(300):
            lookup.cache_set(version, "k")
            seen = lookup.__tiercache__.local.get("k")
            seen_l2 = lookup.cache_get("k")
            stale += (seen is not MISSING_VALUE and seen < version) + (seen_l2 < version)
    finally:
        stop.set()
        for thread in readers:
            thread.join(5)
    assert stale == 0


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_reader_that_read_before_the_set_wrote_cannot_put_the_old_value_back(
    l2: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced: a reader misses L1 after the set dropped it, reads the old value from Redis before
    the set's write, and tries to keep it in L1 after the set has returned."""
    client_for(request, l2)

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"set-race-{l2}")
    def lookup(key: str) -> str:
        return "computed"

    lookup.cache_set("old", "k")
    set_dropped, reader_read, set_done = threading.Event(), threading.Event(), threading.Event()
    write_many, read = stores.SyncStore.write_many, stores.SyncStore.read

    def paused_write(store: Any, *args: Any, **kwargs: Any) -> Any:
        set_dropped.set()
        assert reader_read.wait(5)  # the reader has read the old value
        return write_many(store, *args, **kwargs)

    def paused_read(store: Any, *args: Any, **kwargs: Any) -> Any:
        answer = read(store, *args, **kwargs)
        if threading.current_thread() is not threading.main_thread():
            reader_read.set()
            assert set_done.wait(5)  # ... and keeps it until the set has returned
        return answer

    monkeypatch.setattr(stores.SyncStore, "write_many", paused_write)
    monkeypatch.setattr(stores.SyncStore, "read", paused_read)
    seen: list[str] = []

    def reader() -> None:
        assert set_dropped.wait(5)
        seen.append(lookup("k"))

    thread = threading.Thread(target=reader)
    thread.start()
    lookup.cache_set("new", "k")
    set_done.set()
    thread.join(5)
    assert seen == ["old"]  # (it read before the set wrote: that answer stands for its caller)
    assert lookup.__tiercache__.local.get("k") == "new"
    assert lookup("k") == "new" and lookup.cache_get("k") == "new"


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_set_in_one_process_reaches_the_l1_of_another(l2: str, request: pytest.FixtureRequest) -> None:
    """Two caches of one function (two processes, as far as the channel knows): each side's set
    drops the other's L1 copy, and an invalidation reaches the entry a set put in L1."""
    client_for(request, l2)

    def make() -> Any:
        @tiered_cache(ttl_l1=600, ttl_l2=600, name=f"two-{l2}")
        def lookup(key: str) -> str:
            return "computed"

        return lookup

    first, second = make(), make()
    assert second("k") == "computed"
    first.cache_set("from first", "k")  # (first never called it: the set is all it knows of "k")
    wait_until(lambda: second("k") == "from first")
    second.cache_invalidate("k")  # the entry first's set put in its L1 must hear of this
    wait_until(lambda: first.__tiercache__.local.get("k") is MISSING_VALUE)
    assert first("k") == "computed"


def test_a_set_with_an_argument_too_long_to_be_a_key_is_refused() -> None:
    @tiered_cache(ttl_l2=None, name="long-set")
    def lookup(key: str) -> str:
        return key

    with pytest.raises(tiercache.UnkeyableArgumentError, match=r"long-set"):
        lookup.cache_set("v", "x" * 100_000)


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_set_just_after_another_process_cleared_is_not_lost(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """The setter has not heard of the clear (here: it hears nothing). Sealed in the generation
    it knew, its value would be a miss for everyone; it lands in the new one instead."""
    client_for(request, l2)
    runs: list[str] = []

    def body(key: str) -> str:
        runs.append(key)
        return f"computed {key}"

    setter = tiered_cache(ttl_l1=60, coherent=False, name="entries.cleared")(body)
    reader = tiered_cache(ttl_l1=None, name="entries.cleared")(body)  # another process's, L2 only
    setter("warm")  # learns the generation
    reader.cache_clear()
    setter.cache_set("set by hand", "k")
    assert reader("k") == "set by hand"
    assert runs == ["warm"]


# -- sets at once, and sets Redis cannot take ------------------------------------------------------


def test_two_threads_setting_one_key_leave_this_process_answering_what_redis_holds(real_l2: str) -> None:
    """300 trials: two cache_set() of one key at once; afterwards L1 agrees with Redis (or is empty)."""
    name = f"entries.concurrent-sets.{time.monotonic_ns()}"
    setter = tiered_cache(ttl_l1=600, name=name)(lambda key: "computed")
    redis_view = tiered_cache(ttl_l1=None, name=name, coherent=False)(lambda key: "computed")
    disagreed = 0
    for trial in range(300):
        at_once([lambda i=i, t=trial: setter.cache_set(f"{t}-{i}", "k") for i in range(2)])
        disagreed += setter.cache_get("k") != redis_view.cache_get("k")
    assert disagreed == 0, f"{disagreed} of 300 trials left L1 holding another value than Redis"
