"""Across processes, ``lock=`` lets one process compute a cold key while the others wait."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid

import pytest

from tests.support.workers import lock as lock_worker
from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.slow


def stampede(server: RedisProcess, lock: bool, processes: int = 4) -> tuple[int, list[str]]:
    """Return how many times the function ran, and every value the 16 callers got."""
    context = multiprocessing.get_context("spawn")
    namespace = f"lock-{uuid.uuid4().hex[:8]}"
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=lock_worker.run, args=(server.url, namespace, lock, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    values = [value for _ in workers for value in results.get(timeout=30)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    executions = int(server.client().get(f"{namespace}:executions") or 0)
    return executions, values


def test_with_lock_one_process_computes_a_cold_key(redis_server: RedisProcess) -> None:
    executions, values = stampede(redis_server, lock=True)
    assert executions == 1
    assert values == ["value-cold"] * 16


def test_without_lock_each_process_computes_once(redis_server: RedisProcess) -> None:
    """The control: single flight is per process, so four processes compute four times."""
    executions, values = stampede(redis_server, lock=False)
    assert executions == 4
    assert values == ["value-cold"] * 16


@pytest.mark.asyncio
async def test_async_lock_across_two_cold_processes(real_l2: str) -> None:
    """Two instances of one function (separate L1s and flights, as in two processes)."""
    runs = 0

    def make() -> object:
        @tiered_cache(lock=2.0, ttl_l1=None, name="lock.async")
        async def slow(key: str) -> str:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.2)
            return key.upper()

        return slow

    one, two = make(), make()
    values = await asyncio.gather(*(f("k") for f in (one, two) for _ in range(5)))  # type: ignore[operator]
    assert values == ["K"] * 10
    assert runs == 1
