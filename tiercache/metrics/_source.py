"""What both exporters read: each live cached function's name, stats and latency histogram."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tiercache._core.stats import CacheStats, LatencyHistogram
from tiercache._decorator import registry as _registry

__all__ = ["COUNTERS", "Reading", "readings"]

#: Counters exported one metric each, named after their CacheStats field: (field, description).
COUNTERS = (
    ("calls", "Calls of the cached function"),
    ("misses", "Calls that ran the function"),
    ("coalesced", "Calls that shared a concurrent call's run"),
    ("stale_served", "Calls answered with a stale value"),
    ("errors", "Calls that raised the function's exception"),
    ("l2_errors", "Failed L2 (Redis) operations"),
    ("l2_corrupt", "L2 entries that were damaged or not tiercache's"),
    ("l2_rejected", "L2 entries refused for a bad signature or their size"),
    ("refresh_errors", "Background refreshes of stale values that raised"),
    ("l2_writes_refused", "Values Redis refused because their entry was invalidated meanwhile"),
    ("l2_saturated", "Calls that skipped L2 because every pooled connection stayed busy"),
    ("not_cached", "Results kept out of both tiers by cache_if"),
    ("refreshes_ahead", "Background refreshes started by hits near the end of an entry's life"),
    ("timeouts", "Calls that stopped waiting for the function (timeout, hard_timeout)"),
    ("invalidations", "Entries invalidated and clears made by this process"),
)


@dataclass(frozen=True)
class Reading:
    """One function's stats and latency histogram, read together."""

    function: str
    stats: CacheStats
    latency: LatencyHistogram


def readings() -> Iterator[Reading]:
    """Yield a reading of every live cached function."""
    for name, cache in _registry.named_caches():
        yield Reading(name, cache.snapshot(), cache.stats.latency())
