"""Methods: ``self.lookup.cache_invalidate(key)`` binds ``self`` as ``self.lookup(key)`` does.

And the rest of what a method is to the tools users bring (mock, pickle, inspect, copy), in every
decorator order, sync and async, with L1 alone, a fake Redis and a real one.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
import sys
from typing import Any
from unittest import mock

import pytest

from tests.support.tiers import TIERS, client_for
from tiercache import NO_VALUE, tiered_cache
from tiercache._core.shells import settle_background


@pytest.fixture(params=TIERS)
def tiers(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The decorator's options for L1 alone, or L1 over a fake or a real Redis."""
    client_for(request, request.param)
    return {"ttl_l2": None} if request.param == "l1" else {}


async def settled() -> None:
    """Wait for the Redis part of what was started and not awaited."""
    assert await settle_background(5) == 0


class Stored:
    """Defined as users write it: in the class body; instances key by their region."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.runs = 0

    def __cache_key__(self) -> str:
        return self.region

    def __repr__(self) -> str:
        return f"Stored({self.region!r})"

    @tiered_cache(ttl_l2=None)
    def lookup(self, name: str) -> str:
        """Find ``name`` in this region."""
        self.runs += 1
        return f"{self.region}/{name}"

    @tiered_cache(ttl_l2=None)
    async def fetch(self, name: str) -> str:
        self.runs += 1
        return f"{self.region}/{name}"

    @tiered_cache(ttl_l2=None)
    @classmethod
    def by_class(cls, name: str) -> str:
        return f"{cls.__name__}:{name}"

    @tiered_cache(ttl_l2=None)
    @staticmethod
    def static(name: str) -> str:
        return name * 2

    @staticmethod
    @tiered_cache(ttl_l2=None)
    def static_inner(name: str) -> str:
        return name * 3


class Derived(Stored):
    pass


def in_body(tiers: dict[str, Any]) -> Any:
    """A class with its cached methods written in its body (a fresh cache per test)."""

    class Service:
        def __init__(self, region: str) -> None:
            self.region = region
            self.runs = 0

        def __cache_key__(self) -> str:
            return self.region

        @tiered_cache(**tiers)
        def lookup(self, name: str) -> str:
            self.runs += 1
            return f"{self.region}/{name}"

        @tiered_cache(**tiers)
        async def fetch(self, name: str) -> str:
            self.runs += 1
            return f"{self.region}/{name}"

    return Service


# -- cache_* methods of a bound method ---------------------------------------------------------


def test_bound_cache_methods_take_the_call_s_arguments(tiers: dict[str, Any]) -> None:
    service = in_body(tiers)("eu")
    assert service.lookup("a") == "eu/a"
    assert service.lookup.cache_contains("a")
    assert service.lookup.cache_get("a") == "eu/a"
    assert service.lookup.cache_key("a") == type(service).lookup.cache_key(service, "a")

    service.lookup.cache_invalidate("a")  # was: TypeError, missing 'name'
    assert not service.lookup.cache_contains("a")
    assert service.lookup.cache_get("a") is NO_VALUE
    assert service.lookup("a") == "eu/a" and service.runs == 2

    service.lookup.cache_set("planted", "a")
    assert service.lookup("a") == "planted" and service.runs == 2
    report = service.lookup.cache_warm(["b", "c"])
    assert report.computed == 2 and service.runs == 4
    assert service.lookup("b") == "eu/b" and service.runs == 4


def test_bound_cache_methods_reach_only_their_instance_s_entries(tiers: dict[str, Any]) -> None:
    cls = in_body(tiers)
    eu, us = cls("eu"), cls("us")
    eu.lookup("a"), us.lookup("a")
    eu.lookup.cache_invalidate("a")
    assert not eu.lookup.cache_contains("a") and us.lookup.cache_contains("a")
    # ...and the class attribute still takes the instance first, as before
    cls.lookup.cache_invalidate(us, "a")
    assert not us.lookup.cache_contains("a")


@pytest.mark.asyncio
async def test_bound_async_cache_methods_take_the_call_s_arguments(tiers: dict[str, Any]) -> None:
    service = in_body(tiers)("eu")
    assert await service.fetch("a") == "eu/a"
    assert await service.fetch.cache_contains("a")
    assert await service.fetch.cache_get("a") == "eu/a"
    assert service.fetch.cache_key("a") == type(service).fetch.cache_key(service, "a")
    await service.fetch.cache_invalidate("a")
    assert not await service.fetch.cache_contains("a")
    await service.fetch.cache_set("planted", "a")
    assert await service.fetch("a") == "planted" and service.runs == 1
    report = await service.fetch.cache_warm(["b"])
    assert report.computed == 1 and await service.fetch("b") == "eu/b" and service.runs == 2


def test_shared_attributes_read_through_the_bound_method(tiers: dict[str, Any]) -> None:
    service = in_body(tiers)("eu")
    service.lookup("a")
    assert service.lookup.cache_stats().misses == 1
    assert service.lookup.cache_info().misses == 1
    assert service.lookup.cache_parameters() == type(service).lookup.cache_parameters()
    assert service.lookup.__wrapped__ is type(service).lookup.__wrapped__
    service.lookup.cache_clear()
    assert not service.lookup.cache_contains("a")


# -- classmethods and staticmethods -----------------------------------------------------------


def test_a_classmethod_under_tiered_cache_binds_its_class_and_subclass() -> None:
    assert Stored.by_class("a") == "Stored:a" and Derived.by_class("a") == "Derived:a"
    assert Stored("eu").by_class("b") == "Stored:b"
    assert Stored.by_class.cache_contains("a") and Derived.by_class.cache_contains("a")
    Derived.by_class.cache_invalidate("a")
    assert not Derived.by_class.cache_contains("a") and Stored.by_class.cache_contains("a")
    assert Stored("eu").by_class.cache_get("b") == "Stored:b"
    assert Stored.by_class.__self__ is Stored


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="Python 3.13 stopped chaining classmethod")
def test_tiered_cache_under_a_classmethod_binds_the_class_where_python_chains_descriptors() -> None:
    class Chained:
        @classmethod
        @tiered_cache(ttl_l2=None)
        def make(cls, name: str) -> str:
            return f"{cls.__name__}:{name}"

    assert Chained.make("a") == "Chained:a"
    Chained.make.cache_invalidate("a")
    assert not Chained.make.cache_contains("a")


def test_tiered_cache_under_a_classmethod_still_calls_on_every_python() -> None:
    class Inner:
        @classmethod
        @tiered_cache(ttl_l2=None)
        def make(cls, name: str) -> str:
            return f"{cls.__name__}:{name}"

    assert Inner.make("a") == Inner().make("a") == "Inner:a"


def test_staticmethods_in_either_order_take_their_arguments_as_they_are() -> None:
    assert Stored.static("ab") == Stored("eu").static("ab") == "abab"
    assert Stored("eu").static.cache_contains("ab")
    Stored("eu").static.cache_invalidate("ab")
    assert not Stored.static.cache_contains("ab")
    assert Stored.static_inner("ab") == Stored("eu").static_inner("ab") == "ababab"
    assert Stored.static_inner.cache_contains("ab")


# -- what a method is to the tools users bring ------------------------------------------------


def test_bound_methods_compare_hash_and_print_as_bound_methods_do() -> None:
    one, two = Stored("eu"), Stored("eu")
    assert one.lookup == one.lookup and hash(one.lookup) == hash(one.lookup)
    assert one.lookup != two.lookup
    assert one.lookup.__self__ is one and one.lookup.__func__ is Stored.lookup
    assert "Stored.lookup" in repr(one.lookup) and "Stored('eu')" in repr(one.lookup)


def test_signatures_docstrings_and_coroutine_functions_are_the_method_s() -> None:
    assert str(inspect.signature(Stored.lookup)) == "(self, name: 'str') -> 'str'"
    assert str(inspect.signature(Stored("eu").lookup)) == "(name: 'str') -> 'str'"
    assert Stored("eu").lookup.__doc__ == "Find ``name`` in this region."
    assert Stored.lookup.__name__ == "lookup" and Stored("eu").lookup.__name__ == "lookup"
    assert inspect.iscoroutinefunction(Stored("eu").fetch)
    assert inspect.iscoroutinefunction(Stored.fetch)
    assert not inspect.iscoroutinefunction(Stored("eu").lookup)


def test_methods_pickle_by_reference() -> None:
    # (our own bytes, just made)
    assert pickle.loads(pickle.dumps(Stored.lookup)) is Stored.lookup  # noqa: S301
    revived = pickle.loads(pickle.dumps(Stored("eu").lookup))  # noqa: S301
    assert revived("a") == "eu/a" and revived.__func__ is Stored.lookup


def test_autospec_drops_self_as_for_a_plain_method() -> None:
    fake = mock.create_autospec(Stored, instance=True)
    fake.lookup("a")
    fake.lookup.assert_called_once_with("a")
    with pytest.raises(TypeError):
        fake.lookup("a", "extra")


def test_patching_the_method_on_the_class_or_an_instance() -> None:
    repo = Stored("eu")
    with mock.patch.object(Stored, "lookup", return_value="patched"):
        assert repo.lookup("a") == "patched"
    assert repo.lookup("a") == "eu/a"
    repo.lookup = lambda name: "own"  # type: ignore[method-assign]
    assert repo.lookup("a") == "own"


def test_a_copied_instance_binds_the_copy() -> None:
    original = Stored("eu")
    duplicate = copy.copy(original)
    duplicate.region = "us"
    assert duplicate.lookup("a") == "us/a" and duplicate.runs == 1 and original.runs == 0
    assert duplicate.lookup.__self__ is duplicate


def test_any_name_for_the_first_parameter_binds() -> None:
    class Odd:
        def __cache_key__(self) -> str:
            return "odd"

        @tiered_cache(ttl_l2=None)
        def lookup(this, name: str) -> str:  # (not self: the point of the test)
            return name

        @tiered_cache(ttl_l2=None)
        def spread(*args: Any) -> int:
            return len(args)

    odd = Odd()
    assert odd.lookup("a") == "a"
    odd.lookup.cache_invalidate("a")
    assert not odd.lookup.cache_contains("a")
    assert odd.spread(1, 2) == 3
    assert str(inspect.signature(odd.spread)) == "(*args: 'Any') -> 'int'"


# -- an async cache_invalidate/cache_clear/cache_set not awaited is not a no-op ---------------


def async_counter(tiers: dict[str, Any]) -> Any:
    runs: list[str] = []

    @tiered_cache(**tiers)
    async def load(key: str) -> str:
        runs.append(key)
        return f"v{len(runs)}"

    load.runs = runs  # type: ignore[attr-defined]
    return load


@pytest.mark.asyncio
async def test_an_invalidation_not_awaited_still_drops_the_entry(tiers: dict[str, Any]) -> None:
    load = async_counter(tiers)
    assert await load("a") == "v1"
    load.cache_invalidate("a")  # forgotten await: was a no-op and a "never awaited" warning
    assert load.cache_info().currsize == 0  # L1's part is done before the call returns...
    await settled()
    assert not await load.cache_contains("a")  # ...Redis's in a task the loop keeps
    assert await load("a") == "v2"


@pytest.mark.asyncio
async def test_a_clear_and_a_set_not_awaited_still_happen(tiers: dict[str, Any]) -> None:
    load = async_counter(tiers)
    await load("a")
    load.cache_clear()
    assert load.cache_info().currsize == 0
    load.cache_set("planted", "b")
    await settled()
    assert not await load.cache_contains("a")
    assert await load("b") == "planted" and load.runs == ["a"]


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
async def test_a_set_started_after_a_clear_reaches_redis_after_it_however_slow_the_clear(
    l2: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each starts a task: were they to race, the set would land first and be cleared.

    The clear's first command is made the slower one (as it was, by chance, on redis-py 7.4
    with hiredis); the set must still come after it, in L1 and in Redis.
    """
    from tiercache._l2.stores import AsyncStore  # noqa: PLC0415

    client_for(request, l2)
    original = AsyncStore.raise_generation

    async def slow_raise(self: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncStore, "raise_generation", slow_raise)
    load = async_counter({})
    await load("a")
    load.cache_clear()
    load.cache_set("planted", "b")
    await settled()
    assert await load.cache_get("b") == "planted"
    load.__tiercache__.l1.clear()  # (and in Redis: read there now)
    assert await load("b") == "planted" and load.runs == ["a"]


@pytest.mark.asyncio
async def test_not_awaited_invalidation_reaches_redis(request: pytest.FixtureRequest) -> None:
    client = client_for(request, "real_l2")
    load = async_counter({})
    await load("a")
    try:
        stored = client.get(load.cache_key("a"))
        assert stored is not None
        load.cache_invalidate("a")
        await settled()
        assert client.get(load.cache_key("a")) != stored  # (a tombstone: see invalidation.md)
        assert await load("a") == "v2"  # L1 had dropped it: this read Redis, and missed
    finally:
        client.close()


def test_async_cache_methods_run_from_sync_code_with_no_loop(tiers: dict[str, Any]) -> None:
    load = async_counter(tiers)
    assert asyncio.run(load("a")) == "v1"
    load.cache_invalidate("a")  # no loop running: done here, to the end
    assert not asyncio.run(load.cache_contains("a"))
    asyncio.run(load.cache_set("planted", "a"))  # and as documented, through asyncio.run
    assert asyncio.run(load("a")) == "planted"
    asyncio.run(load.cache_clear())
    assert asyncio.run(load("a")) == "v2"


@pytest.mark.asyncio
async def test_async_cache_methods_await_as_coroutines_do(tiers: dict[str, Any]) -> None:
    load = async_counter(tiers)
    await load("a"), await load("b")
    await asyncio.gather(load.cache_invalidate("a"), load.cache_set("planted", "b"))
    assert await load.cache_get("b") == "planted" and not await load.cache_contains("a")
    await asyncio.create_task(load.cache_clear())  # type: ignore[arg-type]
    assert not await load.cache_contains("b")
    assert await asyncio.wait_for(load.cache_invalidate("b"), 5) is None


def test_cache_methods_bear_their_own_names_sync_and_async() -> None:
    # (A traceback or a profiler shows `cache_get`, whichever kind of function it belongs to.)
    @tiered_cache(ttl_l2=None)
    def lookup(key: str) -> str:
        return key

    @tiered_cache(ttl_l2=None)
    async def alookup(key: str) -> str:
        return key

    names = ("cache_invalidate", "cache_clear", "cache_get", "cache_contains", "cache_set", "cache_warm")
    for wrapper in (lookup, alookup, Stored("eu").lookup):
        for name in names:
            assert getattr(wrapper, name).__name__ == name, (wrapper, name)
