"""A caller cancelled while it awaits a change (a request timing out, a client gone) stops waiting,
never the change: it reaches Redis, and every later call, here or in another process, sees it.

Each change is held at its first Redis command (the store's methods wait on a gate), its caller
is cancelled there, then the gate opens. Before changes were shielded from their callers, the
flow stopped at the held command: L1 dropped, Redis never told, and the next call here read the
old value back from Redis (reproduced first with a delay proxy and ``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis

import tiercache
import tiercache.testing
from tiercache import MultiTierCacheAdapter, MultiTierCacheSettings, tiered_cache
from tiercache._core.shells import _left_running, settle_background

_names = itertools.count()


@pytest.fixture(params=["fakeredis", "redis-server"])
def l2(request: pytest.FixtureRequest) -> Any:
    """Point L2 at fakeredis or the session's redis-server; return a plain client of it."""
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(server=request.getfixturevalue("fake_l2"))
    return redis.Redis.from_url(request.getfixturevalue("real_l2"))


@contextlib.asynccontextmanager
async def held_at_redis(store: Any) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Hold every command ``store`` is given until the gate opens; yield what waits for the first.

    Leaving opens the gate and gives ``store`` its own methods back.
    """
    reached, gate = asyncio.Event(), asyncio.Event()
    names = [
        name
        for name in dir(type(store))
        if not name.startswith("_") and inspect.iscoroutinefunction(getattr(type(store), name))
    ]

    def held(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def command(*args: Any) -> Any:
            reached.set()
            await gate.wait()
            return await method(*args)

        return command

    for name in names:
        setattr(store, name, held(getattr(store, name)))

    async def first_command() -> None:
        await asyncio.wait_for(reached.wait(), 5)

    try:
        yield first_command
    finally:
        gate.set()
        for name in names:
            delattr(store, name)


async def cancelled_at_redis(store: Any, change: Callable[[], Awaitable[Any]]) -> None:
    """Make ``change`` in a task, cancel it once the change reached Redis, then let Redis answer."""
    async with held_at_redis(store) as first_command:
        caller = asyncio.create_task(change())
        await first_command()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert await settle_background(5) == 0  # (the change ends by itself, cancelled by nobody)


def truth_function(truth: dict[str, int], **options: Any) -> Any:
    @tiered_cache(ttl_l1=600, ttl_l2=3600, name=f"cancelled.f{next(_names)}", **options)
    async def current(key: str) -> int:
        return truth[key]

    return current


@contextlib.asynccontextmanager
async def adapters(url: str, prefix: str) -> AsyncIterator[tuple[Any, Any]]:
    """An adapter with an L1, and one that reads Redis on every get (what another process sees)."""
    fields: dict[str, Any] = {"l2_url": url, "namespace": f"{prefix}-{next(_names)}"}
    async with (
        MultiTierCacheAdapter(MultiTierCacheSettings(**fields)) as cache,
        MultiTierCacheAdapter(MultiTierCacheSettings(**fields, l1_enabled=False)) as view,
    ):
        yield cache, view


def store_of(cache: Any) -> Any:
    endpoint = cache.endpoint()
    assert endpoint is not None
    return endpoint.astore()


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["cache_invalidate", "cache_clear", "cache_set", "invalidate_tags"])
async def test_a_change_whose_caller_was_cancelled_still_reaches_every_later_call(
    l2: Any, isolated_settings: str, change: str
) -> None:
    truth = {"k": 1}
    current = truth_function(truth, tags=lambda key: [f"item:{key}"])
    assert await current("k") == 1
    assert await settle_background(5) == 0  # (nothing of that call may be held below)
    truth["k"] = 2
    changes: dict[str, Callable[[], Awaitable[Any]]] = {
        "cache_invalidate": lambda: current.cache_invalidate("k"),
        "cache_clear": current.cache_clear,
        "cache_set": lambda: current.cache_set(2, "k"),
        "invalidate_tags": lambda: tiercache.ainvalidate_tags("item:k"),
    }
    tag_tokens = f"{isolated_settings}:tag:*"
    tokens_before = {key: l2.get(key) for key in l2.scan_iter(tag_tokens)}
    await cancelled_at_redis(store_of(current.__tiercache__), changes[change])
    if change == "invalidate_tags":
        # Before anything here reads the tag: this process remembers the token it replaced (and
        # would replace it at its next read), other processes know only what Redis holds.
        assert tokens_before
        assert all(l2.get(key) != token for key, token in tokens_before.items())
    assert await current("k") == 2  # this process: its L1 was dropped, and Redis was told
    tiercache.testing.forget_local_caches()
    assert await current("k") == 2  # from Redis, as another process reads it


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["delete", "clear", "set", "set_many"])
async def test_an_adapter_change_whose_caller_was_cancelled_still_reaches_every_later_get(
    real_l2: str, change: str
) -> None:
    async with adapters(real_l2, "cancelled-adapter") as (cache, redis_view):
        await cache.set("k", "old")
        expected = None if change in ("delete", "clear") else "new"
        changes: dict[str, Callable[[], Awaitable[Any]]] = {
            "delete": lambda: cache.delete("k"),
            "clear": cache.clear,
            "set": lambda: cache.set("k", "new"),
            "set_many": lambda: cache.set_many({"k": "new"}),
        }
        await cancelled_at_redis(store_of(cache._tiers), changes[change])
        assert await cache.get("k") == expected
        assert await redis_view.get("k") == expected


@pytest.mark.asyncio
async def test_an_adapter_change_made_after_a_cancelled_one_lands_after_it(real_l2: str) -> None:
    """A set left running by its cancelled caller, then a delete: the key ends deleted, as made.

    Only the set's write is held: the delete would otherwise land first, and the set over it.
    """
    async with adapters(real_l2, "cancelled-adapter-order") as (cache, redis_view):
        await cache.set("k", "old")
        store = store_of(cache._tiers)
        write_many = store.write_many
        reached, gate = asyncio.Event(), asyncio.Event()

        async def first_held(*args: Any) -> Any:
            if not reached.is_set():
                reached.set()
                await gate.wait()
            return await write_many(*args)

        setattr(store, "write_many", first_held)
        try:
            setter = asyncio.create_task(cache.set("k", "new"))
            await asyncio.wait_for(reached.wait(), 5)
            setter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await setter
            deleter = asyncio.create_task(cache.delete("k"))
            await asyncio.sleep(0.05)
            assert not deleter.done()  # it waits for the set's end
        finally:
            gate.set()
        await deleter
        delattr(store, "write_many")
        assert await settle_background(5) == 0
        assert await cache.get("k") is None
        assert await redis_view.get("k") is None


@pytest.mark.asyncio
async def test_changes_whose_callers_wait_still_run_side_by_side(real_l2: str) -> None:
    """Only a cancelled caller's change makes later ones wait: two held sets both reach Redis."""
    async with adapters(real_l2, "cancelled-adapter-side") as (cache, _):
        await cache.set("a", 0)
        store = store_of(cache._tiers)
        reached = 0
        write_many = store.write_many
        both, gate = asyncio.Event(), asyncio.Event()

        async def counted(*args: Any) -> Any:
            nonlocal reached
            reached += 1
            if reached == 2:
                both.set()
            await gate.wait()
            return await write_many(*args)

        setattr(store, "write_many", counted)
        try:
            sets = [asyncio.create_task(cache.set(key, 1)) for key in ("a", "b")]
            await asyncio.wait_for(both.wait(), 5)  # both at Redis at once: neither waits for the other
        finally:
            gate.set()
            delattr(store, "write_many")
        await asyncio.gather(*sets)
        assert await cache.get_many(["a", "b"]) == {"a": 1, "b": 1}


def test_a_change_left_running_on_a_loop_closed_under_it_holds_up_no_other_loop(real_l2: str) -> None:
    """asyncio.run per request (sync code calling async code): a loop closed with the change
    still held never ends it; the next loop's changes must not wait for it."""
    cache = MultiTierCacheAdapter(MultiTierCacheSettings(l2_url=real_l2, namespace=f"closed-{next(_names)}"))
    first = asyncio.new_event_loop()

    async def left_held() -> None:
        store = store_of(cache._tiers)
        reached = asyncio.Event()

        async def never(*args: Any) -> Any:
            reached.set()
            await asyncio.Event().wait()

        setattr(store, "write_many", never)
        setter = asyncio.create_task(cache.set("k", "new"))
        await asyncio.wait_for(reached.wait(), 5)
        setter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await setter

    first.run_until_complete(left_held())
    first.close()  # (the set's task still pending on it)

    async def later() -> Any:
        await asyncio.wait_for(cache.delete("k"), 5)
        return await cache.get("k")

    assert asyncio.run(later()) is None
    assert not _left_running.get(cache._tiers)  # (nor is the orphan kept, nor the adapter with it)
