"""The tiers a behaviour test runs against (L1 alone, fakeredis, the suite's redis-server), and what
the test reads of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis

import tiercache

TIERS = ["l1", "fake_l2", "real_l2"]
L2S = ["fake_l2", "real_l2"]


def client_for(request: pytest.FixtureRequest, l2: str) -> Any:
    """A sync client of the L2 the test uses (None for L1 alone)."""
    if l2 == "l1":
        return None
    if l2 == "fake_l2":
        request.getfixturevalue("fake_l2")
        return fakeredis.FakeRedis(server=request.getfixturevalue("fake_server"))
    url = request.getfixturevalue("real_l2")
    # Generous L2 timeouts: these tests are about policies, and a first read on a cold connection
    # that outlives the default 0.1 s on a busy CI machine would leave their first value unstored.
    tiercache.configure(timeout=2, connect_timeout=2)
    return redis.Redis.from_url(url)


def ttls(l2: str, seconds: Any = 3600) -> dict[str, Any]:
    """Options that keep the function in L1 alone, or in L2 alone (so L2's own answers show)."""
    return {"ttl_l1": seconds, "ttl_l2": None} if l2 == "l1" else {"ttl_l1": None, "ttl_l2": seconds}


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


async def await_until(check: Callable[[], Any], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def stored(function: Any, client: Any, *args: Any) -> bool:
    """Whether either tier holds an entry for the call (Redis: the key exists)."""
    cache = function.__tiercache__
    in_l1 = cache.has_l1 and cache.keys.l1_key(args)[0] in cache.local.data
    in_l2 = client is not None and bool(client.exists(function.cache_key(*args)))
    return in_l1 or in_l2
