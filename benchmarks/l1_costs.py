"""What the L1 hit path's bookkeeping costs: stats counting (time) and entries (memory)."""

from __future__ import annotations

import contextlib
import functools
import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import cachetools

from benchmarks.harness import Scenario, Subject, ran_once, timed_sync
from tiercache import tiered_cache
from tiercache._decorator import decorator as _decorator
from tiercache._decorator import fastpath as _fastpath


@contextlib.contextmanager
def hits_uncounted() -> Iterator[None]:
    """Decorate without the fast path's hit counting (the private switch exists for this)."""
    original = _decorator.generate
    _decorator.generate = functools.partial(_fastpath.generate, count_hits=False)
    try:
        yield
    finally:
        _decorator.generate = original


def counting_body(runs: list[int]) -> Callable[..., tuple[int, str]]:
    def body(a: int, b: str = "x") -> tuple[int, str]:
        runs.append(1)
        return a, b

    return body


def stats_cost_scenario() -> Scenario:
    subjects = []
    for label in ("tiercache, hits uncounted", "tiercache (stats on)"):
        runs: list[int] = []
        with hits_uncounted() if "uncounted" in label else contextlib.nullcontext():
            cached = tiered_cache(ttl_l1=600, ttl_l2=None, name=f"bench.{len(subjects)}")(counting_body(runs))
        subjects.append(Subject(label, timed_sync('f(1, b="y")', {"f": cached}), ran_once(runs, label)))
    return Scenario(
        "cost of stats on an L1 hit",
        "tiercache, hits uncounted",
        subjects,
        operations=200_000,
        target="a few %",
        ours="tiercache (stats on)",
    )


def bytes_per_entry(decorate: Callable[[Callable[[str], Any]], Callable[[str], Any]], entries: int) -> float:
    """Return the memory a cache holds per entry beyond its keys and values (which pre-exist)."""
    keys = [f"key-{i:06d}" for i in range(entries)]
    values = [object() for _ in range(entries)]
    by_key = dict(zip(keys, values, strict=True))
    cached = decorate(lambda key: by_key[key])
    cached(keys[0])  # build whatever the first call builds lazily
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key in keys[1:]:
        cached(key)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (entries - 1)


def memory_rows(entries: int = 20_000) -> list[tuple[str, float]]:
    return [
        ("functools.lru_cache", bytes_per_entry(functools.lru_cache(maxsize=entries), entries)),
        (
            "tiercache (L1)",
            bytes_per_entry(tiered_cache(ttl_l2=None, max_entries=entries, name="bench.mem"), entries),
        ),
        (
            "cachetools.TTLCache",
            bytes_per_entry(cachetools.cached(cachetools.TTLCache(entries, 600)), entries),
        ),
    ]
