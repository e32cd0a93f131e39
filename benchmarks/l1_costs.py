"""What the L1 hit path's bookkeeping costs: stats counting (time) and entries (memory)."""

from __future__ import annotations

import functools
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import cachetools

from tiercache import tiered_cache


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
