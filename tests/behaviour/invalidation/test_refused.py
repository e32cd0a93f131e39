"""Invalidations Redis refuses are loud; ones it cannot receive yet are kept and replayed.

Restricted ACL users, a read-only replica and a full Redis, all started by the tests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiercache
from tests.support.clock import Clock
from tests.support.faults import until
from tiercache import (
    InvalidationError,
    MultiTierCache,
    MultiTierCacheAdapter,
    MultiTierCacheSettings,
    tiered_cache,
)
from tiercache._l2.coherence import DEAF_L1_SECONDS
from tiercache._tools.redis_process import RedisProcess

_users = itertools.count()


def user_url(server: RedisProcess, rules: str) -> str:
    """Create an ACL user with ``rules`` (besides a password and every key/channel); return its URL."""
    name = f"user{next(_users)}"
    server.client().execute_command("ACL", "SETUSER", name, "on", ">secret", "~*", "&*", *rules.split())
    return f"redis://{name}:secret@127.0.0.1:{server.port}/0"


def two_processes(url_a: str, url_b: str, db: dict[str, str], **options: Any) -> tuple[Any, Any]:
    """The same function as two processes have it, each with its own Redis URL (user)."""
    name = f"refused.{next(_users)}"
    a = tiered_cache(name=name, redis_url=url_a, **options)(lambda key: db[key])
    b = tiered_cache(name=name, redis_url=url_b, **options)(lambda key: db[key])
    return a, b


def fresh_read(url: str, name: str, key: str) -> str:
    """What a process that just started would get: no L1, straight from Redis (else 'computed')."""
    return str(tiered_cache(name=name, redis_url=url, ttl_l1=None)(lambda _: "computed")(key))


# -- users that may not do what an invalidation needs -----------------------------------------


def test_a_user_without_del_still_invalidates(redis_server: RedisProcess, real_l2: str) -> None:
    """Invalidations leave tombstones (SET), so DEL/UNLINK are not needed."""
    db = {"x": "v1"}
    writer, restricted = two_processes(real_l2, user_url(redis_server, "+@all -del -unlink"), db)
    assert writer("x") == "v1"
    db["x"] = "v2"
    restricted.cache_invalidate("x")
    assert fresh_read(real_l2, writer.cache_parameters()["name"], "x") in ("v2", "computed")


@pytest.mark.parametrize("how", ["invalidate", "clear"])
def test_a_user_that_may_not_write_gets_an_invalidation_error(
    redis_server: RedisProcess, real_l2: str, how: str
) -> None:
    """It names the function, Redis's refusal and what remains; this process's L1 is dropped."""
    db = {"x": "v1"}
    writer, reader_only = two_processes(real_l2, user_url(redis_server, "+@all -@write"), db)
    assert writer("x") == reader_only("x") == "v1"
    db["x"] = "v2"
    with pytest.raises(InvalidationError) as raised:
        reader_only.cache_invalidate("x") if how == "invalidate" else reader_only.cache_clear()
    message = str(raised.value)
    assert reader_only.cache_parameters()["name"] in message
    assert "refused" in message and "stay in Redis" in message
    assert reader_only.cache_stats().l1_size == 0  # dropped here all the same


@pytest.mark.asyncio
async def test_the_async_twin_raises_too(redis_server: RedisProcess, real_l2: str) -> None:
    url = user_url(redis_server, "+@all -@write")

    @tiered_cache(name=f"refused.async.{next(_users)}", redis_url=url)
    async def f(key: str) -> str:
        return key

    await f("x")
    with pytest.raises(InvalidationError):
        await f.cache_invalidate("x")
    with pytest.raises(InvalidationError):
        await f.cache_clear()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_adapters_delete_and_clear_raise_too(redis_server: RedisProcess, kind: str) -> None:
    url = user_url(redis_server, "+@all -@write")
    settings = MultiTierCacheSettings(l2_url=url, namespace=f"refused-{next(_users)}")
    if kind == "sync":
        with MultiTierCache(settings) as cache:
            with pytest.raises(InvalidationError, match="delete"):
                cache.delete("k")
            with pytest.raises(InvalidationError, match="clear"):
                cache.clear()
        return

    async def run() -> None:
        async with MultiTierCacheAdapter(settings) as cache:
            with pytest.raises(InvalidationError):
                await cache.delete("k")
            with pytest.raises(InvalidationError):
                await cache.clear()

    asyncio.run(run())


def test_missing_permissions_are_named_at_start(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """ACL DRYRUN, run once per namespace in the background, names what the user may not run."""
    url = user_url(redis_server, "+@all -set -evalsha")
    f = tiered_cache(name=f"refused.check.{next(_users)}", redis_url=url)(lambda key: key)
    user = url.split("//", 1)[1].split(":", 1)[0]

    def ours() -> list[str]:  # (a check of an earlier test's user may land meanwhile)
        return [r.getMessage() for r in caplog.records if f"{user}:***@" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        f("x")
        until(lambda: any("may not run" in message for message in ours()), timeout=5)
    warning = next(message for message in ours() if "may not run" in message)
    assert "SET" in warning and "EVALSHA" in warning and "GET" not in warning.split("run")[1].split(" on ")[0]
    assert "secret" not in warning


# -- a read-only replica, and a full Redis ------------------------------------------------------


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A primary and a read-only replica of it (the replica writes its dump to a temp folder)."""
    primary = RedisProcess(Path(tmp_path_factory.mktemp("primary"))).start()
    copy = RedisProcess(
        Path(tmp_path_factory.mktemp("replica")), None, "--replicaof", "127.0.0.1", str(primary.port)
    ).start()
    try:
        until(lambda: copy.client().info("replication").get("master_link_status") == "up", timeout=10)
        yield primary, copy
    finally:
        copy.stop()
        primary.stop()


def test_a_read_only_replica_refuses_loudly(replica: tuple[RedisProcess, RedisProcess]) -> None:
    """Reads work there; an invalidation or clear cannot, and says so."""
    primary, copy = replica
    db = {"x": "v1"}
    writer, on_replica = two_processes(primary.url, copy.url, db)
    assert writer("x") == "v1"
    until(lambda: copy.client().exists(writer.cache_key("x")), timeout=5)  # replicated
    assert on_replica("x") == "v1" and on_replica.cache_stats().l2_hits == 1
    with pytest.raises(InvalidationError, match=r"READONLY|read only"):
        on_replica.cache_invalidate("x")
    with pytest.raises(InvalidationError, match=r"READONLY|read only"):
        on_replica.cache_clear()


def test_a_read_only_replica_refuses_the_async_twin_too(replica: tuple[RedisProcess, RedisProcess]) -> None:
    _, copy = replica

    @tiered_cache(name=f"refused.replica.{next(_users)}", redis_url=copy.url)
    async def f(key: str) -> str:
        return key

    async def run() -> None:
        await f("x")
        with pytest.raises(InvalidationError, match=r"READONLY|read only"):
            await f.cache_invalidate("x")
        with pytest.raises(InvalidationError, match=r"READONLY|read only"):
            await f.cache_clear()

    asyncio.run(run())


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path).start()
    yield server
    server.stop()


def test_a_full_redis_refuses_a_clear_but_not_an_invalidation(full_redis: RedisProcess) -> None:
    """maxmemory with noeviction refuses the clear's SET (loud), and a tombstone (DEL instead)."""
    tiercache.configure(redis_url=full_redis.url)
    db = {"x": "v1", "y": "v1"}
    name = f"refused.full.{next(_users)}"
    f = tiered_cache(name=name)(lambda key: db[key])
    assert (f("x"), f("y")) == ("v1", "v1")
    client = full_redis.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write that needs memory is refused from now on
    try:
        db.update(x="v2", y="v2")
        f.cache_invalidate("x")  # the tombstone is refused; a DEL is not
        with pytest.raises(InvalidationError, match="maxmemory"):
            f.cache_clear()
    finally:
        client.config_set("maxmemory", 0)
    assert fresh_read(full_redis.url, name, "x") in ("v2", "computed")


# -- a peer that may not SUBSCRIBE ------------------------------------------------------------


def test_a_peer_that_cannot_subscribe_warns_once_and_keeps_l1_short(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    url = user_url(redis_server, "+@all -subscribe")
    clock = Clock()
    f = tiered_cache(name=f"refused.deaf.{next(_users)}", redis_url=url, clock=clock)(lambda key: time.time())
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        first = f("x")
        until(lambda: any("cannot follow" in r.getMessage() for r in caplog.records), timeout=5)
        time.sleep(0.3)  # the listener retries meanwhile, and says it once
    warnings = [r.getMessage() for r in caplog.records if "cannot follow" in r.getMessage()]
    assert len(warnings) == 1 and "secret" not in warnings[0]
    assert f.cache_stats().coherent is False
    clock.now += DEAF_L1_SECONDS - 0.1
    assert f("x") == first  # from L1
    clock.now += 0.2
    f("x")
    assert f.cache_stats().l1_hits == 1  # past the bound: no longer from L1


def test_a_coherent_function_says_so(real_l2: str) -> None:
    f = tiered_cache(name=f"refused.ok.{next(_users)}")(lambda key: key)
    f("x")
    until(lambda: f.cache_stats().coherent, timeout=2)
    g = tiered_cache(name=f"refused.ok.{next(_users)}", coherent=False)(lambda key: key)
    g("x")
    assert g.cache_stats().coherent is False


# -- an unreachable Redis: deferred, counted, replayed ----------------------------------------


def test_an_invalidation_redis_cannot_receive_is_counted_and_replayed(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url)
        db = {"x": "v1", "other": "o", "y": "y"}
        name = f"refused.outage.{next(_users)}"
        f = tiered_cache(name=name)(lambda key: db[key])
        assert f("x") == "v1"
        server.pause()
        try:
            f("other")  # times out: the breaker opens
            db["x"] = "v2"
            f.cache_invalidate("x")  # no exception: it waits for Redis
            assert f.cache_stats().pending_invalidations == 1
            assert f("x") == "v2"  # and this process does not read L2 until it is replayed
        finally:
            server.resume()
        until(lambda: not f.cache_stats().degraded, timeout=3)
        f("y")  # the next L2 operation replays it first
        assert f.cache_stats().pending_invalidations == 0
        assert fresh_read(server.url, name, "x") in ("v2", "computed")
    finally:
        server.stop()


def test_unreachable_is_not_refused(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening, invalidate and clear return (deferred), they do not raise."""
    f = tiered_cache(name=f"refused.nowhere.{next(_users)}")(lambda key: key)
    f("x")
    f.cache_invalidate("x")
    f.cache_clear()
    assert f.cache_stats().pending_invalidations == 1  # the clear covers the key


def test_a_function_that_stops_using_l2_is_no_longer_kept_short(tmp_path: Path) -> None:
    """Deaf while its Redis was down; with L2 turned off there is nothing to hear: ttl_l1 again."""
    clock = Clock()
    f = tiered_cache(name=f"refused.off.{next(_users)}", clock=clock)(lambda key: time.time())
    f("x")  # nothing listens at the configured URL: deaf
    assert f.cache_stats().coherent is False
    tiercache.configure(l2=False)
    first = f("y")
    clock.now += DEAF_L1_SECONDS + 1
    assert f("y") == first  # still from L1, past the deaf bound


def test_the_warning_says_what_a_missing_command_really_costs(
    redis_server: RedisProcess, real_l2: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without DEL, functions still store values and invalidate (tombstones are SETs); the adapters'
    delete() is what raises. The warning said values would not be stored and invalidations raise."""
    url = user_url(redis_server, "+@all -del -unlink")
    user = url.split("//", 1)[1].split(":", 1)[0]
    db = {"x": "v1"}
    writer, restricted = two_processes(real_l2, url, db)

    def ours() -> list[str]:
        return [r.getMessage() for r in caplog.records if f"{user}:***@" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert restricted("x") == "v1"
        until(lambda: any("may not run" in message for message in ours()), timeout=5)
    warning = next(message for message in ours() if "may not run" in message)
    assert "DEL" in warning and "delete() raises" in warning
    assert "not stored" not in warning and "cache_invalidate()" not in warning
    assert writer("x") == "v1" and writer.cache_stats().l2_hits == 1  # the restricted user stored it
    db["x"] = "v2"
    restricted.cache_invalidate("x")  # no exception: a tombstone is a SET
    assert fresh_read(real_l2, writer.cache_parameters()["name"], "x") in ("v2", "computed")
    adapter = MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=f"refused-del-{next(_users)}"))
    with pytest.raises(InvalidationError, match="delete"):
        adapter.delete("k")
