"""The hot reads sent on pooled connections directly (``_l2.wire``), against a real redis-server.

They skip redis-py's client layer, so what it did for them must still hold: a dropped
connection is tried once more, a connection left with an unread reply is never read from, a
forked child never shares its parent's sockets, and a timeout is an outage (no retry).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

import tiercache
from tests.support.round_trips import count_sends
from tiercache import tiered_cache
from tiercache._decorator import config
from tiercache._l2.coherence import channel_for
from tiercache._l2.pool import SyncWaitingConnectionPool
from tiercache._l2.wire import lean_command, lean_pipeline
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.redis_server


def cached(name: str, runs: list[int]) -> Any:
    @tiered_cache(ttl_l1=None, ttl_l2=3600, name=name)
    def lookup(key: str) -> dict[str, str]:
        runs.append(1)
        return {"key": key}

    return lookup


def pool_of_this_process() -> SyncWaitingConnectionPool:
    pool = config.endpoint_for(config.current()).store().client.connection_pool
    assert isinstance(pool, SyncWaitingConnectionPool)
    return pool


def test_the_reads_of_an_l2_hit_take_the_lean_way(real_l2: str) -> None:
    runs: list[int] = []
    lookup = cached("wire.lean", runs)
    lookup("a")
    store = config.endpoint_for(config.current()).store()
    assert store._send is not store.client.execute_command  # (the lean sender, not the client's)
    assert [lookup("a") for _ in range(5)] == [{"key": "a"}] * 5 and runs == [1]
    assert lookup.cache_stats().l2_hits == 5


def test_a_connection_redis_dropped_is_tried_once_more_and_the_read_is_a_hit(
    real_l2: str, redis_server: RedisProcess
) -> None:
    runs: list[int] = []
    lookup = cached("wire.dropped", runs)
    lookup("a")
    admin = redis_server.client()
    for _ in range(3):
        ours = [c for c in admin.client_list() if c.get("cmd") in ("mget", "get", "set", "eval", "evalsha")]
        assert ours
        for client in ours:
            admin.client_kill_filter(_id=client["id"])
        assert lookup("a") == {"key": "a"}
    stats = lookup.cache_stats()
    assert runs == [1] and stats.l2_hits == 3 and stats.l2_errors == 0 and not stats.degraded


def test_the_write_of_a_miss_takes_the_lean_way_even_after_a_dropped_connection(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    lookup = cached("wire.miss", runs)
    lookup("warm")
    store = config.endpoint_for(config.current()).store()
    monkeypatch.setattr(store.client, "set", None)  # (redis-py's client layer is not called)
    admin = redis_server.client()
    for key in ("a", "b", "c"):
        for client in admin.client_list():
            if client.get("cmd") in ("mget", "get", "set"):
                admin.client_kill_filter(_id=client["id"])
        assert lookup(key) == {"key": key}
    assert [lookup(key) for key in ("a", "b", "c")] == [{"key": "a"}, {"key": "b"}, {"key": "c"}]
    stats = lookup.cache_stats()
    assert runs == [1] * 4 and stats.l2_hits == 3 and stats.l2_errors == 0 and stats.l2_writes_refused == 0


def test_sets_and_invalidations_take_the_lean_way_even_after_a_dropped_connection(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    lookup = cached("wire.sets", runs)
    lookup("warm")
    store = config.endpoint_for(config.current()).store()
    monkeypatch.setattr(store.client, "pipeline", None)  # (redis-py's pipeline is not used)
    admin = redis_server.client()
    for key in ("a", "b"):
        for client in admin.client_list():
            if client.get("cmd") in ("mget", "get", "set", "publish"):
                admin.client_kill_filter(_id=client["id"])
        lookup.cache_set({"key": "set by hand"}, key)
        assert lookup(key) == {"key": "set by hand"}
        for client in admin.client_list():
            if client.get("cmd") in ("mget", "get", "set", "publish"):
                admin.client_kill_filter(_id=client["id"])
        lookup.cache_invalidate(key)
        assert lookup(key) == {"key": key}
    stats = lookup.cache_stats()
    assert runs == [1] * 3 and stats.l2_errors == 0 and not stats.degraded


def test_a_lean_pipeline_returns_an_error_reply_in_its_place(real_l2: str) -> None:
    tiered_cache(ttl_l1=None, name="wire.pipeline")(lambda key: key)("warm")
    client = config.endpoint_for(config.current()).store().client
    make = lean_pipeline(client)
    assert make is not None
    pipeline = make()
    pipeline.set("wire:pipeline", b"not a number", px=60_000)
    pipeline.execute_command("INCR", "wire:pipeline")
    pipeline.get("wire:pipeline")
    pipeline.delete("wire:pipeline", "wire:absent")
    ok, refused, value, deleted = pipeline.execute(raise_on_error=False)
    assert ok == b"OK" and isinstance(refused, redis.ResponseError) and "integer" in str(refused)
    assert value == b"not a number" and deleted == 1
    assert lean_pipeline(redis.Redis()) is None


def test_a_pooled_connection_with_an_unread_reply_is_never_read_from(real_l2: str) -> None:
    """A reply left on a connection (a command sent, its caller gone) must not answer the next one."""
    runs: list[int] = []
    lookup = cached("wire.unread", runs)
    lookup("a")
    lookup("b")
    pool = pool_of_this_process()
    connection = pool.take()
    connection.send_command("ECHO", "a reply nobody reads")
    assert connection.can_read(timeout=5)  # (the reply is there, unread, when it goes back)
    pool.give(connection)
    for key in ("a", "b", "a"):
        assert lookup(key) == {"key": key}
    assert runs == [1, 1] and lookup.cache_stats().l2_errors == 0


def test_a_forked_child_reads_on_connections_of_its_own(real_l2: str) -> None:
    runs: list[int] = []
    lookup = cached("wire.forked", runs)
    lookup("a")
    # (the connections themselves, held: ids of freed ones are reused by new ones in the child)
    parent = set(pool_of_this_process()._available_connections)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its reads must work, on new connections
        try:
            ok = lookup("a") == {"key": "a"} and lookup.cache_stats().l2_errors == 0
            pool = pool_of_this_process()
            ok = ok and not (set(pool._available_connections) & parent)
            # ...and its copies of the parent's sockets are closed, not left to the collector
            ok = ok and all(connection._sock is None for connection in parent)
            os.write(writer, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"1"
    os.waitpid(pid, 0)
    # The child closed its copies only: the parent's connections still read, unbroken.
    assert all(connection._sock is not None for connection in parent)
    assert lookup("a") == {"key": "a"} and runs == [1] and lookup.cache_stats().l2_errors == 0


def test_a_slow_redis_is_an_outage_not_a_retry(redis_server: RedisProcess, tmp_path: Any) -> None:
    """A read that times out is not sent again (a retry would double the wait): the breaker opens."""
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url, timeout=0.1)
        runs: list[int] = []
        lookup = cached("wire.slow", runs)
        lookup("a")
        server.pause()
        try:
            assert lookup("a") == {"key": "a"}
        finally:
            server.resume()
        stats = lookup.cache_stats()
        assert runs == [1, 1] and stats.l2_errors == 1 and stats.degraded
    finally:
        server.stop()


def test_clients_tiercache_did_not_build_keep_their_own_way() -> None:
    assert lean_command(redis.Redis()) is None  # (an application's pool: its own retry and hooks)
    single = redis.Redis(connection_pool=SyncWaitingConnectionPool(wait=1.0), single_connection_client=True)
    assert lean_command(single) is None


def test_an_invalidation_is_one_round_trip_and_other_processes_hear_it_after(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tombstone and its announcement go in one pipeline, in that order."""
    runs: list[int] = []
    lookup = cached("wire.invalidated", runs)
    lookup("a")
    listener = redis_server.client().pubsub()
    listener.subscribe(channel_for(tiercache.configure().namespace))
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    sends = count_sends(monkeypatch)
    lookup.cache_invalidate("a")
    assert len(sends) == 1
    message = listener.get_message(timeout=5)
    assert message is not None and message["type"] == "message"
    assert lookup("a") == {"key": "a"} and runs == [1, 1]
