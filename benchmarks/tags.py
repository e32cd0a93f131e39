"""What tags cost: on an L1 hit, on an L2 hit, and to invalidate a tag 10,000 entries carry.

A hit of a tagged function is timed beside the same function without tags, interleaved, in
one run: fixed tags (``tags=["catalog"]``) and tags from the arguments (``tags=lambda``). An L1
hit does no tag work at all (the fast path is the same), an L2 hit reads the tags' tokens in the
same MGET as the entry. Invalidating: 10,000 entries of one function carry the tag, in L1 and
in Redis; ``invalidate_tags()`` is timed, then one call checks they are all misses.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tiercache
from tiercache import tiered_cache

ENTRIES = 10_000


@dataclass(frozen=True)
class TagCostRow:
    tier: str
    untagged_ns: float
    fixed_ns: float
    from_arguments_ns: float


def _per_call_ns(call: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / calls


def _functions(ttl_l1: float | None, label: str) -> dict[str, Any]:
    def body(user_id: int) -> dict[str, int]:
        return {"user": user_id}

    return {
        "untagged": tiered_cache(ttl_l1=ttl_l1, name=f"bench.tags.{label}.none")(body),
        "fixed": tiered_cache(ttl_l1=ttl_l1, name=f"bench.tags.{label}.fixed", tags=["catalog"])(body),
        "from arguments": tiered_cache(
            ttl_l1=ttl_l1, name=f"bench.tags.{label}.args", tags=lambda user_id: [f"user:{user_id}"]
        )(body),
    }


def hit_rows(repeats: int = 9) -> list[TagCostRow]:
    rows = []
    for tier, ttl_l1, calls in (("L1 hit", 600.0, 200_000), ("L2 hit (L1 off)", None, 2_000)):
        functions = _functions(ttl_l1, tier.split()[0])
        for function in functions.values():
            function(42)  # the one miss
        samples: dict[str, list[float]] = {name: [] for name in functions}
        names = list(functions)
        for repeat in range(repeats):
            # Each round in another order: whichever runs first in a round is measured slower.
            for name in names[repeat % 3 :] + names[: repeat % 3]:
                samples[name].append(_per_call_ns(lambda f=functions[name]: f(42), calls))
        for name, function in functions.items():
            stats = function.cache_stats()
            if stats.misses != 1:
                raise AssertionError(f"tags benchmark: {name} missed {stats.misses} times")
        median = {name: statistics.median(values) for name, values in samples.items()}
        rows.append(TagCostRow(tier, median["untagged"], median["fixed"], median["from arguments"]))
    return rows


@dataclass(frozen=True)
class InvalidationRow:
    entries: int
    invalidate_ms: float  # invalidate_tags() of the tag they all carry
    clear_ms: float  # cache_clear() of a function holding as many, for comparison
    misses_after: int  # calls that recomputed afterwards, of ENTRIES


def invalidation_row() -> InvalidationRow:
    @tiered_cache(max_entries=ENTRIES, name="bench.tags.bulk", tags=lambda n: ["bulk", f"n:{n}"])
    def tagged(n: int) -> int:
        return n

    @tiered_cache(max_entries=ENTRIES, name="bench.tags.bulk-clear")
    def cleared(n: int) -> int:
        return n

    for n in range(ENTRIES):
        tagged(n)
        cleared(n)
    started = time.perf_counter()
    tiercache.invalidate_tags("bulk")
    invalidate_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    cleared.cache_clear()
    clear_ms = (time.perf_counter() - started) * 1000
    before = tagged.cache_stats().misses
    for n in range(ENTRIES):
        tagged(n)
    return InvalidationRow(ENTRIES, invalidate_ms, clear_ms, tagged.cache_stats().misses - before)


def hit_table(rows: list[TagCostRow]) -> list[str]:
    lines = [
        "| hit | no tags (ns) | tags=[...] (ns) | ratio | tags=lambda (ns) | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        fixed, args = row.fixed_ns / row.untagged_ns, row.from_arguments_ns / row.untagged_ns
        lines.append(
            f"| {row.tier} | {row.untagged_ns:,.0f} | {row.fixed_ns:,.0f} | {fixed:.2f}x"
            f" | {row.from_arguments_ns:,.0f} | {args:.2f}x |"
        )
    return lines


if __name__ == "__main__":  # python -m benchmarks.tags, against TIERCACHE_REDIS_URL
    print("\n".join(hit_table(hit_rows())))
    print(invalidation_row())
