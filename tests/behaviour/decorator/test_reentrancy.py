"""A call that waits for a result its own thread or task computes raises, and the key stays usable.

Also: how deep a memoized recursive function may go (frames per level on the miss path).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from tiercache import ReentrantCallError, tiered_cache

TIERS = [pytest.param({"ttl_l2": None}, id="l1"), pytest.param({"ttl_l1": None}, id="l2")]


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """Return what ``call()`` returns or raise what it raises; fail (not hang) if it blocks."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        pytest.fail(f"the call still blocks after {seconds} s (deadlocked)")
    ok, result = outcome[0]
    if not ok:
        raise result
    return result


@pytest.fixture(params=TIERS)
def tiers(request: pytest.FixtureRequest, fake_l2: Any) -> dict[str, Any]:
    return dict(request.param)


def test_same_key_recursion_raises_and_leaves_the_key_usable(tiers: dict[str, Any]) -> None:
    loop_back = [True]

    @tiered_cache(**tiers)
    def f(x: int) -> int:
        return f(x) if loop_back[0] else x * 10

    with pytest.raises(ReentrantCallError, match=r"test_reentrancy.*f: this call waits") as info:
        within(5, lambda: f(1))
    assert isinstance(info.value, RecursionError)  # what functools.lru_cache raises here
    loop_back[0] = False
    assert within(5, lambda: f(1)) == 10  # nothing left stuck: the next call runs


def test_cycle_through_two_functions_raises(tiers: dict[str, Any]) -> None:
    @tiered_cache(**tiers)
    def a(x: int) -> int:
        return b(x)

    @tiered_cache(**tiers)
    def b(x: int) -> int:
        return a(x)

    for _ in range(2):  # and again: the first failure left neither key stuck
        with pytest.raises(ReentrantCallError):
            within(5, lambda: a(1))


def test_async_recursion_and_cycles_raise(tiers: dict[str, Any]) -> None:
    loop_back = [True]

    @tiered_cache(**tiers)
    async def g(x: int) -> int:
        return await g(x) if loop_back[0] else x

    @tiered_cache(**tiers)
    async def a(x: int) -> int:
        return await b(x)

    @tiered_cache(**tiers)
    async def b(x: int) -> int:
        return await a(x)

    async def scenario() -> None:
        for call in (g, a):
            with pytest.raises(ReentrantCallError):
                await asyncio.wait_for(call(1), 5)
        loop_back[0] = False
        assert await asyncio.wait_for(g(1), 5) == 1

    asyncio.run(scenario())


def test_cycle_across_two_threads_is_broken() -> None:
    # Thread 1 leads a(1) and calls b(1); thread 2 leads b(1) and calls a(1): each waits on the
    # other. One of them (or both) raises instead; neither hangs.
    both_in = threading.Barrier(2)

    @tiered_cache(ttl_l2=None)
    def a(x: int) -> int:
        both_in.wait(5)
        return b(x)

    @tiered_cache(ttl_l2=None)
    def b(x: int) -> int:
        both_in.wait(5)
        return a(x)

    outcomes: list[BaseException | int] = []

    def run(call: Callable[[int], int]) -> None:
        try:
            outcomes.append(call(1))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert outcomes and all(isinstance(outcome, ReentrantCallError) for outcome in outcomes)


def test_followers_of_a_slow_run_are_never_taken_for_a_cycle() -> None:
    # Many threads wait on runs that other threads lead, over and over: waiting is not re-entry.
    runs: list[int] = []

    @tiered_cache(ttl_l1=0.001, ttl_l2=None)
    def slow(x: int) -> int:
        runs.append(x)
        time.sleep(0.001)
        return x

    @tiered_cache(ttl_l1=0.001, ttl_l2=None)
    def outer(x: int) -> int:
        return slow(x) + slow(x + 1)

    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for i in range(200):
                assert outer(i % 3) == 2 * (i % 3) + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and runs


def test_async_followers_are_never_taken_for_a_cycle() -> None:
    @tiered_cache(ttl_l1=0.001, ttl_l2=None)
    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    @tiered_cache(ttl_l1=0.001, ttl_l2=None)
    async def outer(x: int) -> int:
        return await slow(x) + await slow(x + 1)

    async def scenario() -> None:
        for _ in range(30):
            results = await asyncio.gather(*(outer(i % 3) for i in range(60)))
            assert results == [2 * (i % 3) + 1 for i in range(60)]

    asyncio.run(scenario())


def _frames_per_level(decorate: Callable[[Callable[[int], int]], Callable[[int], int]]) -> float:
    depths: dict[int, int] = {}

    def plain(n: int) -> int:
        depths[n] = len(traceback.extract_stack())
        return 0 if n == 0 else cached(n - 1) + 1

    cached = decorate(plain)
    cached(40)
    return (depths[0] - depths[20]) / 20


@pytest.mark.parametrize("tiers", [{"ttl_l2": None}, {"ttl_l1": None}], ids=["l1", "l1-less"])
def test_a_recursive_miss_costs_three_frames_per_level(tiers: dict[str, Any]) -> None:
    per_level = _frames_per_level(tiered_cache(**tiers))  # type: ignore[arg-type]
    assert per_level <= 3, per_level


def _frames_below() -> int:
    frame, count = sys._getframe(1), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1
    return count


def test_memoized_recursion_goes_deep() -> None:
    @tiered_cache(ttl_l2=None, max_entries=10_000)
    def depth(n: int) -> int:
        return 0 if n == 0 else depth(n - 1) + 1

    @functools.cache
    def reference(n: int) -> int:
        return 0 if n == 0 else reference(n - 1) + 1

    # Three frames per level: within the default limit of 1,000, over 300 levels (lru_cache,
    # in C, goes about 500; this went 130 at eight frames a level). The frames below this test
    # (pytest's; more under xdist) are not ours to spend.
    levels = (sys.getrecursionlimit() - _frames_below() - 25) // 3
    assert depth(levels) == levels
    assert reference(levels) == levels
