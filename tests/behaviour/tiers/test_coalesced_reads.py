"""Concurrent async L2 reads coalesce into few MGETs; each caller still gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.asyncio


def reads_made(server: RedisProcess) -> int:
    stats = server.client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


async def test_a_hundred_concurrent_reads_are_a_few_round_trips(
    real_l2: str, redis_server: RedisProcess
) -> None:
    @tiered_cache(ttl_l1=None)
    async def lookup(key: int) -> int:
        return key * 2

    for i in range(100):  # fill L2 one by one: a burst of 100 first writes opens 50 connections at
        await lookup(i)  # once, which may outlast the 0.1 s timeout on a slow loop (3.12 here)
    redis_server.client().config_resetstat()
    assert await asyncio.gather(*(lookup(i) for i in range(100))) == [i * 2 for i in range(100)]
    assert lookup.cache_stats().l2_hits == 100
    assert reads_made(redis_server) <= 3


async def test_functions_share_a_batch_and_each_gets_its_own_values(real_l2: str) -> None:
    @tiered_cache(ttl_l1=None)
    async def double(key: int) -> int:
        return key * 2

    @tiered_cache(ttl_l1=None)
    async def square(key: int) -> int:
        return key * key

    await asyncio.gather(*(f(i) for f in (double, square) for i in range(20)))
    got = await asyncio.gather(*(f(i) for f in (double, square) for i in range(20)))
    assert got == [i * 2 for i in range(20)] + [i * i for i in range(20)]
    assert double.cache_stats().l2_hits == square.cache_stats().l2_hits == 20


async def test_a_cancelled_reader_does_not_disturb_its_batch(real_l2: str) -> None:
    @tiered_cache(ttl_l1=None)
    async def lookup(key: int) -> int:
        return key + 1

    await asyncio.gather(*(lookup(i) for i in range(10)))
    tasks = [asyncio.ensure_future(lookup(i)) for i in range(10)]
    await asyncio.sleep(0)
    tasks[5].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 5] == [i + 1 for i in range(10) if i != 5]
