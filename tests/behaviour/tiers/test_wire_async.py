"""The async hot reads sent on pooled redis.asyncio connections directly (``_l2.wire``).

As for the sync ones (test_wire): a dropped connection is tried once more, a connection left
with an unread reply is never read from, a timeout is an outage (no retry); and a task
cancelled while it waits for its reply leaves no reply for the next command to read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

import tiercache
from tiercache import tiered_cache
from tiercache._decorator import config
from tiercache._l2.pool import WaitingConnectionPool
from tiercache._l2.wire import alean_command, lean_pipeline
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.redis_server


def cached(name: str, runs: list[str]) -> Any:
    @tiered_cache(ttl_l1=None, ttl_l2=3600, name=name)
    async def lookup(key: str) -> dict[str, str]:
        runs.append(key)
        return {"key": key}

    return lookup


def store_of_this_loop() -> Any:
    return config.endpoint_for(config.current()).astore()


def test_the_reads_of_an_async_l2_hit_take_the_lean_way(real_l2: str) -> None:
    runs: list[str] = []
    lookup = cached("awire.lean", runs)

    async def main() -> list[Any]:
        await lookup("a")
        store = store_of_this_loop()
        assert store._send is not store.client.execute_command
        store.client.execute_command = store.client.mget = None  # (redis-py's client layer is not called)
        return [await lookup("a") for _ in range(5)]

    assert asyncio.run(main()) == [{"key": "a"}] * 5 and runs == ["a"]
    assert lookup.cache_stats().l2_hits == 5 and lookup.cache_stats().l2_errors == 0


def test_a_connection_redis_dropped_is_tried_once_more_and_the_read_is_a_hit(
    real_l2: str, redis_server: RedisProcess
) -> None:
    runs: list[str] = []
    lookup = cached("awire.dropped", runs)
    admin = redis_server.client()

    async def main() -> None:
        await lookup("a")
        for _ in range(3):
            ours = [c for c in admin.client_list() if c.get("cmd") in ("mget", "get", "set")]
            assert ours
            for client in ours:
                admin.client_kill_filter(_id=client["id"])
            assert await lookup("a") == {"key": "a"}

    asyncio.run(main())
    stats = lookup.cache_stats()
    assert runs == ["a"] and stats.l2_hits == 3 and stats.l2_errors == 0 and not stats.degraded


def test_a_connection_reset_under_a_read_is_tried_once_more_and_the_read_is_a_hit(real_l2: str) -> None:
    """A reset (RST) where a close (FIN) is mostly seen: the socket raises ConnectionResetError.

    Redis's kill of a connection with our command on its way in is answered by a reset. The
    lean read let the builtin ConnectionResetError through, where a closed stream raises
    redis.ConnectionError: no retry, an l2_error per killed connection, and the breaker opened
    (seen once in CI under load, test_load's kill of every connection).
    """
    runs: list[str] = []
    lookup = cached("awire.reset", runs)

    async def reset(*args: Any) -> bytes:
        raise ConnectionResetError(104, "Connection reset by peer")

    async def main() -> None:
        await lookup("a")
        pool = store_of_this_loop().client.connection_pool
        assert pool._available_connections
        for connection in pool._available_connections:
            connection._reader.read = reset  # (its next read: the socket was reset under it)
        assert await lookup("a") == {"key": "a"}

    asyncio.run(main())
    stats = lookup.cache_stats()
    assert runs == ["a"] and stats.l2_hits == 1 and stats.l2_errors == 0 and not stats.degraded


def test_the_write_of_a_miss_takes_the_lean_way_even_after_a_dropped_connection(
    real_l2: str, redis_server: RedisProcess
) -> None:
    runs: list[str] = []
    lookup = cached("awire.miss", runs)
    admin = redis_server.client()

    async def main() -> list[Any]:
        await lookup("warm")
        store_of_this_loop().client.set = None  # (redis-py's client layer is not called)
        for key in ("a", "b", "c"):
            for client in admin.client_list():
                if client.get("cmd") in ("mget", "get", "set"):
                    admin.client_kill_filter(_id=client["id"])
            assert await lookup(key) == {"key": key}
        return [await lookup(key) for key in ("a", "b", "c")]

    assert asyncio.run(main()) == [{"key": "a"}, {"key": "b"}, {"key": "c"}]
    stats = lookup.cache_stats()
    assert runs == ["warm", "a", "b", "c"] and stats.l2_hits == 3
    assert stats.l2_errors == 0 and stats.l2_writes_refused == 0


def test_async_sets_and_invalidations_take_the_lean_way_even_after_a_dropped_connection(
    real_l2: str, redis_server: RedisProcess
) -> None:
    runs: list[str] = []
    lookup = cached("awire.sets", runs)
    admin = redis_server.client()

    def kill_ours() -> None:
        for client in admin.client_list():
            if client.get("cmd") in ("mget", "get", "set", "publish"):
                admin.client_kill_filter(_id=client["id"])

    async def main() -> list[Any]:
        await lookup("warm")
        store_of_this_loop().client.pipeline = None  # (redis.asyncio's pipeline is not used)
        found = []
        for key in ("a", "b"):
            kill_ours()
            await lookup.cache_set({"key": "set by hand"}, key)
            found.append(await lookup(key))
            kill_ours()
            await lookup.cache_invalidate(key)
            found.append(await lookup(key))
        return found

    assert asyncio.run(main()) == [{"key": "set by hand"}, {"key": "a"}, {"key": "set by hand"}, {"key": "b"}]
    stats = lookup.cache_stats()
    assert runs == ["warm", "a", "b"] and stats.l2_errors == 0 and not stats.degraded


def test_an_async_lean_pipeline_returns_an_error_reply_in_its_place(real_l2: str) -> None:
    async def main() -> list[Any]:
        await cached("awire.pipeline", [])("warm")
        make = lean_pipeline(store_of_this_loop().client)
        assert make is not None
        pipeline = make()
        pipeline.set("awire:pipeline", b"not a number", px=60_000)
        pipeline.execute_command("INCR", "awire:pipeline")
        pipeline.get("awire:pipeline")
        pipeline.delete("awire:pipeline", "awire:absent")
        return list(await pipeline.execute(raise_on_error=False))

    ok, refused, value, deleted = asyncio.run(main())
    assert ok == b"OK" and isinstance(refused, redis.ResponseError) and "integer" in str(refused)
    assert value == b"not a number" and deleted == 1
    assert lean_pipeline(redis.asyncio.Redis()) is None


def test_a_pooled_connection_with_an_unread_reply_is_never_read_from(real_l2: str) -> None:
    runs: list[str] = []
    lookup = cached("awire.unread", runs)

    async def main() -> list[Any]:
        await lookup("a")
        await lookup("b")
        pool = store_of_this_loop().client.connection_pool
        assert isinstance(pool, WaitingConnectionPool)
        connection = await pool.take()
        await connection.send_command("ECHO", "a reply nobody reads")
        # The reply is back, unread, when the connection goes back (one still on its way no
        # check can see, redis-py's own included: the sync test waits for it the same way).
        for _ in range(500):
            if connection._reader._buffer:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the ECHO reply never arrived")
        await pool.give(connection)
        return [await lookup(key) for key in ("a", "b", "a")]

    assert asyncio.run(main()) == [{"key": "a"}, {"key": "b"}, {"key": "a"}]
    assert runs == ["a", "b"] and lookup.cache_stats().l2_errors == 0


def test_a_read_cancelled_while_it_waits_leaves_no_reply_for_the_next(
    redis_server: RedisProcess, tmp_path: Any
) -> None:
    """A task cancelled after its GET went out: the reply that comes later is never read as another's."""
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url, timeout=5.0)
        runs: list[str] = []
        lookup = cached("awire.cancelled", runs)

        async def main() -> list[Any]:
            await lookup("a")
            await lookup("b")
            server.pause()
            try:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(lookup("a"), 0.2)
            finally:
                server.resume()
            return [await lookup(key) for key in ("b", "a", "b")]

        assert asyncio.run(main()) == [{"key": "b"}, {"key": "a"}, {"key": "b"}]
        assert runs == ["a", "b"] and lookup.cache_stats().l2_errors == 0
    finally:
        server.stop()


def test_a_slow_redis_is_an_outage_not_a_retry(redis_server: RedisProcess, tmp_path: Any) -> None:
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url, timeout=0.1)
        runs: list[str] = []
        lookup = cached("awire.slow", runs)

        async def main() -> Any:
            await lookup("a")
            server.pause()
            try:
                return await lookup("a")
            finally:
                server.resume()

        assert asyncio.run(main()) == {"key": "a"}
        stats = lookup.cache_stats()
        assert runs == ["a", "a"] and stats.l2_errors == 1 and stats.degraded
    finally:
        server.stop()


def test_clients_tiercache_did_not_build_keep_their_own_way() -> None:
    assert alean_command(redis.asyncio.Redis()) is None
    single = redis.asyncio.Redis(
        connection_pool=WaitingConnectionPool(wait=1.0), single_connection_client=True
    )
    assert alean_command(single) is None


def test_idle_connections_dropped_while_reads_go_on_cost_no_read(real_l2: str) -> None:
    """The breaker's drop of idle connections (pool.disconnect) racing lean reads on the same loop."""
    runs: list[str] = []
    lookup = cached("awire.dropping", runs)

    async def main() -> list[Any]:
        await asyncio.gather(*(lookup(str(n)) for n in range(20)))
        pool = store_of_this_loop().client.connection_pool
        found: list[Any] = []
        for _ in range(5):
            dropping = asyncio.ensure_future(pool.disconnect(inuse_connections=False))
            found += await asyncio.gather(*(lookup(str(n)) for n in range(20)))
            await dropping
        return found

    assert asyncio.run(main()) == [{"key": str(n)} for n in range(20)] * 5
    stats = lookup.cache_stats()
    assert sorted(runs) == sorted(str(n) for n in range(20)) and stats.l2_errors == 0


def test_a_resp3_push_among_the_replies_is_handed_to_redis_py_not_read_as_one(
    redis_server: RedisProcess,
) -> None:
    """Client tracking makes Redis push an invalidation into the replies of a RESP3 connection.

    Each reply must still be its own command's: the push goes to redis-py's handler.
    """
    hiredis = pytest.importorskip("hiredis")
    if not hasattr(hiredis, "PushNotification"):
        pytest.skip("a hiredis older than 3.2 hands pushes over as replies (redis-py's own read too)")
    tiercache.configure(redis_url=f"{redis_server.url}?protocol=3")

    async def main() -> list[Any]:
        await cached("awire.push", [])("warm")
        make = lean_pipeline(store_of_this_loop().client)
        assert make is not None
        pipeline = make()
        pipeline.execute_command("CLIENT", "TRACKING", "ON")
        pipeline.set("awire:tracked", b"one", px=60_000)
        pipeline.get("awire:tracked")  # (tracked from now on, on this connection)
        pipeline.set("awire:tracked", b"two", px=60_000)  # (so Redis pushes its invalidation here)
        pipeline.get("awire:tracked")
        pipeline.execute_command("CLIENT", "TRACKING", "OFF")
        replies = list(await pipeline.execute(raise_on_error=False))
        send = alean_command(store_of_this_loop().client)
        assert send is not None
        replies.append(await send("ECHO", "after"))
        return replies

    assert asyncio.run(main()) == [b"OK", b"OK", b"one", b"OK", b"two", b"OK", b"after"]


def test_a_paused_redis_times_out_after_the_timeout_never_before(
    redis_server: RedisProcess, tmp_path: Any
) -> None:
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url, timeout=0.2)
        runs: list[str] = []
        lookup = cached("awire.bounded", runs)

        async def main() -> float:
            await lookup("a")
            server.pause()
            try:
                started = asyncio.get_running_loop().time()
                await lookup("a")
                return asyncio.get_running_loop().time() - started
            finally:
                server.resume()

        took = asyncio.run(main())
        # One timeout (no retry) and the call itself: never early, late by a tick of the read
        # timer (a quarter of the timeout) and what a busy machine adds.
        assert 0.2 <= took < 0.2 * 1.25 + 1.0
        assert runs == ["a", "a"] and lookup.cache_stats().l2_errors == 1
    finally:
        server.stop()
