"""Helpers for testing code that uses tiercache (the pytest plugin's fixtures live in ``pytest_plugin``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tiercache._core.stats import CacheStats
from tiercache._core.tiers import live_tiers

__all__ = ["assert_cache_stats", "forget_local_caches"]

_RATES = ("l1_hit_rate", "l2_hit_rate", "combined_hit_rate")
#: The counters a failure message shows, whatever was asked.
_SHOWN = ("calls", "l1_hits", "l2_hits", "misses", "coalesced", "stale_served", "errors", "l2_errors")
_FIELDS = tuple(field.name for field in dataclasses.fields(CacheStats) if field.name != "function") + _RATES


def assert_cache_stats(function: Any, /, **expected: Any) -> CacheStats:
    """Assert that ``function``'s stats hold the ``expected`` values; return the snapshot.

    Any field of ``CacheStats`` can be named (``l1_hits=1, misses=1``), and the rates too;
    rates and other floats compare to within 1e-9. The failure message lists each value that
    differs and the function's counters, so a failing test says what the cache did.
    """
    __tracebackhide__ = True  # pytest: a failure points at the caller's line, not at this one
    snapshot = getattr(function, "cache_stats", None)
    if not callable(snapshot):
        raise TypeError(
            f"assert_cache_stats: expected a @tiered_cache function, not {type(function).__name__}"
        )
    unknown = sorted(set(expected) - set(_FIELDS))
    if unknown:
        raise TypeError(f"assert_cache_stats: unknown stat {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    stats: CacheStats = snapshot()
    wrong = {
        name: getattr(stats, name)
        for name, value in expected.items()
        if not _same(getattr(stats, name), value)
    }
    if wrong:
        lines = [f"cache stats of {stats.function} are not as expected:"]
        lines += [f"  {name}: expected {expected[name]!r}, got {actual!r}" for name, actual in wrong.items()]
        lines.append("  all counters: " + " ".join(f"{name}={getattr(stats, name)}" for name in _SHOWN))
        raise AssertionError("\n".join(lines))
    return stats


def _same(actual: object, expected: object) -> bool:
    if isinstance(actual, float) or isinstance(expected, float):
        return isinstance(expected, (int, float)) and math.isclose(actual, expected, abs_tol=1e-9)  # type: ignore[arg-type]
    return actual == expected


def forget_local_caches() -> None:
    """Empty every L1 and zero every counter, as a newly started process has them.

    Cached functions and adapters alike (``MultiTierCache``, ``MultiTierCacheAdapter``, the
    Django backend): an adapter made at import time would otherwise carry one test's entries
    into the next. L2 keeps its entries, so the next call reads what "another process" wrote.
    """
    for cache in live_tiers():
        cache.forget_local()
