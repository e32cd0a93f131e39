"""Concurrent misses on one key run the function once per process."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import pytest

from tiercache import tiered_cache

TIERS = [
    pytest.param({"ttl_l2": None}, id="l1"),
    pytest.param({"ttl_l1": None}, id="l2-only"),
    pytest.param({}, id="both"),
]


@pytest.fixture(params=["fake", "real"])
def l2(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(f"{request.param}_l2")


@pytest.mark.asyncio
@pytest.mark.parametrize("tiers", TIERS)
async def test_hundred_coroutines_on_a_cold_key_run_the_function_once(
    l2: None, tiers: dict[str, Any]
) -> None:
    runs = 0

    @tiered_cache(**tiers)
    async def get_session(session_id: str) -> dict[str, str]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return {"id": session_id}

    results = await asyncio.gather(*(get_session("abc") for _ in range(100)))
    assert runs == 1
    assert all(result == {"id": "abc"} for result in results)
    stats = get_session.cache_stats()
    assert stats.calls == 100 and stats.misses == 1 and stats.coalesced == 99


@pytest.mark.parametrize("tiers", TIERS)
def test_sixteen_threads_on_a_cold_key_run_the_function_once(l2: None, tiers: dict[str, Any]) -> None:
    runs = 0
    start = threading.Barrier(16)

    @tiered_cache(**tiers)
    def resolve_adapter(category: str, name: str) -> dict[str, str]:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        return {"adapter": f"{category}/{name}"}

    results: list[Any] = []

    def worker() -> None:
        start.wait()
        results.append(resolve_adapter("storage", "s3"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs == 1
    assert results == [{"adapter": "storage/s3"}] * 16


@pytest.mark.asyncio
async def test_an_exception_reaches_every_waiter_and_is_not_cached() -> None:
    runs = 0

    @tiered_cache(ttl_l2=None)
    async def flaky(key: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        if runs == 1:
            raise ConnectionError("backend down")
        return "ok"

    results = await asyncio.gather(*(flaky("k") for _ in range(20)), return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await flaky("k") == "ok"
    assert runs == 2
    assert flaky.cache_stats().errors == 20


def test_an_exception_reaches_every_thread_and_is_not_cached() -> None:
    runs = 0
    start = threading.Barrier(8)

    @tiered_cache(ttl_l2=None)
    def flaky(key: str) -> str:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        raise ConnectionError("backend down")

    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            flaky("k")
        except ConnectionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs == 1 and len(errors) == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("cancel", ["leader", "follower"])
async def test_cancelling_one_waiter_does_not_cancel_the_computation(cancel: str) -> None:
    runs = 0
    release = asyncio.Event()

    @tiered_cache(ttl_l2=None)
    async def slow(key: str) -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "done"

    leader = asyncio.ensure_future(slow("k"))
    await asyncio.sleep(0.01)
    followers = [asyncio.ensure_future(slow("k")) for _ in range(5)]
    await asyncio.sleep(0.01)
    victim = leader if cancel == "leader" else followers[0]
    victim.cancel()
    await asyncio.sleep(0.01)
    release.set()
    survivors = [t for t in [leader, *followers] if t is not victim]
    assert await asyncio.gather(*survivors) == ["done"] * 5
    assert victim.cancelled()
    assert runs == 1
    assert await slow("k") == "done" and runs == 1  # the result was cached too


@pytest.mark.asyncio
async def test_distinct_keys_do_not_wait_for_each_other() -> None:
    @tiered_cache(ttl_l2=None)
    async def slow(key: str) -> str:
        await asyncio.sleep(0.1)
        return key

    started = time.perf_counter()
    assert await asyncio.gather(*(slow(str(i)) for i in range(20))) == [str(i) for i in range(20)]
    assert time.perf_counter() - started < 1.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_a_child_forked_during_a_flight_does_not_wait_for_it() -> None:
    """The parent thread leading the flight does not exist in the child."""
    release = threading.Event()

    @tiered_cache(ttl_l2=None)
    def slow(key: str) -> str:
        release.wait(5)
        return key

    leader = threading.Thread(target=slow, args=("k",))
    leader.start()
    time.sleep(0.05)  # the flight for "k" is in progress
    pid = os.fork()
    if pid == 0:  # the child: must compute "k" itself rather than wait for a ghost
        signal.alarm(5)  # a child stuck waiting dies, and the test fails instead of hanging
        release.set()
        os._exit(0 if slow("k") == "k" else 1)
    release.set()
    leader.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
