"""Hit rates per tier on a skewed (Zipf 1.0) key stream, for each L1 policy, through the decorator."""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass

from tiercache import tiered_cache


@dataclass
class HitRates:
    policy: str
    l1: float
    l2: float
    combined: float


def zipf_stream(keys: int, requests: int, seed: int = 42) -> list[int]:
    """Return ``requests`` keys drawn with probability proportional to 1/rank."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(keys)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(requests)]


def hit_rates(stream: list[int], policy: str, l1_entries: int = 1000) -> HitRates:
    """Feed ``stream`` to a cached function whose L2 outlives the run; return its rates."""
    runs: list[int] = []

    @tiered_cache(
        ttl_l1=3600, ttl_l2=3600, max_entries=l1_entries, l1_policy=policy, name=f"bench.zipf.{policy}"
    )
    def lookup(key: int) -> int:
        runs.append(1)
        return key

    for key in stream:
        lookup(key)
    stats = lookup.cache_stats()
    if len(runs) != len(set(stream)):
        raise AssertionError(f"{policy}: ran {len(runs)} times for {len(set(stream))} distinct keys")
    return HitRates(policy, stats.l1_hit_rate, stats.l2_hit_rate, stats.combined_hit_rate)


def rows(keys: int = 100_000, requests: int = 200_000) -> list[HitRates]:
    stream = zipf_stream(keys, requests)
    return [hit_rates(stream, policy) for policy in ("lru", "tinylfu")]
