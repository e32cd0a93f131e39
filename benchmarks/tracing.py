"""What tracing costs: an L1 hit and an L2 hit with tiercache's spans off and on.

Off is the state of an application that does not trace (the global tracer provider is the
API's default): tiercache asks for no tracer. On, spans go to an SDK TracerProvider with one
processor that drops them (the SDK's own cost of making a span is in the figure; exporting is
not). Rounds alternate off and on, in turns, over the same function.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from tiercache import tiered_cache
from tiercache.metrics.otel import trace


@dataclass(frozen=True)
class TracingRow:
    tier: str
    off_ns: float
    on_ns: float
    spans_per_call: float


class _Dropping(SpanProcessor):
    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def _per_call_ns(call: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / calls


def rows(repeats: int = 9) -> list[TracingRow]:
    provider = TracerProvider()
    dropping = _Dropping()
    provider.add_span_processor(dropping)
    found = []
    for tier, ttl_l1, calls in (("L1 hit", 600.0, 200_000), ("L2 hit (L1 off)", None, 2_000)):

        @tiered_cache(ttl_l1=ttl_l1, name=f"bench.tracing.{tier.split()[0]}")
        def lookup(user_id: int) -> dict[str, int]:
            return {"user": user_id}

        lookup(42)  # the one miss
        samples: dict[bool, list[float]] = {False: [], True: []}
        spans = 0
        try:
            for repeat in range(repeats):
                for on in (False, True) if repeat % 2 else (True, False):
                    trace(provider if on else None)
                    before = dropping.ended
                    samples[on].append(_per_call_ns(lambda: lookup(42), calls))
                    spans += dropping.ended - before
        finally:
            trace(None)
        if lookup.cache_stats().misses != 1:
            raise AssertionError("tracing benchmark: the function missed more than once")
        found.append(
            TracingRow(
                tier,
                statistics.median(samples[False]),
                statistics.median(samples[True]),
                spans / (repeats * calls),
            )
        )
    provider.shutdown()
    return found


def table(found: list[TracingRow]) -> list[str]:
    lines = [
        "| hit | tracing off (ns) | tracing on (ns) | ratio | spans per call |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in found:
        lines.append(
            f"| {row.tier} | {row.off_ns:,.0f} | {row.on_ns:,.0f} | {row.on_ns / row.off_ns:.2f}x"
            f" | {row.spans_per_call:.2f} |"
        )
    return lines


if __name__ == "__main__":  # python -m benchmarks.tracing, against TIERCACHE_REDIS_URL
    print("\n".join(table(rows())))
