"""The conditional write, on the real server: Redis itself refuses a value read before an invalidation.

Where the writer found the key absent it is SET NX GET; otherwise a Lua script compares tokens.
Both are checked here store-level, sync and async, and through the generation script.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from tiercache._l2.deployments import endpoint_for_url
from tiercache._l2.envelope import ABSENT, FOREIGN_TOKEN, NO_TOKEN, new_token, seal, token_of, tombstone
from tiercache._tools.redis_process import RedisProcess


def value(token: bytes, generation: int = 0) -> bytes:
    return seal(b"\xa1v", generation, token, 2**62)


class Store:
    """The sync or async store of a fresh endpoint, called the same way."""

    def __init__(self, server: RedisProcess, mode: str) -> None:
        self.endpoint = endpoint_for_url(server.url, timeout=1.0, connect_timeout=1.0)
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def __getattr__(self, name: str) -> Any:
        if self.loop is None:
            return getattr(self.endpoint.store(), name)

        def run(*args: Any) -> Any:
            async def call() -> Any:
                return await getattr(self.endpoint.astore(), name)(*args)

            return self.loop.run_until_complete(call())  # type: ignore[union-attr]

        return run

    def close(self) -> None:
        self.endpoint.close()
        if self.loop is not None:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def store(request: pytest.FixtureRequest, redis_server: RedisProcess) -> Any:
    made = Store(redis_server, request.param)
    yield made
    made.close()


@pytest.fixture
def client(redis_server: RedisProcess) -> redis.Redis:
    return redis_server.client()


def test_a_writer_that_found_nothing_stores_where_nothing_came(store: Store, client: redis.Redis) -> None:
    assert store.write("cw:absent", value(NO_TOKEN), 60_000, ABSENT) is True
    assert client.get("cw:absent") == value(NO_TOKEN)
    assert 59_000 < client.pttl("cw:absent") <= 60_000


def test_a_tombstone_that_came_meanwhile_wins(store: Store, client: redis.Redis) -> None:
    """Found nothing, then someone invalidated: the value may predate it, Redis refuses it."""
    mark = tombstone(new_token())
    client.set("cw:tomb", mark)
    assert store.write("cw:tomb", value(NO_TOKEN), 60_000, ABSENT) is False
    assert client.get("cw:tomb") == mark


def test_a_value_another_writer_who_found_nothing_stored_stays(store: Store, client: redis.Redis) -> None:
    """Both read before any invalidation: either is current; theirs stays, ours is not refused."""
    theirs = seal(b"\xa5their", 0, NO_TOKEN, 2**62)
    client.set("cw:race", theirs)
    assert store.write("cw:race", value(NO_TOKEN), 60_000, ABSENT) is True
    assert client.get("cw:race") == theirs


def test_a_value_written_after_an_invalidation_refuses_an_older_reader(
    store: Store, client: redis.Redis
) -> None:
    """Found nothing; then an invalidation and a value computed after it: ours is older still."""
    client.set("cw:after", value(new_token()))
    assert store.write("cw:after", value(NO_TOKEN), 60_000, ABSENT) is False


def test_the_script_stores_only_while_the_token_is_the_one_read(store: Store, client: redis.Redis) -> None:
    first = new_token()
    client.set("cw:token", tombstone(first))
    assert store.write("cw:token", value(first), 60_000, first) is True
    assert token_of(client.get("cw:token")) == first  # the value carries the token on
    assert store.write("cw:token", value(first), 60_000, first) is True  # (still the same token)
    client.set("cw:token", tombstone(new_token()))  # invalidated again
    assert store.write("cw:token", value(first), 60_000, first) is False
    client.delete("cw:token")  # the tombstone expired, or was evicted: no telling, so refuse
    assert store.write("cw:token", value(first), 60_000, first) is False


@pytest.mark.parametrize(
    "planted",
    [b"\x00\x01not ours", b"tc\x01old format" + bytes(30), b"tc\x02"],
    ids=["foreign", "older-format", "short"],
)
def test_garbage_is_overwritten(store: Store, client: redis.Redis, planted: bytes) -> None:
    client.set("cw:garbage", planted)
    assert token_of(planted) == FOREIGN_TOKEN
    assert store.write("cw:garbage", value(NO_TOKEN), 60_000, FOREIGN_TOKEN) is True
    assert client.get("cw:garbage") == value(NO_TOKEN)


def test_a_key_of_another_type_is_overwritten(store: Store, client: redis.Redis) -> None:
    client.delete("cw:list")
    client.rpush("cw:list", "someone", "else's")
    assert store.write("cw:list", value(NO_TOKEN), 60_000, FOREIGN_TOKEN) is True
    assert client.type("cw:list") == b"string"


def test_generations_only_go_up(store: Store, client: redis.Redis) -> None:
    client.delete("cw:gen")
    assert store.raise_generation("cw:gen", 0, 1) == (1, True)
    assert store.raise_generation("cw:gen", 0, 1) == (2, True)
    assert store.raise_generation("cw:gen", 2, 0) == (2, False)  # restating what it holds: no change
    client.set("cw:gen", "1")  # an old value planted back (or a failover that lost the last one)
    assert store.raise_generation("cw:gen", 2, 0) == (2, True)
    client.set("cw:gen", b"x" * 256)  # garbage reads as none
    assert store.raise_generation("cw:gen", 0, 1) == (1, True)
    assert client.get("cw:gen") == b"1"


def test_tombstones_replace_values_and_plain_deletes_remove_them(store: Store, client: redis.Redis) -> None:
    client.set("cw:inv", value(NO_TOKEN))
    mark = tombstone(new_token())
    store.invalidate(("cw:inv",), mark, 5_000, None)
    assert client.get("cw:inv") == mark and 4_000 < client.pttl("cw:inv") <= 5_000
    store.invalidate(("cw:inv",), None, 0, None)  # the adapters' plain delete
    assert client.get("cw:inv") is None


def test_an_old_redis_without_nx_get_falls_back_to_the_script(redis_server: RedisProcess) -> None:
    """Redis < 7.0 answers SET ... NX GET with a syntax error: the script does the same check."""
    endpoint = endpoint_for_url(redis_server.url, timeout=1.0, connect_timeout=1.0)
    sync = endpoint.store()
    sent: list[str] = []

    def old_set(key: str, payload: bytes, ttl_ms: int) -> Any:  # what Redis < 7.0 answers
        sent.append(key)
        return sync._send("SET", key, payload, "PX", ttl_ms, "NX", "GET", "NOT-IN-REDIS-6")

    sync._set_nx_get = old_set
    try:
        redis_server.client().delete("cw:old")
        assert sync.write("cw:old", value(NO_TOKEN), 60_000, ABSENT) is True
        assert sent == ["cw:old"] and sync._nx_get is False  # (refused once, never sent again)
        assert redis_server.client().get("cw:old") == value(NO_TOKEN)
        redis_server.client().set("cw:old", tombstone(new_token()))
        assert sync.write("cw:old", value(NO_TOKEN), 60_000, ABSENT) is False
        assert sent == ["cw:old"]
    finally:
        endpoint.close()


def test_an_old_redis_without_nx_get_falls_back_to_the_script_for_async_writes_too(
    redis_server: RedisProcess,
) -> None:
    endpoint = endpoint_for_url(redis_server.url, timeout=1.0, connect_timeout=1.0)
    sent: list[str] = []

    async def main() -> list[bool]:
        store = endpoint.astore()

        def old_set(key: str, payload: bytes, ttl_ms: int) -> Any:  # what Redis < 7.0 answers
            sent.append(key)
            return store._send("SET", key, payload, "PX", ttl_ms, "NX", "GET", "NOT-IN-REDIS-6")

        store._set_nx_get = old_set
        first = await store.write("cw:aold", value(NO_TOKEN), 60_000, ABSENT)
        assert store._nx_get is False
        redis_server.client().set("cw:aold", tombstone(new_token()))
        return [first, await store.write("cw:aold", value(NO_TOKEN), 60_000, ABSENT)]

    try:
        redis_server.client().delete("cw:aold")
        assert asyncio.run(main()) == [True, False]
        assert sent == ["cw:aold"]  # (refused once, never sent again)
    finally:
        endpoint.close()


def test_an_old_redis_takes_batched_conditional_writes_through_the_script(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's SET NX GET answered with a syntax error (Redis < 7.0) is redone by the script,
    with the same check: absent keys are written, an invalidated one is not."""
    real_set = redis.client.Pipeline.set

    def old_set(self: Any, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("nx") and kwargs.get("get"):  # what Redis < 7.0 answers
            return self.execute_command("SET", name, value, "NX", "GET", "NOT-IN-REDIS-6")
        return real_set(self, name, value, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "set", old_set)
    endpoint = endpoint_for_url(redis_server.url, timeout=1.0, connect_timeout=1.0)
    store = endpoint.store()
    client = redis_server.client()
    try:
        client.delete("cw:b1", "cw:b2")
        client.set("cw:b3", tombstone(new_token()))
        items = tuple((key, value(NO_TOKEN), 60_000, ABSENT) for key in ("cw:b1", "cw:b2", "cw:b3"))
        assert store.write_many_if_unchanged(items) == [True, True, False]
        assert client.get("cw:b1") == client.get("cw:b2") == value(NO_TOKEN)
        assert client.get("cw:b3") != value(NO_TOKEN)
    finally:
        endpoint.close()
