"""The adapters: every setting, batch calls, degradation; the async one and its sync twin alike."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import logging
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.clock import Clock
from tests.support.round_trips import count_sends
from tiercache import (
    MemoryCache,
    MemoryCacheAdapter,
    MemoryCacheSettings,
    MultiTierCache,
    MultiTierCacheAdapter,
    MultiTierCacheSettings,
)
from tiercache._tools.redis_process import RedisProcess, free_port

pytestmark = pytest.mark.asyncio


class Either:
    """An async or sync adapter behind one awaitable interface."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.cache, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@pytest.fixture(params=["async", "sync"])
def make(request: pytest.FixtureRequest, redis_server: RedisProcess) -> Iterator[Any]:
    """Build an adapter of the parametrized kind on the session's real Redis, in a fresh namespace."""
    kind = MultiTierCacheAdapter if request.param == "async" else MultiTierCache
    made: list[Either] = []

    def build(clock: Clock | None = None, **fields: Any) -> Either:
        fields = {"l2_url": redis_server.url, "namespace": f"adapter-{uuid.uuid4().hex[:8]}", **fields}
        adapter = Either(kind(MultiTierCacheSettings(**fields), clock=clock))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:  # stop probers and sync connections; async ones close with the loop
        endpoint = adapter.cache._tiers.endpoint()
        if endpoint is not None:
            endpoint.close()


async def test_set_get_delete_clear(make: Any) -> None:
    cache = make()
    await cache.set("adapter:storage:s3", {"bucket": "b", "regions": ("eu", "us")})
    assert await cache.get("adapter:storage:s3") == {"bucket": "b", "regions": ("eu", "us")}
    assert await cache.get("missing") is None
    await cache.delete("adapter:storage:s3")
    assert await cache.get("adapter:storage:s3") is None
    await cache.set("a", 1)
    await cache.set("b", 2)
    await cache.clear()
    assert await cache.get_many(["a", "b"]) == {}


async def test_l2_is_shared_and_l2_hits_fill_l1(make: Any) -> None:
    # Coherent adapters would also hear of the set, maybe after the read: a third L2 read.
    writer = make(coherent=False)
    reader = make(namespace=writer.cache.settings.namespace, coherent=False)
    await writer.set("k", "v")
    assert await reader.get("k") == "v"  # from L2
    assert await reader.get("k") == "v"  # from L1 now
    metrics = await reader.get_metrics()
    assert (metrics["l2_hits"], metrics["l1_hits"], metrics["l1_size"]) == (1, 1, 1)


async def test_write_back_off_leaves_l1_alone_on_l2_hits(make: Any) -> None:
    writer = make()
    reader = make(namespace=writer.cache.settings.namespace, write_back_l1_on_l2_hit=False)
    await writer.set("k", "v")
    assert await reader.get("k") == "v"
    assert await reader.get("k") == "v"
    metrics = await reader.get_metrics()
    assert (metrics["l2_hits"], metrics["l1_hits"], metrics["l1_size"]) == (2, 0, 0)


async def test_write_through_off_writes_l2_and_lets_reads_fill_l1(
    make: Any, redis_server: RedisProcess
) -> None:
    cache = make(write_through=False)
    await cache.set("k", "v")
    assert (await cache.get_metrics())["l1_size"] == 0
    assert redis_server.client().exists(cache.cache._tiers.key("k"))
    assert await cache.get("k") == "v"  # an L2 hit, filling L1
    assert (await cache.get_metrics())["l1_size"] == 1


async def test_write_through_off_still_keeps_values_in_l1_when_l2_is_down(make: Any) -> None:
    cache = make(write_through=False, l2_url=f"redis://127.0.0.1:{free_port()}/0")
    await cache.set("k", "v")
    assert await cache.get("k") == "v"


async def test_l1_disabled_sends_every_get_to_l2(make: Any) -> None:
    cache = make(l1_enabled=False)
    await cache.set("k", "v")
    assert [await cache.get("k") for _ in range(3)] == ["v"] * 3
    metrics = await cache.get_metrics()
    assert (metrics["l2_hits"], metrics["l1_hits"], metrics["l1_size"]) == (3, 0, 0)


async def test_l2_disabled_is_l1_only(make: Any, redis_server: RedisProcess) -> None:
    cache = make(l2_enabled=False)
    await cache.set("k", "v")
    assert await cache.get("k") == "v"
    assert not redis_server.client().exists(cache.cache._tiers.key("k"))
    assert (await cache.get_metrics())["degraded"] is False


async def test_l1_bound_and_ttl(make: Any) -> None:
    clock = Clock()
    cache = make(clock, l1_max_entries=2, l1_ttl_seconds=10, l2_enabled=False)
    for key in ("a", "b", "c"):
        await cache.set(key, key)
    assert await cache.get_many(["a", "b", "c"]) == {"b": "b", "c": "c"}  # a was evicted
    clock.now += 10.1
    assert await cache.get("b") is None


async def test_l2_ttl_and_per_call_ttl(make: Any, redis_server: RedisProcess) -> None:
    cache = make(l2_ttl_seconds=120)
    await cache.set("default", 1)
    await cache.set("short", 1, ttl=5)
    await cache.set("timedelta", 1, ttl=dt.timedelta(seconds=7))  # as cashews takes it
    client = redis_server.client()
    assert 119_000 < client.pttl(cache.cache._tiers.key("default")) <= 120_000
    assert 4_000 < client.pttl(cache.cache._tiers.key("short")) <= 5_000
    assert 6_000 < client.pttl(cache.cache._tiers.key("timedelta")) <= 7_000
    assert MultiTierCacheSettings(l2_ttl_seconds=dt.timedelta(minutes=2)).l2_ttl_seconds == 120.0


async def test_metrics_follow_the_decorators_definitions(make: Any) -> None:
    cache = make()
    await cache.set("k", 1)
    await cache.get("k")  # L1 hit
    await cache.get("nope")  # L1 miss, L2 miss
    metrics = await cache.get_metrics()
    expected = {"gets": 2, "sets": 1, "l1_hits": 1, "l2_hits": 0, "misses": 1, "l2_lookups": 1}
    assert {k: metrics[k] for k in expected} == expected
    assert (
        metrics["l1_hit_rate"] == 0.5
        and metrics["l2_hit_rate"] == 0.0
        and metrics["combined_hit_rate"] == 0.5
    )
    assert metrics["avg_latency_ms"] > 0 and metrics["p99_latency_ms"] >= metrics["p50_latency_ms"] > 0
    assert metrics["l1_size"] == 1 and metrics["l2_errors"] == 0 and metrics["degraded"] is False
    await cache.reset_metrics()
    assert (await cache.get_metrics())["gets"] == 0


async def test_metrics_off_counts_nothing(make: Any) -> None:
    cache = make(enable_metrics=False)
    await cache.set("k", 1)
    await cache.get("k")
    metrics = await cache.get_metrics()
    assert metrics["gets"] == 0 and metrics["l1_hits"] == 0 and metrics["l1_size"] == 1


async def test_invalidate_l1_sends_the_next_gets_to_l2(make: Any) -> None:
    cache = make()
    await cache.set("k", "v")
    cache.cache.invalidate_l1()
    assert await cache.get("k") == "v"
    assert (await cache.get_metrics())["l2_hits"] == 1


async def test_clear_touches_only_this_namespace(make: Any) -> None:
    mine, theirs = make(), make()
    await mine.set("k", 1)
    await theirs.set("k", 2)
    await mine.clear()
    assert await mine.get("k") is None
    assert await theirs.get("k") == 2


async def test_get_many_is_one_mget_and_set_many_one_round_trip(
    make: Any, redis_server: RedisProcess
) -> None:
    cache = make(l1_enabled=False)
    client = redis_server.client()
    await cache.get("warm")  # learn the generation first
    client.config_resetstat()
    await cache.set_many({f"k{i}": i for i in range(50)})
    assert await cache.get_many([f"k{i}" for i in range(60)]) == {f"k{i}": i for i in range(50)}
    stats = client.info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 50
    assert stats["cmdstat_mget"]["calls"] == 1
    # The generation, read in the set's pipeline once its writes have landed (a clear made just
    # before in another process would otherwise make them misses).
    assert stats["cmdstat_get"]["calls"] == 1


async def test_a_set_or_a_delete_is_one_round_trip_even_long_after_the_generation_was_read(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SETs, the generation's GET and the announcement go out together: one send, one wait.

    Before, a set sent PUBLISH after the pipeline, and read the generation first once the one
    it knew was half a second old: three round trips where Django's RedisCache takes one.
    """
    sends = count_sends(monkeypatch)
    cache = make()
    await cache.set("first", 1)  # (the generation, learned once)
    await asyncio.sleep(0.6)  # past the time reads trust a generation for
    for write in (
        lambda: cache.set("k", 2),
        lambda: cache.set_many({"a": 1, "b": 2, "gone": 3}),
        lambda: cache.delete("gone"),  # (DEL and its announcement, in one pipeline)
    ):
        sends.clear()
        await write()
        assert len(sends) == 1
    assert await cache.get_many(["k", "a", "b", "gone"]) == {"k": 2, "a": 1, "b": 2}


async def test_values_of_every_supported_type_round_trip(make: Any) -> None:
    writer = make()
    reader = make(namespace=writer.cache.settings.namespace)
    value = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5),
        "amount": Decimal("9.99"),
        "tags": {"a"},
        "t": (1, (2,)),
    }
    await writer.set("k", value)
    assert await reader.get("k") == value


async def test_an_unencodable_value_stays_in_l1(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    cache = make()
    opaque = object()
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        await cache.set("k", opaque)
    assert await cache.get("k") is opaque
    assert (await cache.get_metrics())["unencodable"] == 1


async def test_redis_down_at_init_keeps_working_and_recovers(make: Any, tmp_path: Path) -> None:
    server = RedisProcess(tmp_path, free_port())
    cache = make(l2_url=server.url, l1_enabled=False)
    await cache.init()  # nothing listens: logged, not raised
    await cache.set("k", "v")
    assert (await cache.get_metrics())["degraded"] is True
    server.start()
    try:
        for _ in range(300):
            await cache.set("k", "v")
            if await cache.get("k") == "v":
                break
            time.sleep(0.01)
        assert await cache.get("k") == "v"
        assert (await cache.get_metrics())["degraded"] is False
    finally:
        server.stop()


async def test_l2_address_from_host_port_db_and_password(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path, None, "--requirepass", "secret").start()
    try:
        settings = MultiTierCacheSettings(
            l2_host="127.0.0.1",
            l2_port=server.port,
            l2_db=3,
            l2_password="secret",  # noqa: S106 - the test server's
        )
        cache = MultiTierCache(settings)
        cache.set("k", "v")
        client = redis.Redis(port=server.port, db=3, password="secret")  # noqa: S106 - the test server's
        assert client.exists(cache._tiers.key("k"))
        assert "secret" not in repr(settings) and "secret" not in repr(cache)
    finally:
        server.stop()


async def test_l2_url_takes_precedence_over_host_and_port(redis_server: RedisProcess) -> None:
    settings = MultiTierCacheSettings(l2_host="10.255.255.1", l2_port=1, l2_url=redis_server.url)
    assert settings.redis_url() == redis_server.url


async def test_bad_arguments_name_the_method() -> None:
    cache = MemoryCache()
    with pytest.raises(TypeError, match=r"MemoryCache.get\(\): key must be a str, not int"):
        cache.get(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MemoryCache.set\(\): ttl must be a number of seconds .*> 0"):
        cache.set("k", 1, ttl=-1)
    with pytest.raises(TypeError, match=r"get_many\(\): keys must be an iterable of str, not one str"):
        cache.get_many("abc")
    with pytest.raises(TypeError, match=r"set_many\(\): expected a mapping"):
        cache.set_many([("k", 1)])  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"MultiTierCacheAdapter\(\): settings must be a MultiTierCacheSettings"
    ):
        MultiTierCacheAdapter(MemoryCacheSettings())  # type: ignore[arg-type]


async def test_memory_adapters_have_the_same_interface_and_no_redis() -> None:
    for kind in (MemoryCacheAdapter, MemoryCache):
        cache = Either(kind(MemoryCacheSettings(max_entries=10, ttl_seconds=60)))
        await cache.init()
        await cache.set("k", {"v": 1})
        assert await cache.get("k") == {"v": 1}
        assert await cache.get_many(["k", "x"]) == {"k": {"v": 1}}
        await cache.delete("k")
        assert await cache.get("k") is None
        metrics = await cache.get_metrics()
        assert metrics["l1_max_entries"] == 10 and metrics["degraded"] is False
        await cache.close()
    public = {name for name in dir(MultiTierCacheAdapter) if not name.startswith("_")}
    assert public <= {name for name in dir(MemoryCacheAdapter) if not name.startswith("_")}
    # The one name the sync twin lacks: aclose(), close() under the name async code looks for.
    assert public - {"aclose"} == {name for name in dir(MultiTierCache) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        (
            {"l1_ttl_seconds": -1},
            ValueError,
            r"MultiTierCacheSettings: l1_ttl_seconds must be a finite number",
        ),
        ({"l2_ttl_seconds": 0}, ValueError, r"l2_ttl_seconds must be a finite number > 0"),
        ({"l1_max_entries": 0}, ValueError, r"l1_max_entries must be between 1 and"),
        ({"l2_port": 70000}, ValueError, r"l2_port must be between 1 and 65535, not 70000"),
        ({"l2_db": -1}, ValueError, r"l2_db must be between 0"),
        ({"l1_enabled": "yes"}, TypeError, r"l1_enabled must be a bool, not str"),
        ({"l2_host": ""}, TypeError, r"l2_host must be a non-empty str"),
        ({"l2_url": "http://x"}, ValueError, r"MultiTierCacheSettings: l2_url 'http://x' must start with"),
        ({"namespace": "a b"}, ValueError, r"namespace"),
        ({"l2_timeout": 0}, ValueError, r"l2_timeout"),
        ({"l1_max_entrys": 5}, TypeError, r"unexpected keyword argument 'l1_max_entrys'"),
    ],
)
async def test_invalid_settings_raise_at_construction(
    fields: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        MultiTierCacheSettings(**fields)


async def test_settings_from_environment_variables() -> None:
    settings = MultiTierCacheSettings.from_env(
        {
            "TIERCACHE_L1_MAX_ENTRIES": "2000",
            "TIERCACHE_L1_TTL_SECONDS": "1200",
            "TIERCACHE_L2_HOST": "redis.internal",
            "TIERCACHE_L2_DB": "1",
            "TIERCACHE_WRITE_THROUGH": "false",
            "TIERCACHE_L2_TIMEOUT": "0.05",
        }
    )
    assert (settings.l1_max_entries, settings.l1_ttl_seconds, settings.l2_host, settings.l2_db) == (
        2000,
        1200.0,
        "redis.internal",
        1,
    )
    assert settings.write_through is False and settings.l2_timeout == 0.05
    assert MultiTierCacheSettings.from_env({"TIERCACHE_REDIS_URL": "redis://r:1/2"}).l2_url == "redis://r:1/2"
    assert MultiTierCacheSettings.from_env({}, l1_max_entries=5).l1_max_entries == 5
    with pytest.raises(ValueError, match=r"TIERCACHE_L2_PORT='abc' is not a number"):
        MultiTierCacheSettings.from_env({"TIERCACHE_L2_PORT": "abc"})
    with pytest.raises(ValueError, match=r"TIERCACHE_L2_PORT='63.5' is not a whole number"):
        MultiTierCacheSettings.from_env({"TIERCACHE_L2_PORT": "63.5"})
    assert MultiTierCacheSettings.from_env({"TIERCACHE_L2_DB": "3.0"}).l2_db == 3
    with pytest.raises(ValueError, match=r"TIERCACHE_L1_ENABLED='maybe'"):
        MultiTierCacheSettings.from_env({"TIERCACHE_L1_ENABLED": "maybe"})


async def test_defaults_are_the_design_notes() -> None:
    settings = MultiTierCacheSettings()
    assert (settings.l1_enabled, settings.l1_max_entries, settings.l1_ttl_seconds) == (True, 1000, 600)
    assert (settings.l2_enabled, settings.l2_host, settings.l2_port, settings.l2_db) == (
        True,
        "localhost",
        6379,
        0,
    )
    assert (settings.l2_ttl_seconds, settings.l2_password) == (86400, None)
    assert (settings.write_through, settings.write_back_l1_on_l2_hit, settings.enable_metrics) == (
        True,
        True,
        True,
    )


async def test_a_value_only_l1_can_hold_takes_the_old_one_out_of_redis(
    redis_server: RedisProcess, isolated_settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Otherwise other processes would go on reading the value this set replaced."""
    settings = MultiTierCacheSettings(l2_url=redis_server.url, namespace=isolated_settings)
    writer, reader = MultiTierCache(settings), MultiTierCache(settings)  # two L1s, as two processes
    writer.set("k", 1)
    assert reader.get("k") == 1
    unencodable = object()
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        writer.set("k", unencodable)
    assert writer.get("k") is unencodable  # kept in the writer's L1
    reader.invalidate_l1()
    assert reader.get("k") is None  # and no longer 1 in Redis
    writer.close()
    reader.close()


async def test_a_set_just_after_another_process_cleared_is_not_lost(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    """The writer has not heard of the clear yet (here: it hears nothing): its set must land in
    the new generation, not be sealed in the old one and be a miss for everyone."""
    settings = MultiTierCacheSettings(l2_url=redis_server.url, namespace=isolated_settings)
    writer = MultiTierCache(dataclasses.replace(settings, coherent=False))
    other = MultiTierCache(dataclasses.replace(settings, l1_enabled=False))
    writer.set("warm", 0)  # learns the generation
    other.clear()
    writer.set("k", "after the clear")
    assert other.get("k") == "after the clear"
    writer.close()
    other.close()
