"""The latency histogram and the stats snapshot's definitions."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.histograms import bucket_of
from tiercache._core.stats import CacheStats, LatencyHistogram


@given(st.integers(min_value=0, max_value=10**13))
def test_every_duration_falls_in_a_bucket_no_wider_than_a_sixteenth(ns: int) -> None:
    """record() counts a duration in a bucket whose bounds hold it, at most 1/16 wide."""
    low, high = LatencyHistogram.bounds(bucket_of(ns))
    assert low <= ns < high
    assert high - low <= max(1, low / 16)


@given(st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=200))
def test_quantiles_are_within_bucket_error_of_the_exact_ones(samples: list[int]) -> None:
    histogram = LatencyHistogram()
    for ns in samples:
        histogram.record(ns)
    ordered = sorted(samples)
    for q in (0.5, 0.99):
        exact = ordered[max(0, -(-int(q * len(ordered) * 1000) // 1000) - 1)]
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.07, abs=1)
    assert histogram.mean() == pytest.approx(sum(samples) / len(samples))


def test_weights_count_as_that_many_observations() -> None:
    histogram = LatencyHistogram()
    histogram.record(1000, weight=99)
    histogram.record(1_000_000)
    assert histogram.quantile(0.5) == pytest.approx(1000, rel=0.04)
    assert histogram.quantile(0.995) == pytest.approx(1_000_000, rel=0.04)
    assert histogram.mean() == pytest.approx((99 * 1000 + 1_000_000) / 100)


def stats(**counts: int) -> CacheStats:
    numbers = {f.name for f in dataclasses.fields(CacheStats) if f.type == "int"}
    return CacheStats(
        function="f",
        degraded=False,
        coherent=False,
        degraded_seconds=0.0,
        avg_latency_ms=0.0,
        p50_ms=0.0,
        p99_ms=0.0,
        **{**dict.fromkeys(numbers, 0), **counts},
    )


def test_rates_follow_their_definitions() -> None:
    s = stats(calls=10, l1_hits=6, l2_hits=2, misses=2, l2_lookups=4)
    assert s.l1_hit_rate == 0.6
    assert s.l2_hit_rate == 0.5  # of the calls that asked L2
    assert s.combined_hit_rate == 0.8
    assert s.as_dict()["combined_hit_rate"] == 0.8 and s.as_dict()["calls"] == 10


def test_rates_of_nothing_are_zero() -> None:
    s = stats()
    assert (s.l1_hit_rate, s.l2_hit_rate, s.combined_hit_rate) == (0.0, 0.0, 0.0)
