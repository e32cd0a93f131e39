"""Load is not an outage: a burst waits for connections, a dropped connection is tried again, and a
flapping Redis gives a line and a summary, not a line per change. Against a real redis-server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import tiercache
from tests.support.clock import Clock
from tests.support.faults import collector_paused
from tests.support.servers import configured_server
from tiercache import MultiTierCacheAdapter, MultiTierCacheSettings, tiered_cache
from tiercache._l2 import breaker as _breaker
from tiercache._l2.breaker import CircuitBreaker
from tiercache._l2.pool import NO_CONNECTION, SyncWaitingConnectionPool, WaitingConnectionPool
from tiercache._tools.redis_process import RedisProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    # Generous timeouts: a loaded CI machine may take longer than 0.25 s to accept one of 50
    # connections opened at once, and these tests are about pools and retries, not timeouts.
    with configured_server(tmp_path, timeout=2, connect_timeout=2) as process:
        yield process


def written(server: RedisProcess, namespace: str) -> int:
    client = server.client()
    return sum(1 for key in client.scan_iter(f"{namespace}:*") if not key.endswith((b":gen", b":lock")))


def test_a_burst_of_500_coroutines_is_not_an_outage(
    server: RedisProcess, isolated_settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    @tiered_cache(ttl_l1=None, ttl_l2=600)
    async def get(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    async def burst() -> list[int]:
        return await asyncio.gather(*(get(i) for i in range(500)))

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert asyncio.run(burst()) == list(range(500))
    stats = get.cache_stats()
    assert (stats.l2_errors, stats.degraded_seconds) == (0, 0.0)
    assert written(server, isolated_settings) == 500
    assert [r.getMessage() for r in caplog.records] == []


def test_a_burst_of_20000_misses_writes_every_key_over_a_few_connections(
    server: RedisProcess, isolated_settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes coalesce into pipelines of 256, one at a time, as reads do into MGETs. Before, the
    burst opened 52 connections (one write each, pool full: with the default 0.1 s timeout, 19,897
    writes skipped and 48 timed out); with batches not yet taking turns, 24. Counted, not timed:
    on a loaded machine a loop busy with 20,000 tasks can outlast a 0.1 s timeout by itself, so
    the fixture's generous timeouts apply (benchmarks/ measures the default ones)."""

    @tiered_cache(ttl_l1=None, ttl_l2=600)
    async def get(i: int) -> int:
        return i

    client = server.client()

    async def burst() -> tuple[list[int], int]:
        await get(-1)  # a service's connections are open when a burst comes
        before = client.info("stats")["total_connections_received"]
        values = await asyncio.gather(*(get(i) for i in range(20_000)))
        return values, client.info("stats")["total_connections_received"] - before

    with caplog.at_level(logging.WARNING, logger="tiercache"), collector_paused():
        values, opened = asyncio.run(burst())
    assert values == list(range(20_000))
    assert opened <= 3  # one read batch and one write batch in flight at a time
    stats = get.cache_stats()
    assert (stats.l2_errors, stats.l2_saturated, stats.degraded_seconds) == (0, 0, 0.0)
    assert written(server, isolated_settings) == 20_001
    assert [r.getMessage() for r in caplog.records] == []


def test_a_pool_too_small_is_counted_apart_and_never_opens_the_breaker(
    server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # An application's own client, with redis-py's non-blocking pool of 1: it raises
    # MaxConnectionsError past that (reads and writes coalesce, so a pool of 2 carries this
    # burst). Each such call skips L2; the breaker stays closed.
    tiercache.configure(
        async_redis_client=lambda: redis.asyncio.Redis.from_pool(
            redis.asyncio.ConnectionPool(port=server.port, max_connections=1)
        )
    )

    @tiered_cache(ttl_l1=None, ttl_l2=600)
    async def get(i: int) -> int:
        return i

    async def burst() -> list[int]:
        return await asyncio.gather(*(get(i) for i in range(200)))

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert asyncio.run(burst()) == list(range(200))
    stats = get.cache_stats()
    assert stats.l2_saturated > 0 and stats.l2_errors == 0 and not stats.degraded
    assert stats.degraded_seconds == 0.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "stayed busy" in lines[0] and "max_connections" in lines[0]


def test_max_connections_is_checked() -> None:
    with pytest.raises(ValueError, match=r"configure\(\): max_connections"):
        tiercache.configure(max_connections=0)
    with pytest.raises(TypeError, match=r"configure\(\): max_connections"):
        tiercache.configure(max_connections="many")


def _kill_clients(server: RedisProcess) -> int:
    killer = redis.Redis(port=server.port)
    me = killer.client_id()
    killed = 0
    for client in killer.client_list():
        if int(client["id"]) != me and client.get("flags", "") != "P":  # not the channel (own line)
            killed += killer.client_kill_filter(_id=client["id"])
    killer.close()
    return killed


def test_one_connection_kill_under_async_load_is_one_event(
    server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    @tiered_cache(ttl_l1=None, ttl_l2=600, coherent=False)
    async def load(i: int) -> int:
        return i

    async def hammer(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            results = await asyncio.gather(*(load(j % 300) for j in range(n, n + 50)))
            assert results == [j % 300 for j in range(n, n + 50)]
            n += 50

    async def scenario() -> int:
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(hammer(stop)) for _ in range(4)]
        await asyncio.sleep(0.3)
        killed = await asyncio.to_thread(_kill_clients, server)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        return killed

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        killed = asyncio.run(scenario())
    assert killed > 1  # the pool's connections, all at once
    stats = load.cache_stats()
    endpoint = load.__tiercache__.endpoint()
    # Each command on a killed connection was tried once more, on a fresh one: no failure at all,
    # so nothing the breaker counts (it opens on failures, each one an l2_error), and no log line.
    assert stats.l2_errors == 0 and endpoint.breaker.allow()
    assert [r.getMessage() for r in caplog.records] == []


def test_a_flapping_endpoint_logs_a_line_and_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(100.0)
    breaker = CircuitBreaker("redis://flapping", clock=clock)  # no probe: half-open by calls
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        for _ in range(200):  # 200 outages within one second
            breaker.failure(ConnectionError("gone"))
            clock.now += 0.002
            breaker.success()
            clock.now += 0.003
        breaker.stop()  # says what was held back at once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "is unavailable" in lines[0] and "is back" in lines[1]
    assert "398 more time(s)" in lines[2] and "in use now" in lines[2]


def test_held_back_changes_are_summed_up_when_the_quiet_period_ends(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_breaker, "LOG_EVERY", 0.2)
    breaker = CircuitBreaker("redis://flapping")
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        for _ in range(3):
            breaker.failure(ConnectionError("gone"))
            breaker.success()
        deadline = time.monotonic() + 5
        while len(caplog.records) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and "4 more time(s)" in lines[2], lines


def test_the_threads_pool_waits_too(server: RedisProcess, isolated_settings: str) -> None:
    tiercache.configure(max_connections=4)

    @tiered_cache(ttl_l1=None, ttl_l2=600)
    def get(i: int) -> int:
        time.sleep(0.001)
        return i

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda k=k: results.extend(get(i) for i in range(k, 400, 32)))
        for k in range(32)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == list(range(400))
    stats = get.cache_stats()
    assert (stats.l2_errors, stats.l2_saturated) == (0, 0)
    assert written(server, isolated_settings) == 400


def test_the_adapter_takes_its_pool_size_and_waits_too(server: RedisProcess) -> None:
    with pytest.raises(ValueError, match="l2_max_connections"):
        MultiTierCacheSettings(l2_max_connections=0)
    settings = MultiTierCacheSettings(
        l2_url=server.url, l1_enabled=False, l2_max_connections=2, l2_timeout=2, l2_connect_timeout=2
    )

    async def burst() -> dict[str, Any]:
        cache = MultiTierCacheAdapter(settings)
        await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(100)))
        assert await asyncio.gather(*(cache.get(f"k{i}") for i in range(100))) == list(range(100))
        return await cache.get_metrics()

    metrics = asyncio.run(burst())
    assert (metrics["l2_errors"], metrics["l2_saturated"], metrics["degraded"]) == (0, 0, False)


def test_the_waiting_pool_serves_callers_in_turn_and_gives_up_in_time(server: RedisProcess) -> None:
    async def scenario() -> None:
        pool = WaitingConnectionPool.from_url(server.url, max_connections=2, wait=0.3)
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            # 50 commands through 2 connections: all done, none refused.
            assert await asyncio.gather(*(client.ping() for _ in range(50))) == [True] * 50
            # Both connections held: a third caller waits its 0.3 s, then gives up.
            held = [await pool.get_connection(), await pool.get_connection()]
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError, match=NO_CONNECTION):
                await pool.get_connection()
            assert 0.25 < time.monotonic() - started < 2
            # A waiter cancelled while it waits leaves no trace; the next one gets a release.
            cancelled = asyncio.ensure_future(pool.get_connection())
            await asyncio.sleep(0.05)
            cancelled.cancel()
            waiter = asyncio.ensure_future(pool.get_connection())
            await asyncio.sleep(0.05)
            await pool.release(held.pop())
            got = await asyncio.wait_for(waiter, 1)
            await pool.release(got)
            await pool.release(held.pop())
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_the_sync_waiting_pool_serves_every_thread_and_gives_up_in_time(server: RedisProcess) -> None:
    """Threads beyond max_connections wait for a release (none refused, none lost); then time out."""
    pool = SyncWaitingConnectionPool.from_url(server.url, max_connections=2, wait=5)
    client = redis.Redis.from_pool(pool)
    try:
        for _ in range(5):  # a bounded stress loop: a lost wake-up would stall a round for 5 s
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(32) as executor:
                answers = list(executor.map(lambda i: client.echo(str(i)), range(400)))
            assert answers == [str(i).encode() for i in range(400)]
            assert time.monotonic() - started < 4
        assert len(pool._get_in_use_connections()) == 0
        impatient = SyncWaitingConnectionPool.from_url(server.url, max_connections=1, wait=0.3)
        held = impatient.get_connection()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match=NO_CONNECTION):
            impatient.get_connection()
        assert 0.25 < time.monotonic() - started < 2
        # A waiter gets the connection the moment it is released.
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(impatient.get_connection()))
        waiter.start()
        time.sleep(0.05)
        impatient.release(held)
        waiter.join(1)
        assert got and got[0] is held
        impatient.release(got[0])
        impatient.disconnect()
    finally:
        client.close()


def test_a_release_between_a_failed_attempt_and_the_wait_is_not_lost(server: RedisProcess) -> None:
    """The race a condition variable invites: the release lands just before the caller waits."""

    class ReleaseWhenFull(redis.ConnectionPool):
        on_full: Any = None

        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().get_connection()
            except redis.exceptions.MaxConnectionsError:
                hook, self.on_full = self.on_full, None
                if hook is not None:
                    hook()  # the holder gives its connection back, in the window
                raise

    class Racy(SyncWaitingConnectionPool, ReleaseWhenFull):
        pass

    pool = Racy.from_url(server.url, max_connections=1, wait=5)
    held = pool.get_connection()
    pool.on_full = lambda: pool.release(held)
    started = time.monotonic()
    assert pool.get_connection() is held
    assert time.monotonic() - started < 1  # not the 5 s wait of a lost wake-up
    pool.disconnect()
