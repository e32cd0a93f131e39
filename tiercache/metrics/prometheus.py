"""Prometheus export (``pip install 'tiercache[prometheus]'``): a collector of every cached function.

``prometheus_client.REGISTRY.register(TiercacheCollector())`` (see docs/metrics.md). Counters
carry a ``function`` label (hits also a ``tier`` label, ``l1`` or ``l2``); the call
latency is a histogram, ``tiercache_call_duration_seconds``. The figures are read from the same
counters as ``cache_stats()`` at scrape time, so exporting costs nothing on the call path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tiercache.metrics._source import COUNTERS
from tiercache.metrics._workers import WorkerFiles, sums_here

__all__ = ["DEFAULT_BUCKETS", "TiercacheCollector"]

#: Upper bounds (seconds) of the latency histogram: from an L1 hit to a slow computation.
DEFAULT_BUCKETS = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
    1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class TiercacheCollector(Collector):
    """Expose every live ``@tiered_cache`` function's counters and latency to Prometheus.

    Behind several worker processes (gunicorn, uvicorn ``--workers``), set
    ``PROMETHEUS_MULTIPROC_DIR`` as prometheus_client's multiprocess mode has it (or pass
    ``multiprocess_dir``) and register the collector in every worker: each scrape then reports
    the sum over all of them (see ``_workers``). ``multiprocess_dir=False``: this process only.
    """

    def __init__(
        self,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        prefix: str = "tiercache",
        *,
        multiprocess_dir: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets or buckets[0] <= 0:
            raise ValueError(
                f"TiercacheCollector: buckets must be ascending positive seconds, not {buckets!r}"
            )
        self._buckets = tuple(buckets)
        self._bounds_ns = [round(bound * 1e9) for bound in buckets]
        self._prefix = prefix
        if multiprocess_dir is None:
            multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or False
        self._workers = (
            WorkerFiles(multiprocess_dir, self._bounds_ns) if multiprocess_dir is not False else None
        )

    def collect(self) -> Iterator[Metric]:
        """Read every cached function's stats (of every worker) and yield them as metric families."""
        p = self._prefix
        counters = {
            field: CounterMetricFamily(f"{p}_{field}", text, labels=["function"]) for field, text in COUNTERS
        }
        hits = CounterMetricFamily(f"{p}_hits", "Calls served from a cache tier", labels=["function", "tier"])
        size = GaugeMetricFamily(f"{p}_l1_entries", "Entries in the function's L1", labels=["function"])
        degraded = GaugeMetricFamily(
            f"{p}_degraded", "1 while the function's Redis is skipped (circuit open)", labels=["function"]
        )
        latency = HistogramMetricFamily(
            f"{p}_call_duration_seconds",
            "Latency of calls of the cached function",
            labels=["function"],
            unit="",
        )
        sums = self._workers.sums() if self._workers is not None else sums_here(self._bounds_ns)
        for function, total in sums.items():
            labels = [function]
            for field, family in counters.items():
                family.add_metric(labels, total.counters[field])
            hits.add_metric([function, "l1"], total.l1_hits)
            hits.add_metric([function, "l2"], total.l2_hits)
            size.add_metric(labels, total.l1_entries)
            degraded.add_metric(labels, 1.0 if total.degraded else 0.0)
            buckets = [(_le(bound), count) for bound, count in zip(self._buckets, total.buckets, strict=True)]
            buckets.append(("+Inf", total.count))
            latency.add_metric(labels, buckets, total.total_ns / 1e9)
        yield from counters.values()
        yield from (hits, size, degraded, latency)

    def close(self) -> None:
        """Stop writing this process's figures for other workers (after writing them once more)."""
        if self._workers is not None:
            self._workers.close()


def _le(bound: float) -> str:
    return repr(float(bound))
