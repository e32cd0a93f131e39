"""L1 hits whose argument is a dict (10, 100, 1,000 items), the cost of ``copy=``, recursion depth."""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from typing import Any

import cachetools

from benchmarks.harness import Scenario, Subject, ran_once, timed_sync
from tiercache import tiered_cache

Decorator = Callable[[Callable[[int], int]], Callable[[int], int]]


def _counting(runs: list[int], result: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def body(argument: Any) -> Any:
        runs.append(1)
        return result(argument)

    return body


def dict_argument(items: int) -> Scenario:
    """An L1 hit with a dict argument, beside cachetools keyed by ``frozenset(d.items())``."""
    filters = {f"field{i}": i for i in range(items)}
    subjects = []
    for label in ("cachetools, frozenset key", "tiercache"):
        runs: list[int] = []
        body = _counting(runs, len)
        if label == "tiercache":
            cached: Callable[..., Any] = tiered_cache(ttl_l2=None, name=f"bench.dict{items}")(body)
        else:
            by_items = cachetools.cached(cachetools.LRUCache(1000), key=lambda f: frozenset(f.items()))
            cached = by_items(body)
        subjects.append(
            Subject(label, timed_sync("f(d)", {"f": cached, "d": filters}), ran_once(runs, label))
        )
    return Scenario(
        f"L1 hit, a dict argument of {items:,} items",
        "cachetools, frozenset key",
        subjects,
        operations=max(200_000 // items, 200),
        target="<= 2.0x cachetools",
        limit=2.0,
    )


def copy_cost() -> Scenario:
    """What ``copy=True`` adds to an L1 hit whose value is a small dict."""
    value = {"user": "ann", "roles": ["reader", "writer"], "quota": 10}
    subjects = []
    for label, option in (("tiercache", False), ("tiercache, copy=True", True)):
        runs: list[int] = []
        body = _counting(runs, lambda user: copy.deepcopy(value))
        cached = tiered_cache(ttl_l2=None, copy=option, name=f"bench.copy.{option}")(body)
        subjects.append(Subject(label, timed_sync('f("ann")', {"f": cached}), ran_once(runs, label)))
    return Scenario(
        "cost of copy=True on an L1 hit (a 3-key dict)",
        "tiercache",
        subjects,
        operations=100_000,
        target="reported",
        ours="tiercache, copy=True",
    )


def _recursive(decorate: Decorator) -> Callable[[int], int]:
    def depth(n: int) -> int:
        return 0 if n == 0 else cached(n - 1) + 1

    cached = decorate(depth)
    return cached


def _deepest(decorate: Decorator) -> int:
    low, high = 1, sys.getrecursionlimit()
    while low < high:
        middle = (low + high + 1) // 2
        try:
            _recursive(decorate)(middle)
            low = middle
        except RecursionError:
            high = middle - 1
    return low


def recursion_depths() -> list[tuple[str, int]]:
    """Return how deep a memoized recursive function goes, under the default recursion limit."""
    return [
        ("functools.lru_cache", _deepest(functools.lru_cache(maxsize=None))),
        ("tiercache (L1)", _deepest(tiered_cache(ttl_l2=None, max_entries=100_000, name="bench.depth"))),
    ]
