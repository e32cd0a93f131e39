"""Typed usage of the public API: must pass ``mypy --strict`` as it is (see tests/unit/test_typing.py)."""

from __future__ import annotations

from typing import Literal, assert_type

from tiercache import NO_VALUE, CacheInfo, CacheStats, NoValue, WarmReport, tiered_cache, tiered_cache_many


@tiered_cache(ttl_l1=60, ttl_l2=600)
def resolve_adapter(category: str, name: str) -> int:
    return len(category) + len(name)


@tiered_cache
async def get_session(session_id: str) -> dict[str, int]:
    return {session_id: 1}


# docs/keys.md's methods example, as it stands there.
class AdapterRegistry:
    @tiered_cache(ttl_l2=None, ignore="self")
    def resolve(self, category: str, name: str) -> str:
        return f"{category}/{name}"

    @tiered_cache(ttl_l2=None, ignore="self")
    async def aresolve(self, category: str) -> str:
        return category

    @classmethod
    @tiered_cache(ttl_l2=None)
    def default(cls, category: str) -> str:
        return f"{cls.__name__}:{category}"

    @classmethod
    @tiered_cache(ttl_l2=None)
    async def adefault(cls, category: str) -> str:
        return category

    @tiered_cache(ttl_l2=None)
    @classmethod
    def outer(cls, category: str) -> str:
        return f"{cls.__name__}:{category}"

    @staticmethod
    @tiered_cache(ttl_l2=None)
    def half(x: int) -> float:
        return x / 2


def functions() -> None:
    assert_type(resolve_adapter("storage", "s3"), int)
    assert_type(resolve_adapter.cache_key("storage", "s3"), str)
    assert_type(resolve_adapter.cache_stats(reset=True), CacheStats)
    assert_type(resolve_adapter.cache_info(), CacheInfo)
    assert_type(resolve_adapter.cache_invalidate("storage", name="s3"), None)
    assert_type(resolve_adapter.cache_clear(), None)
    assert_type(resolve_adapter.__wrapped__("a", "b"), int)


def methods() -> None:
    registry = AdapterRegistry()
    assert_type(registry.resolve("storage", "s3"), str)
    assert_type(AdapterRegistry.resolve(registry, "storage", "s3"), str)
    assert_type(AdapterRegistry.resolve.cache_key(registry, "storage", "s3"), str)
    AdapterRegistry.resolve.cache_invalidate(registry, "storage", "s3")
    assert_type(registry.resolve.cache_stats(), CacheStats)
    # bound: the cache_* methods take the call's arguments, as the call does
    registry.resolve.cache_invalidate("storage", "s3")
    assert_type(registry.resolve.cache_key("storage", name="s3"), str)
    assert_type(registry.resolve.cache_get("storage", "s3"), str | Literal[NoValue.NO_VALUE])
    assert_type(registry.resolve.cache_contains("storage", "s3"), bool)
    registry.resolve.cache_set("storage/s3", "storage", "s3")
    assert_type(registry.resolve.cache_warm([("storage", "s3")]), WarmReport)
    assert_type(AdapterRegistry.outer("queue"), str)
    AdapterRegistry.outer.cache_invalidate("queue")
    assert_type(AdapterRegistry.default("queue"), str)
    assert_type(registry.default("queue"), str)
    assert_type(AdapterRegistry.default.cache_info(), CacheInfo)
    assert_type(AdapterRegistry.half(3), float)
    assert_type(registry.half(3), float)
    AdapterRegistry.half.cache_invalidate(3)


async def coroutines() -> None:
    registry = AdapterRegistry()
    assert_type(await get_session("s"), dict[str, int])
    await get_session.cache_invalidate("s")
    await get_session.cache_clear()
    assert_type(get_session.cache_key("s"), str)
    assert_type(await registry.aresolve("storage"), str)
    await AdapterRegistry.aresolve.cache_invalidate(registry, "storage")
    await registry.aresolve.cache_invalidate("storage")
    await registry.aresolve.cache_set("x", "storage")
    assert_type(await registry.aresolve.cache_get("storage"), str | Literal[NoValue.NO_VALUE])
    assert_type(await AdapterRegistry.adefault("queue"), str)
    assert_type(await registry.adefault("queue"), str)


@tiered_cache(ttl_l1=lambda user: 5 if user is None else 60, ttl_l2=600)
def find_user(user_id: int) -> str | None:
    return None if user_id < 0 else str(user_id)


@tiered_cache_many(ttl_l1=60, ttl_l2=600)
def load_users(user_ids: list[int]) -> dict[int, str]:
    return {i: str(i) for i in user_ids}


@tiered_cache_many(ttl_l1=60, ttl_l2=600)
async def aload_users(user_ids: list[int]) -> dict[int, str]:
    return {i: str(i) for i in user_ids}


def entries() -> None:
    found = find_user.cache_get(3)
    assert_type(found, str | None | Literal[NoValue.NO_VALUE])
    if found is not NO_VALUE:
        assert_type(found, str | None)
    find_user.cache_set("three", 3)
    assert_type(find_user.cache_contains(user_id=3), bool)
    assert_type(find_user.cache_warm([1, 2], concurrency=2), WarmReport)
    assert_type(load_users([1, 2]), dict[int, str])
    load_users.cache_invalidate([1])
    assert_type(load_users.cache_stats(), CacheStats)


async def batch_coroutines() -> None:
    assert_type(await aload_users([1]), dict[int, str])
    await aload_users.cache_invalidate([1])
    assert_type(await get_session.cache_get("s"), dict[str, int] | Literal[NoValue.NO_VALUE])
    await get_session.cache_set({"s": 2}, "s")
    assert_type(await get_session.cache_warm(["s"]), WarmReport)
