"""Which bucket of the latency histogram a duration counts in."""

from __future__ import annotations

from tiercache._core.stats import LatencyHistogram


def bucket_of(ns: int) -> int:
    """Return the index of the one bucket that recording ``ns`` counts in."""
    histogram = LatencyHistogram()
    histogram.record(ns)
    (index,) = [i for i, count in enumerate(histogram.counts) if count]
    return index
