"""L1 hits: ``f(1, b="y")`` sync and ``await g(1, b="y")`` async, against in-process peers."""

from __future__ import annotations

import asyncio
import functools
import operator

import async_lru
import cachebox
import cachetools

from benchmarks.harness import Scenario, Subject, ran_once, timed_async, timed_sync
from tiercache import tiered_cache


def sync_scenario() -> Scenario:
    subjects = []

    def subject(label: str, decorate: object) -> None:
        runs: list[int] = []

        def body(a: int, b: str = "x") -> tuple[int, str]:
            runs.append(1)
            return a, b

        cached = decorate(body)  # type: ignore[operator]
        subjects.append(Subject(label, timed_sync('f(1, b="y")', {"f": cached}), ran_once(runs, label)))

    subject("functools.lru_cache", functools.lru_cache(maxsize=1000))
    subject("tiercache (L1, stats on)", tiered_cache(ttl_l1=600, ttl_l2=None))
    subject("cachetools.LRUCache", cachetools.cached(cachetools.LRUCache(1000)))
    subject("cachetools.TTLCache", cachetools.cached(cachetools.TTLCache(1000, 600)))
    subject("cachebox.LRUCache", cachebox.cached(cachebox.LRUCache(1000)))
    return Scenario(
        'sync L1 hit, f(1, b="y"), stats on',
        "functools.lru_cache",
        subjects,
        operations=200_000,
        target="<= 2.0x lru_cache",
        ours="tiercache (L1, stats on)",
        limit=2.0,
    )


def async_scenario(loop: asyncio.AbstractEventLoop) -> Scenario:
    subjects = []

    def subject(label: str, decorate: object) -> None:
        runs: list[int] = []

        async def body(a: int, b: str = "x") -> tuple[int, str]:
            runs.append(1)
            return a, b

        cached = decorate(body)  # type: ignore[operator]
        subjects.append(
            Subject(label, timed_async('await g(1, b="y")', {"g": cached}, loop), ran_once(runs, label))
        )

    subject("async_lru.alru_cache", async_lru.alru_cache(maxsize=1000))
    subject("tiercache (L1, stats on)", tiered_cache(ttl_l1=600, ttl_l2=None))
    subject("cachebox.cached (async)", cachebox.cached(cachebox.LRUCache(1000)))
    return Scenario(
        'async L1 hit, await g(1, b="y"), stats on',
        "async_lru.alru_cache",
        subjects,
        operations=100_000,
        target="<= 0.5x alru_cache",
        ours="tiercache (L1, stats on)",
        limit=0.5,
    )


def method_scenario() -> Scenario:
    """A cached method read from an instance: what binding ``self`` (and its cache_*) costs."""
    subjects = []

    def subject(label: str, decorate: object) -> None:
        runs: list[int] = []

        class Service:
            def __init__(self) -> None:
                self.cache: dict[object, object] = {}  # (cachetools.cachedmethod's)

            def __cache_key__(self) -> str:  # (tiercache's key for self)
                return "service"

            def body(self, a: int, b: str = "x") -> tuple[int, str]:
                runs.append(1)
                return a, b

            lookup = decorate(body)  # type: ignore[operator]  # (in the body: __set_name__ runs)

        timed = timed_sync('o.lookup(1, b="y")', {"o": Service()})
        subjects.append(Subject(label, timed, ran_once(runs, label)))

    subject("functools.lru_cache", functools.lru_cache(maxsize=1000))
    subject("tiercache (L1, stats on)", tiered_cache(ttl_l1=600, ttl_l2=None, ignore="self"))
    subject("tiercache, keyed by __cache_key__", tiered_cache(ttl_l1=600, ttl_l2=None))
    subject("cachetools.cachedmethod", cachetools.cachedmethod(operator.attrgetter("cache")))
    return Scenario(
        'sync L1 hit of a method, o.lookup(1, b="y"), stats on',
        "functools.lru_cache",
        subjects,
        operations=200_000,
        target="reported: binding self and its cache_* methods costs a __get__",
        ours="tiercache (L1, stats on)",
    )


def scenarios(loop: asyncio.AbstractEventLoop) -> list[Scenario]:
    return [sync_scenario(), method_scenario(), async_scenario(loop)]
