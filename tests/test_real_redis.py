"""What lands in a real Redis: key names, TTLs, the payload format, generations."""

from __future__ import annotations

import pytest

import tiercache
from tiercache import tiered_cache
from tiercache._redis_process import RedisProcess


def test_entries_are_set_with_px_ttl_l2_and_our_envelope(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(ttl_l2=120)
    def resolve_adapter(category: str, name: str) -> dict[str, str]:
        return {"category": category, "name": name}

    resolve_adapter("storage", "s3")
    client = redis_server.client()
    key = resolve_adapter.cache_key("storage", "s3")
    raw = client.get(key)
    assert raw is not None and raw.startswith(b"tc\x01")
    assert 119_000 < client.pttl(key) <= 120_000


def test_clear_writes_a_new_generation_instead_of_scanning(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache()
    def f(x: int) -> int:
        return x

    for i in range(5):
        f(i)
    client = redis_server.client()
    generation_key = f.__tiercache__.generation_key  # type: ignore[attr-defined]
    assert client.get(generation_key) is None
    client.config_resetstat()
    f.cache_clear()
    token = client.get(generation_key)
    assert token is not None and len(token) == 8
    commands = client.info("commandstats")
    assert "cmdstat_scan" not in commands and "cmdstat_keys" not in commands
    assert client.ttl(generation_key) == -1  # generations do not expire


def test_a_function_can_name_its_own_redis(redis_server: RedisProcess) -> None:
    runs = []

    @tiered_cache(ttl_l1=None, redis_url=redis_server.url)
    def f(x: int) -> int:
        runs.append(x)
        return x

    f(1)
    f(1)
    assert runs == [1]
    assert redis_server.client().exists(f.cache_key(1))


def test_unreachable_redis_degrades_to_calling_the_function(caplog: pytest.LogCaptureFixture) -> None:
    """The suite's default L2 URL has nothing listening: calls work, failures are counted."""
    runs = []

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        runs.append(x)
        return x * 2

    assert [f(1), f(1), f(2)] == [2, 2, 4]
    assert runs == [1, 1, 2]
    assert f.cache_stats().l2_errors >= 3
    assert len([r for r in caplog.records if "serving without it" in r.getMessage()]) == 1


def test_namespace_comes_from_configure_at_call_time(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache()
    def f(x: int) -> int:
        return x

    tiercache.configure(namespace="late-ns")
    f(1)
    assert f.cache_key(1).startswith("late-ns:")
    assert redis_server.client().exists(f.cache_key(1))
