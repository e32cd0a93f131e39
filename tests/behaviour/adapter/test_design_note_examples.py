"""The design note's usage examples, as written (with tiercache's import), on real Redis.

Only where Redis is differs: the defaults' localhost:6379 is reached through
``TIERCACHE_REDIS_URL``, and the custom example's redis.example.com is a password-protected
loopback server of ours with the note's password, so no test touches a server we did not start.
"""

# The examples import what they use, as the note's do.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_url(redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TIERCACHE_REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture(scope="module")
def example_com(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """Stands in for redis.example.com: requires the note's password, serves db 1."""
    server = RedisProcess(Path(tmp_path_factory.mktemp("example")), None, "--requirepass", "secret")
    yield server.start()
    server.stop()


async def test_default_settings(redis_url: str, redis_server: RedisProcess) -> None:
    from tiercache import MultiTierCacheAdapter

    # Use defaults (optimized for production)
    cache = MultiTierCacheAdapter()
    await cache.init()

    await cache.set("probe", 1)
    assert redis_server.client().exists(cache._tiers.key("probe"))
    await cache.close()


async def test_custom_configuration(example_com: RedisProcess) -> None:
    from tiercache import MultiTierCacheAdapter, MultiTierCacheSettings

    settings = MultiTierCacheSettings(
        # L1 (Memory) Cache
        l1_enabled=True,
        l1_max_entries=2000,  # Increase L1 capacity
        l1_ttl_seconds=1200,  # 20 minutes
        # L2 (Redis) Cache
        l2_enabled=True,
        l2_host="127.0.0.1",  # the note: "redis.example.com"
        l2_port=example_com.port,  # the note: 6379
        l2_db=1,
        l2_ttl_seconds=86400,  # 24 hours
        l2_password="secret",  # noqa: S106 - the note's example password
        # Strategy
        write_through=True,
        write_back_l1_on_l2_hit=True,
        enable_metrics=True,
    )

    cache = MultiTierCacheAdapter(settings=settings)
    await cache.init()

    await cache.set("probe", {"ok": True})
    client = redis.Redis(port=example_com.port, db=1, password="secret")  # noqa: S106
    assert client.exists(cache._tiers.key("probe"))
    assert (await cache.get_metrics())["degraded"] is False
    await cache.close()


async def test_basic_usage(redis_url: str) -> None:
    from tiercache import MultiTierCacheAdapter

    config = {"bucket": "assets", "region": "eu-west-1"}

    cache = MultiTierCacheAdapter()
    await cache.init()

    # Set value (writes to both L1 and L2)
    await cache.set("adapter:storage:s3", config)

    # Get value (checks L1 first, then L2)
    config = await cache.get("adapter:storage:s3")
    assert config == {"bucket": "assets", "region": "eu-west-1"}

    # Delete from both layers
    await cache.delete("adapter:storage:s3")
    assert await cache.get("adapter:storage:s3") is None

    # Clear all cache
    await cache.clear()
    await cache.close()


async def test_metrics_tracking(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tiercache import MultiTierCacheAdapter

    cache = MultiTierCacheAdapter()
    await cache.init()
    await cache.set("k", 1)
    await cache.get("k")

    # Get performance metrics
    metrics = await cache.get_metrics()
    print(f"L1 Hit Rate: {metrics['l1_hit_rate']}")
    print(f"L2 Hit Rate: {metrics['l2_hit_rate']}")
    print(f"Combined Hit Rate: {metrics['combined_hit_rate']}")
    print(f"Avg Latency: {metrics['avg_latency_ms']}ms")

    # Reset metrics
    await cache.reset_metrics()

    assert "L1 Hit Rate: 1.0" in capsys.readouterr().out
    assert (await cache.get_metrics())["gets"] == 0
    await cache.close()


async def test_l1_invalidation(redis_url: str) -> None:
    from tiercache import MultiTierCacheAdapter

    cache = MultiTierCacheAdapter()
    await cache.init()
    await cache.set("k", "v")

    # Invalidate L1 cache (forces L2 lookups)
    # Useful when L2 data is updated externally
    cache.invalidate_l1()

    assert await cache.get("k") == "v"
    assert (await cache.get_metrics())["l2_hits"] == 1
    await cache.close()


async def test_migration_from_single_tier(redis_url: str) -> None:
    # Before (Single-Tier)
    from tiercache import MemoryCacheAdapter, MemoryCacheSettings

    cache = MemoryCacheSettings(max_entries=1000)
    assert cache.max_entries == 1000
    before = MemoryCacheAdapter(MemoryCacheSettings(max_entries=1000))

    # After (Multi-Tier)
    from tiercache import MultiTierCacheAdapter

    cache = MultiTierCacheAdapter()  # Drop-in replacement

    for adapter in (before, cache):  # the same calls work on both
        await adapter.init()
        await adapter.set("adapter:storage:s3", {"ok": 1})
        assert await adapter.get("adapter:storage:s3") == {"ok": 1}
        await adapter.close()
