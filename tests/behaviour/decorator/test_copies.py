"""``copy=``: every caller gets an object of its own; without it, callers share L1's (documented)."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest

from tiercache import tiered_cache

TIERS = [
    pytest.param({"ttl_l2": None}, id="l1"),
    pytest.param({}, id="l1+l2"),
]


@pytest.fixture(params=TIERS)
def tiers(request: pytest.FixtureRequest, fake_l2: Any) -> dict[str, Any]:
    return dict(request.param)


def test_without_copy_callers_share_the_object_l1_holds(tiers: dict[str, Any]) -> None:
    @tiered_cache(**tiers)
    def profile(user: str) -> dict[str, Any]:
        return {"user": user, "roles": ["reader"]}

    profile("u")["roles"].append("admin")  # the caller's change...
    assert profile("u")["roles"] == ["reader", "admin"]  # ...is what the next caller gets


@pytest.mark.parametrize("option", [True, copy.deepcopy], ids=["True", "deepcopy"])
def test_with_copy_no_caller_can_change_what_the_next_one_gets(tiers: dict[str, Any], option: Any) -> None:
    @tiered_cache(copy=option, **tiers)
    def profile(user: str) -> dict[str, Any]:
        return {"user": user, "roles": ["reader"]}

    for _ in range(3000):  # the miss, then hits: fast path, sampled calls, warm-up and after
        got = profile("u")
        assert got == {"user": "u", "roles": ["reader"]}
        got["roles"].append("admin")
    assert profile.cache_parameters()["copy"] is (copy.deepcopy if option is True else option)


def test_the_first_caller_cannot_change_what_was_stored(tiers: dict[str, Any]) -> None:
    @tiered_cache(copy=True, **tiers)
    def profile(user: str) -> dict[str, Any]:
        return {"roles": ["reader"]}

    first = profile("u")
    first["roles"].clear()
    assert profile("u") == {"roles": ["reader"]}


def test_followers_of_one_run_each_get_their_own_copy() -> None:
    gate = threading.Event()

    @tiered_cache(copy=True, ttl_l2=None)
    def slow(key: str) -> list[int]:
        gate.wait(5)
        return [1]

    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(slow("k"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and len({id(result) for result in results}) == 8
    assert slow.cache_stats().misses == 1


def test_async_functions_copy_too(tiers: dict[str, Any]) -> None:
    @tiered_cache(copy=True, **tiers)
    async def profile(user: str) -> dict[str, list[str]]:
        return {"roles": ["reader"]}

    async def scenario() -> None:
        values = await asyncio.gather(*(profile("u") for _ in range(5)))
        assert len({id(value) for value in values}) == 5
        for _ in range(300):
            (await profile("u"))["roles"].append("x")
        assert await profile("u") == {"roles": ["reader"]}

    asyncio.run(scenario())


def test_a_custom_copier_is_used_and_bad_ones_refused(tiers: dict[str, Any]) -> None:
    @tiered_cache(copy=tuple, **tiers)
    def items(key: str) -> list[int]:
        return [1, 2]

    assert items("k") == (1, 2) and items("k") == (1, 2)
    with pytest.raises(TypeError, match=r"tiered_cache\(\): copy must be a bool or a function"):
        tiered_cache(copy="deep")
