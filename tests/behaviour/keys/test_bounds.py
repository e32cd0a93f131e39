"""Bounds on what a caller's arguments and values can cost: key size, and L1 bytes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache
from tiercache import UnkeyableArgumentError, tiered_cache
from tiercache._decorator.keys import DEFAULT_MAX_KEY_BYTES
from tiercache._l1.lru import LocalCache


def test_a_huge_argument_is_refused_after_bounded_work() -> None:
    """A 1M-key dict took 1.3 s to key on every call; now it is refused in milliseconds."""

    @tiered_cache(ttl_l2=None)
    def lookup(filters: dict[int, int]) -> int:
        return len(filters)

    huge = {i: i for i in range(1_000_000)}
    started = time.perf_counter()
    with pytest.raises(UnkeyableArgumentError, match=r"argument 'filters'.*max_key_bytes \(65,536 bytes\)"):
        lookup(huge)
    assert time.perf_counter() - started < 0.5
    assert lookup({1: 1}) == 1  # an ordinary argument is fine


@pytest.mark.parametrize("argument", ["x" * (DEFAULT_MAX_KEY_BYTES + 1), b"x" * (DEFAULT_MAX_KEY_BYTES + 1)])
def test_a_huge_plain_argument_is_refused_on_the_fast_path_too(argument: Any) -> None:
    """str and bytes keys are used as they are, never encoded: their size is checked all the same."""

    @tiered_cache(ttl_l2=None)
    def lookup(text: Any) -> int:
        return len(text)

    for _ in range(2):
        with pytest.raises(UnkeyableArgumentError, match="argument 'text'"):
            lookup(argument)
    assert lookup.cache_info().currsize == 0


def test_the_async_twin_refuses_it_too() -> None:
    @tiered_cache(ttl_l2=None)
    async def lookup(items: list[str]) -> int:
        return len(items)

    with pytest.raises(UnkeyableArgumentError):
        asyncio.run(lookup(["x" * 1000] * 100))


def test_the_key_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    @tiered_cache(ttl_l2=None)
    def lookup(items: list[int]) -> int:
        return len(items)

    with pytest.raises(UnkeyableArgumentError):
        lookup(list(range(20_000)))
    tiercache.configure(max_key_bytes=1 << 20)
    assert lookup(list(range(20_000))) == 20_000
    with pytest.raises(ValueError, match="max_key_bytes"):
        tiercache.configure(max_key_bytes=0)
    monkeypatch.setenv("TIERCACHE_MAX_KEY_BYTES", "100")
    assert tiercache.Settings.from_environment({"TIERCACHE_MAX_KEY_BYTES": "100"}).max_key_bytes == 100


# -- L1 by bytes --------------------------------------------------------------------------------


def test_max_bytes_bounds_l1_least_recently_used_first() -> None:
    megabyte = 1 << 20

    @tiered_cache(ttl_l2=None, max_bytes=8 * megabyte)
    def blob(n: int) -> bytes:
        return bytes([n % 256]) * megabyte

    for n in range(50):
        blob(n)
    cache = blob.__tiercache__
    assert cache.local.bytes <= 8 * megabyte
    assert 5 <= len(cache.local) <= 7
    assert list(cache.local.data)[-1] == 49  # the newest stays
    assert blob.cache_parameters()["max_bytes"] == 8 * megabyte


def test_a_value_larger_than_max_bytes_is_not_kept() -> None:
    runs: list[int] = []

    @tiered_cache(ttl_l2=None, max_bytes=1000)
    def blob(n: int) -> bytes:
        runs.append(n)
        return b"x" * (2000 if n else 10)

    blob(1)
    blob(1)
    blob(0)
    blob(0)
    assert runs == [1, 1, 0]


class Opaque:
    """A type L2 cannot hold, so L1 cannot size it by its encoding."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


def test_max_bytes_bounds_values_l2_cannot_hold_too() -> None:
    """They were weighed by sys.getsizeof of the outer object: 300 lists holding 1 MiB each
    were kept under max_bytes=1 MiB (+301 MB)."""
    megabyte = 1 << 20

    @tiered_cache(ttl_l2=None, max_bytes=4 * megabyte)
    def heavy(n: int) -> list[Any]:
        return [bytes([n % 256]) * megabyte, Opaque(b"x" * 1000)]

    @tiered_cache(ttl_l2=None, max_bytes=4 * megabyte)
    def nested(n: int) -> Opaque:
        return Opaque(b"y" * megabyte)

    for n in range(30):
        heavy(n), nested(n)
    for function in (heavy, nested):
        cache = function.__tiercache__
        assert cache.local.bytes <= 4 * megabyte and 2 <= len(cache.local) <= 4


def test_max_bytes_is_checked() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        tiered_cache(max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes"):
        tiered_cache(max_bytes="1 MB")


operations = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "get"]), st.integers(0, 9), st.integers(0, 400)), max_size=60
)


@given(operations)
@settings(max_examples=200, deadline=None)
def test_the_byte_count_is_exact_and_bounded(ops: list[tuple[str, int, int]]) -> None:
    """Whatever the sequence, the count equals the sizes held and never passes the bound."""
    cache = LocalCache(5, 60.0, max_bytes=1000, sizer=lambda key, value: len(value))
    for op, key, size in ops:
        if op == "set":
            cache.set(key, "x" * size)
        elif op == "delete":
            cache.delete(key)
        else:
            cache.get(key)
        assert cache.bytes == sum(entry[2] for entry in cache.data.values()) <= 1000
        assert len(cache) <= 5


@pytest.mark.parametrize("l2", [False, True], ids=["l1-only", "with-l2"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_refused_argument_counts_as_an_error_not_a_hit(l2: bool, is_async: bool, real_l2: str) -> None:
    """Before, a refused str counted an L1 hit (the fast path's tick) and a refused lock nothing."""
    too_long = "x" * (DEFAULT_MAX_KEY_BYTES + 1)  # the fast path: a plain str
    refused = [too_long, threading.Lock(), {i: i for i in range(DEFAULT_MAX_KEY_BYTES)}]

    def compute(key: Any) -> int:
        return 1

    async def acompute(key: Any) -> int:
        return 1

    lookup: Any = tiered_cache(ttl_l1=60, ttl_l2=600 if l2 else None)(acompute if is_async else compute)

    def call(key: Any) -> Any:
        return asyncio.run(lookup(key)) if is_async else lookup(key)

    call("k"), call("k")
    for key in refused:
        with pytest.raises(UnkeyableArgumentError):
            call(key)
    stats = lookup.cache_stats()
    assert (stats.calls, stats.l1_hits, stats.misses, stats.errors) == (5, 1, 4, 3)
    assert lookup.cache_info().hits == 1
