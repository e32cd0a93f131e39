"""tiercache.close() / aclose(): nothing left running or open, nothing lost, and a lazy reopen."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiercache
from tests.support.clock import Clock
from tests.support.faults import until
from tests.support.leftovers import connections_to, tiercache_threads
from tests.support.paths import ROOT
from tests.support.servers import configured_server
from tiercache import MultiTierCache, MultiTierCacheAdapter, MultiTierCacheSettings, _background, tiered_cache
from tiercache._background import submit
from tiercache._decorator import config as _config
from tiercache._l2.coherence import Bus
from tiercache._l2.endpoint import Endpoint
from tiercache._l2.envelope import open_envelope
from tiercache._tools.redis_process import RedisProcess, free_port


@pytest.fixture(autouse=True)
def nothing_left_from_earlier_tests() -> None:
    """Close what earlier tests left running, so that what a test finds is its own doing."""
    tiercache.close()


def worker(redis_server: RedisProcess, mode: str, namespace: str) -> list[dict[str, Any]]:
    """Run tests/support/workers/lifecycle.py in a fresh interpreter that makes every warning an error."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-X", "dev", "-W", "error", "-m", "tests.support.workers.lifecycle"]
    done = subprocess.run(
        [*command, redis_server.url, dead, namespace, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # -X dev shows every ResourceWarning (an unclosed socket, an "Unclosed connection" of
    # redis.asyncio) and every exception ignored in a destructor, on stderr.
    for bad in ("Warning", "Unclosed", "Exception ignored", "Traceback"):
        assert bad not in done.stderr, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def by_what(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["what"]: line for line in lines}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_close_leaves_no_thread_or_socket_and_reopens(
    redis_server: RedisProcess, isolated_settings: str, mode: str
) -> None:
    seen = by_what(worker(redis_server, mode, isolated_settings))
    closed = seen["closed"]
    # Background refreshes, listeners, probers of a dead Redis: all stopped; every connection
    # closed (in async mode, checked inside the loop: its connections are closed now).
    assert closed["threads"] == [] and closed["peers"] == []
    # The invalidation made while Redis was unreachable is reported, not silently dropped.
    assert closed["report"]["pending"] == {"lifecycle.unreachable": 1}
    assert seen["closed twice"]["report"]["pending"] == {"lifecycle.unreachable": 1}
    assert seen["closed twice"]["adapter"]["clean"]
    # Used again, everything reopens; the value changed while closed is seen (L1 was flushed).
    assert seen["reopened"]["value"] == 2 and seen["reopened"]["adapter"] == 1
    assert seen["closed again"]["threads"] == [] and seen["closed again"]["peers"] == []


@pytest.mark.slow
def test_preload_then_fork_needs_no_close_before_the_fork(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    """A gunicorn --preload parent warms its caches up and forks workers without closing."""
    seen = by_what(worker(redis_server, "fork", isolated_settings))
    children = seen["children"]["results"]
    assert [child.get("error") for child in children] == [None, None]
    assert [child["status"] for child in children] == [0, 0]
    for child in children:
        # Each worker heard the other's invalidations (its own listener, started at fork)...
        assert child["seen"][2:] == [2, 2, 1], child
        # ...and closing it leaves nothing behind, not even the parent's inherited sockets.
        assert child["threads"] == [] and child["peers"] == [], child
        assert child["report"]["clean"]
    assert seen["parent"] == {"what": "parent", "value": 2, "tagged": 2}
    assert seen["parent closed"]["threads"] == [] and seen["parent closed"]["peers"] == []


# -- in this process ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to pause."""
    with configured_server(tmp_path, timeout=0.1, connect_timeout=0.25) as process:
        yield process


def test_close_stops_every_thread_and_a_call_reopens(real_l2: str) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    assert "tiercache-coherence" in tiercache_threads()
    report = tiercache.close()
    assert report.clean and report == tiercache.CloseReport()
    assert tiercache_threads() == []
    assert double(2) == 4 and double.cache_stats().l2_hits == 1  # (L1 was flushed at close)
    until(lambda: "tiercache-coherence" in tiercache_threads(), timeout=2.0)
    tiercache.close()
    assert tiercache_threads() == []


def test_close_flushes_coherent_l1s_only(real_l2: str) -> None:
    """Closed, a process hears no invalidations: what its L1s hold could go stale unheard."""

    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def coherent(x: int) -> int:
        return x

    @tiered_cache(ttl_l1=60, ttl_l2=None)
    def local_only(x: int) -> int:
        return x

    coherent(1)
    local_only(1)
    tiercache.close()
    assert coherent.cache_stats().l1_size == 0
    assert local_only.cache_stats().l1_size == 1


def test_background_work_is_waited_for_then_reported(real_l2: str) -> None:
    release = threading.Event()
    submit(lambda: release.wait(10))
    time.sleep(0.05)
    started = time.monotonic()
    report = tiercache.close(timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2.0
    assert report.still_running == 1 and not report.clean
    release.set()
    until(lambda: tiercache_threads() == [], timeout=2.0)
    assert tiercache.close().clean


def test_a_listener_stuck_in_a_redis_call_is_waited_for_then_reported(real_l2: str) -> None:
    """A listener blocked in a call (a server that does not answer) ends when the call does."""

    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def double(x: int) -> int:
        return 2 * x

    endpoint = _config.endpoint_for(_config.current())
    assert endpoint.bus is not None
    release = threading.Event()
    subscribe = endpoint.bus._subscribe

    def stuck(attempt: int) -> Any:
        release.wait(10)  # (as a connect to a server that never answers, bounded by its timeout)
        return subscribe(attempt)

    endpoint.bus._subscribe = stuck
    assert double(2) == 4
    report = tiercache.close(timeout=0.2)
    assert report.still_running == 1 and not report.clean
    release.set()
    until(lambda: tiercache_threads() == [], timeout=2.0)
    assert tiercache.close().clean


def listening_double() -> tuple[Any, Endpoint]:
    """A cached function called once, and the endpoint whose channel it now follows.

    (No assert here: pytest keeps what an assert looked at, and one test needs the endpoint gone.)
    """

    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def double(x: int) -> int:
        return 2 * x

    double(1)
    endpoint = double.__tiercache__.endpoint_in_use()
    if endpoint is None or endpoint.bus is None:
        pytest.fail("the function follows no channel")
    return double, endpoint


def test_a_listener_left_on_an_endpoint_nobody_uses_stops(real_l2: str) -> None:
    """A call racing with a reset reopens the endpoint the reset dropped; then nothing uses it.

    Its function still follows that endpoint's channel, so its listener would go on for good,
    where no close() finds it (close() knows the endpoints still in use).
    """

    def reopened_behind_a_reset() -> tuple[Any, Bus, weakref.ref[Endpoint]]:
        double, endpoint = listening_double()
        _config.reset()  # closes the endpoint and forgets it
        endpoint.store()  # the racing call: reopened, so listening again
        return double, endpoint.bus, weakref.ref(endpoint)

    double, bus, endpoint = reopened_behind_a_reset()
    until(lambda: bus.connected, timeout=2.0)
    tiercache.configure(redis_url=real_l2)
    assert double(1) == 2 and double.__tiercache__.endpoint_in_use() is not endpoint()
    subscription = bus._subscription
    assert subscription is not None
    poll = subscription.read
    subscription.read = lambda timeout: (time.sleep(1.0), poll(timeout))[1]  # type: ignore[method-assign]  # a slow poll
    del subscription
    for worker in _background.stop()[1]:  # (a worker holds its last job: one was the endpoint's)
        worker.join(5)
    gc.collect()
    assert endpoint() is None
    report = tiercache.close()  # waits for it: it is in its (slow) poll still
    assert tiercache_threads() == [] and report.clean


def test_a_child_forked_while_an_abandoned_listener_ends_does_not_restart_it(real_l2: str) -> None:
    _, endpoint = listening_double()
    bus = endpoint.bus
    bus.abandon()  # what the endpoint's finalizer does
    bus.after_fork()  # what a child forked now runs (its members live on)
    assert bus._thread is None
    until(lambda: "tiercache-coherence" not in tiercache_threads(), timeout=2.0)  # (the parent's ends)


def occupy_workers() -> threading.Event:
    """Give each of the 4 background workers a job that waits for the event returned."""
    release = threading.Event()
    for _ in range(4):
        submit(lambda: release.wait(10))
    time.sleep(0.05)
    return release


def close_releasing(release: threading.Event) -> tiercache.CloseReport:
    """Call close() on another thread, free the workers once it waits for them; its report."""
    reports: list[tiercache.CloseReport] = []
    closing = threading.Thread(target=lambda: reports.append(tiercache.close(timeout=5)))
    closing.start()
    time.sleep(0.05)
    release.set()
    closing.join(10)
    return reports[0]


def test_queued_background_jobs_are_dropped_not_run(real_l2: str) -> None:
    release = occupy_workers()
    ran: list[int] = []
    for n in range(3):
        submit(lambda n=n: ran.append(n))
    report = close_releasing(release)
    assert report.dropped == 3 and report.still_running == 0
    assert ran == [] and tiercache_threads() == []


@pytest.mark.slow
def test_close_replays_invalidations_redis_missed_or_reports_them(
    server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60, name="lifecycle.missed")
    def value(key: str) -> str:
        return key

    value("k")
    stored = value.cache_key("k")
    server.pause()
    try:
        value("other")  # times out: the breaker opens
        value.cache_invalidate("k")  # deferred
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tiercache"):
            report = tiercache.close(timeout=0.5)
    finally:
        server.resume()
    assert report.pending_invalidations == {"lifecycle.missed": 1}
    assert "1 invalidation(s) of lifecycle.missed never reached Redis" in caplog.text
    assert open_envelope(server.client().get(stored)).tombstone is False  # (still the old value)
    # Redis answers again: the next close gives the invalidation its last try, and it lands.
    value.__tiercache__.endpoint_in_use().breaker.success()  # (as the prober would, once resumed)
    assert tiercache.close().clean
    assert value.cache_stats().pending_invalidations == 0
    raw = server.client().get(stored)
    assert raw is None or open_envelope(raw).tombstone


def test_close_while_threads_call_never_fails_a_call(real_l2: str) -> None:
    """Closing under load: calls racing with it go on (reopening), none fails or is wrong."""

    @tiered_cache(ttl_l1=0.01, ttl_l2=60)
    def square(x: int) -> int:
        return x * x

    stop = threading.Event()
    problems: list[str] = []

    def call() -> None:
        n = 0
        while not stop.is_set():
            n = (n + 1) % 50
            try:
                if square(n) != n * n:
                    problems.append(f"square({n}) wrong")
            except Exception as exc:
                problems.append(repr(exc))

    callers = [threading.Thread(target=call) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        for _ in range(20):
            tiercache.close()
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in callers:
            thread.join(10)
    assert problems == []
    tiercache.close()
    assert tiercache_threads() == []


@pytest.mark.asyncio
async def test_aclose_closes_this_loops_connections_now(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60)
    async def double(x: int) -> int:
        return 2 * x

    before = connections_to(redis_server.port)
    assert await double(2) == 4
    assert connections_to(redis_server.port) - before  # this loop's
    report = await tiercache.aclose()
    assert report.clean and tiercache_threads() == []
    assert connections_to(redis_server.port) <= before  # closed now, by aclose()
    assert await double(2) == 4  # reopened, on this loop
    await tiercache.aclose()
    assert connections_to(redis_server.port) <= before


@pytest.mark.asyncio
async def test_aclose_cancels_this_loops_refreshes_past_the_timeout(real_l2: str) -> None:
    started = asyncio.Event()

    @tiered_cache(ttl_l1=0.01, ttl_l2=0.05, stale_ttl=60, name="lifecycle.slow")
    async def slow(x: int) -> int:
        if started.is_set():
            await asyncio.sleep(30)  # the refresh
        started.set()
        return x

    await slow(1)
    await asyncio.sleep(0.1)
    assert await slow(1) == 1  # stale: served, and a refresh starts in the background
    await asyncio.sleep(0.01)
    report = await tiercache.aclose(timeout=0.1)
    assert report.dropped == 1


def test_bad_timeouts_name_the_function() -> None:
    with pytest.raises(TypeError, match=r"tiercache.close\(\): timeout must be a number of seconds"):
        tiercache.close(timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MultiTierCache.close\(\): timeout must be a finite number > 0"):
        MultiTierCache().close(timeout=-1)


@pytest.mark.asyncio
async def test_adapters_close_and_reopen(redis_server: RedisProcess, isolated_settings: str) -> None:
    settings = MultiTierCacheSettings(l2_url=redis_server.url, namespace=isolated_settings)
    async with MultiTierCacheAdapter(settings) as cache:
        await cache.set("k", 1)
    assert await cache.get("k") == 1  # reopened
    assert (await cache.aclose()).clean
    assert (await cache.aclose()).clean  # twice
    with MultiTierCache(settings) as sync_cache:
        sync_cache.set("k", 2)
    assert sync_cache.get("k") == 2
    sync_cache.close()
    sync_cache.close()
    # (The background workers are the process's, not an adapter's: tiercache.close() ends them.)
    assert [name for name in tiercache_threads() if name != "tiercache-background"] == []


def test_close_leaves_the_applications_own_clients_open(redis_server: RedisProcess) -> None:
    client = redis_server.client()
    tiercache.configure(redis_client=client)

    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    tiercache.close()
    assert client.ping()  # still usable: it is the application's
    assert double(3) == 6
    tiercache.close()
    client.close()


def test_a_call_that_reopens_during_close_leaves_it_open_and_listening(real_l2: str) -> None:
    """Forced: a call reopens the endpoint between close() stopping its prober and its listener."""
    double, endpoint = listening_double()
    stop_prober = endpoint.breaker.stop

    def stop_then_a_call_comes(timeout: float = 5.0) -> None:
        stop_prober(timeout)
        endpoint.store()  # what a call racing with close() does: reopen

    endpoint.breaker.stop = stop_then_a_call_comes  # type: ignore[method-assign]
    try:
        tiercache.close()
    finally:
        del endpoint.breaker.stop
    # Open, so listening and able to probe: not left with its listener stopped by the close.
    until(lambda: endpoint.bus.connected, timeout=2.0)
    assert not endpoint.breaker._stopped.is_set()
    assert double(2) == 4


@pytest.mark.asyncio
async def test_aclose_while_tasks_call_never_fails_a_call(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(ttl_l1=0.01, ttl_l2=60)
    async def square(x: int) -> int:
        await asyncio.sleep(0)
        return x * x

    before = connections_to(redis_server.port)
    stop = asyncio.Event()
    problems: list[str] = []

    async def call() -> None:
        n = 0
        while not stop.is_set():
            n = (n + 1) % 50
            try:
                if await square(n) != n * n:
                    problems.append(f"square({n}) wrong")
            except Exception as exc:
                problems.append(repr(exc))

    callers = [asyncio.ensure_future(call()) for _ in range(8)]
    for _ in range(10):
        await asyncio.sleep(0.01)
        await tiercache.aclose()
    stop.set()
    await asyncio.gather(*callers)
    assert problems == []
    await tiercache.aclose()
    assert tiercache_threads() == []
    assert connections_to(redis_server.port) <= before


def test_a_refresh_dropped_by_close_leaves_its_key_free_to_refresh(real_l2: str) -> None:
    """Forced: a refresh-ahead is queued behind busy workers when close() drops it. Its key
    must not stay claimed (it would never be refreshed again in this process)."""
    clock = Clock()
    runs: list[int] = []

    @tiered_cache(ttl_l1=100, ttl_l2=None, refresh_ahead=0.2, clock=clock, name="lifecycle.hot")
    def hot(key: str) -> str:
        runs.append(1)
        return f"{key}#{len(runs)}"

    assert hot("k") == "k#1"
    release = occupy_workers()  # the refresh will wait in the queue
    clock.now += 85  # due for a refresh
    assert hot("k") == "k#1"  # served at once; the refresh is queued
    assert close_releasing(release).dropped == 1 and runs == [1]
    assert hot("k") == "k#1"  # still due: a new refresh starts
    until(lambda: hot("k") == "k#2", timeout=5.0)
