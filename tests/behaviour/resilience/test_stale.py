"""Serving stale values (``stale_ttl``): at once while one refresh runs, and when everything is down."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tiercache
from tests.support.clock import Clock
from tests.support.faults import opened, until
from tests.support.servers import configured_server
from tiercache._tools.redis_process import RedisProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to kill."""
    with configured_server(tmp_path, timeout=0.1, connect_timeout=0.25) as process:
        yield process


def test_stale_value_is_served_at_once_while_one_refresh_runs(server: RedisProcess) -> None:
    versions = iter(range(1, 100))
    gate = threading.Event()
    clock = Clock()

    @tiercache.tiered_cache(ttl_l1=None, ttl_l2=60, stale_ttl=60, name="faults.price", clock=clock)
    def price(key: str) -> str:
        gate.wait(5)
        return f"{key}-v{next(versions)}"

    gate.set()
    assert price("k") == "k-v1"
    clock.now += 90  # past ttl_l2, within stale_ttl (by the function's clock: no sleeping)
    gate.clear()  # the refresh will block until we let it go
    started = time.perf_counter()
    assert [price("k") for _ in range(5)] == ["k-v1"] * 5
    assert time.perf_counter() - started < 0.5  # nobody waited for the slow refresh
    gate.set()
    until(lambda: price("k") == "k-v2", timeout=3.0)
    assert price.cache_stats().stale_served >= 5
    assert next(versions) == 3  # exactly one refresh ran


def test_stale_value_is_served_at_once_while_one_refresh_runs_async(server: RedisProcess) -> None:
    versions = iter(range(1, 100))

    async def scenario() -> None:
        gate = asyncio.Event()

        clock = Clock()

        @tiercache.tiered_cache(ttl_l1=None, ttl_l2=60, stale_ttl=60, name="faults.aprice", clock=clock)
        async def price(key: str) -> str:
            await opened(gate)
            return f"{key}-v{next(versions)}"

        gate.set()
        assert await price("k") == "k-v1"
        clock.now += 90  # past ttl_l2, within stale_ttl
        gate.clear()
        started = time.perf_counter()
        assert [await price("k") for _ in range(5)] == ["k-v1"] * 5
        assert time.perf_counter() - started < 0.5
        gate.set()
        for _ in range(300):
            if await price("k") == "k-v2":
                break
            await asyncio.sleep(0.01)
        assert await price("k") == "k-v2"
        assert price.cache_stats().stale_served >= 5

    asyncio.run(scenario())
    assert next(versions) == 3


def test_fail_safe_returns_the_last_good_value_when_everything_is_down(server: RedisProcess) -> None:
    clock = Clock()
    healthy = [True]

    @tiercache.tiered_cache(ttl_l1=10, stale_ttl=60, clock=clock, name="failsafe")
    def quote(symbol: str) -> float:
        if not healthy[0]:
            raise ConnectionError("pricing backend down")
        return 42.0

    assert quote("ACME") == 42.0
    server.kill()  # and the backend goes down with it
    healthy[0] = False
    clock.now += 11  # the L1 entry expired 1 s ago, well within stale_ttl
    assert quote("ACME") == 42.0
    assert quote.cache_stats().stale_served == 1
    clock.now += 100  # beyond stale_ttl: nothing stale to fall back on
    with pytest.raises(ConnectionError):
        quote("ACME")


def test_l1_only_function_serves_stale_and_refreshes_in_the_background() -> None:
    clock = Clock()
    versions = iter(range(1, 100))

    @tiercache.tiered_cache(ttl_l1=10, ttl_l2=None, stale_ttl=60, clock=clock)
    def config(name: str) -> str:
        return f"{name}-v{next(versions)}"

    assert config("a") == "a-v1"
    clock.now += 11
    assert config("a") == "a-v1"  # stale, served at once
    until(lambda: config("a") == "a-v2", timeout=2.0)
    assert next(versions) == 3


# -- never a value Redis knows was invalidated -----------------------------------------------------


@pytest.mark.parametrize("failure", ["slow", "raises"])
@pytest.mark.parametrize("how", ["invalidate", "clear", "tags"])
def test_a_stale_value_invalidated_in_redis_is_never_served(
    server: RedisProcess, failure: str, how: str
) -> None:
    """The invalidation was not heard here (another process that does not announce, or a channel
    lost for a moment): the stale value lives on in L1, but Redis knows it is gone."""
    tiercache.configure(timeout=2)  # (the reads must answer: a tombstone is the point)
    clock = Clock()
    db = {"k": "v1"}
    slow, healthy = threading.Event(), [True]
    name = f"stale.invalidated.{how}.{failure}"
    options: dict[str, object] = {"tags": ["t"]} if how == "tags" else {}

    def body(key: str) -> str:
        if not healthy[0]:
            if failure == "raises":
                raise ConnectionError("backend down")
            slow.wait(0.3)
        return db[key]

    reader = tiercache.tiered_cache(
        ttl_l1=10, ttl_l2=600, stale_ttl=600, timeout=0.05, clock=clock, name=name, coherent=False, **options
    )(body)
    other = tiercache.tiered_cache(name=name, coherent=False, **options)(body)  # another process
    assert reader("k") == "v1"
    db["k"] = "v2"
    healthy[0] = False
    if how == "invalidate":
        other.cache_invalidate("k")
    elif how == "clear":
        other.cache_clear()
    else:
        tiercache.invalidate_tags("t")
        reader.__tiercache__.local.set("k", "v1", 10)  # as if this process had not heard of it
    clock.now += 11  # the L1 entry is stale now: past ttl_l1, within stale_ttl
    if failure == "raises":
        with pytest.raises(ConnectionError):
            reader("k")
    else:
        assert reader("k") == "v2"  # it waited for the function, as a call without a stale value does
    assert reader.cache_stats().stale_served == 0
