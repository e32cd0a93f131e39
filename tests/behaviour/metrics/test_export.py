"""Metrics export: the Prometheus exposition text and OpenTelemetry readings match cache_stats()."""

from __future__ import annotations

import gc
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.histograms import bucket_of
from tiercache import tiered_cache
from tiercache._core.stats import LatencyHistogram
from tiercache._decorator import registry as _registry
from tiercache.metrics.otel import instrument
from tiercache.metrics.prometheus import TiercacheCollector


def scrape(collector: TiercacheCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape a registry holding ``collector`` and parse the text, as Prometheus would."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def reading_name(function) -> str:
    """The name the readings give ``function`` (a square of an earlier test may still be alive,
    held by a traceback its client keeps: then this one is "metrics.square#2")."""
    return next(name for name, cache in _registry.named_caches() if cache is function.__tiercache__)


def workload():
    # An earlier test's square, garbage in a reference cycle, would otherwise go at the next
    # automatic collection, between a reading and reading_name(), and the names would shift.
    gc.collect()

    @tiered_cache(ttl_l1=60, ttl_l2=3600, name="metrics.square")
    def square(n: int) -> int:
        if n < 0:
            raise ValueError(n)
        return n * n

    for n in (1, 2, 1, 1, 3, 2):
        square(n)
    with pytest.raises(ValueError):
        square(-1)
    return square


def test_prometheus_counters_match_cache_stats(fake_l2):
    """Every counter in the exposition text equals the same figure of cache_stats()."""
    square = workload()
    samples = scrape(TiercacheCollector())
    stats = square.cache_stats()
    label = (("function", reading_name(square)),)
    assert samples[("tiercache_calls_total", label)] == stats.calls == 7
    assert samples[("tiercache_hits_total", (*label, ("tier", "l1")))] == stats.l1_hits == 3
    assert samples[("tiercache_hits_total", (*label, ("tier", "l2")))] == stats.l2_hits == 0
    assert samples[("tiercache_misses_total", label)] == stats.misses == 4
    assert samples[("tiercache_errors_total", label)] == stats.errors == 1
    for name in (
        "coalesced",
        "stale_served",
        "l2_errors",
        "l2_corrupt",
        "l2_rejected",
        "refresh_errors",
        "l2_writes_refused",
    ):
        assert samples[(f"tiercache_{name}_total", label)] == getattr(stats, name)
    assert samples[("tiercache_l1_entries", label)] == stats.l1_size == 3
    assert samples[("tiercache_degraded", label)] == 0


def test_prometheus_latency_histogram(isolated_settings, monkeypatch):
    """Calls that take 20 ms land between the 10 ms and 25 ms buckets; sum and count add up."""
    now_ns = [0]
    # Latency is read from perf_counter_ns: a clock that moves only when the function "works"
    # gives every call exactly 20 ms, however busy the machine is.
    monkeypatch.setattr(time, "perf_counter_ns", lambda: now_ns[0])

    @tiered_cache(ttl_l1=60, ttl_l2=None, name="metrics.slow")
    def slow(n: int) -> int:
        now_ns[0] += 20_000_000
        return n

    for n in range(5):
        slow(n)
    samples = scrape(TiercacheCollector())
    label = (("function", "metrics.slow"),)

    def bucket(le: str) -> float:
        return samples[("tiercache_call_duration_seconds_bucket", (*label, ("le", le)))]

    assert bucket("0.01") == 0
    assert bucket("0.025") == bucket("+Inf") == samples[("tiercache_call_duration_seconds_count", label)] == 5
    assert 0.1 <= samples[("tiercache_call_duration_seconds_sum", label)] < 0.125
    values = [bucket(repr(le)) for le in (1e-6, 1e-3, 0.01, 0.025, 0.05, 10.0)]
    assert values == sorted(values)  # cumulative


def test_collector_rejects_bad_buckets():
    """Buckets must be ascending positive seconds; the error names the collector."""
    with pytest.raises(ValueError, match="TiercacheCollector: buckets must be ascending"):
        TiercacheCollector(buckets=(0.1, 0.01))


def test_twins_get_numbered_names(isolated_settings):
    """Two live functions with one label are exported as label and label#2, as stats() names them."""
    made = []
    for _ in range(2):

        @tiered_cache(ttl_l1=60, ttl_l2=None, name="metrics.twin")
        def twin(n: int) -> int:
            return n

        twin(1)
        made.append(twin)
    samples = scrape(TiercacheCollector())
    assert samples[("tiercache_calls_total", (("function", "metrics.twin"),))] == 1
    assert samples[("tiercache_calls_total", (("function", "metrics.twin#2"),))] == 1


def test_otel_instruments_match_cache_stats(fake_l2):
    """The OpenTelemetry readings carry the same figures, with function (and tier) attributes,
    and the process's pid (behind several workers, one resource: their series stay apart)."""
    reader = InMemoryMetricReader()
    instrument(MeterProvider(metric_readers=[reader]))
    square = workload()
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = dict(point.attributes)
                    assert attributes.pop("process.pid") == os.getpid()  # (workers' series stay apart)
                    if attributes.pop("function") == reading_name(square):
                        points[(metric.name, tuple(sorted(attributes.items())))] = point.value
    stats = square.cache_stats()
    assert points[("tiercache.calls", ())] == stats.calls
    assert points[("tiercache.hits", (("tier", "l1"),))] == stats.l1_hits
    assert points[("tiercache.misses", ())] == stats.misses
    assert points[("tiercache.errors", ())] == stats.errors
    assert points[("tiercache.l1.entries", ())] == stats.l1_size
    assert points[("tiercache.call.duration", (("statistic", "p99"),))] == pytest.approx(stats.p99_ms / 1e3)


@given(
    st.lists(st.integers(0, 10**10), max_size=50), st.lists(st.integers(1, 10**10), min_size=1, max_size=8)
)
def test_cumulative_counts_match_a_direct_count(durations, bounds):
    """cumulative(b) counts exactly the observations whose bucket ends at or below b."""
    bounds = sorted(set(bounds))
    histogram = LatencyHistogram()
    for ns in durations:
        histogram.record(ns)
    expected = [
        sum(1 for ns in durations if LatencyHistogram.bounds(bucket_of(ns))[1] <= bound) for bound in bounds
    ]
    assert histogram.cumulative(bounds) == expected
    # and never more than the observations truly at or below each bound
    assert all(count <= sum(1 for ns in durations if ns <= b) for count, b in zip(expected, bounds))


def test_the_policy_counters_are_exported(fake_l2):
    @tiered_cache(ttl_l1=60, ttl_l2=None, cache_if=lambda n: n > 0, name="metrics.policy")
    def sign(n: int) -> int:
        return n

    sign(-1)
    sign(-2)
    sign(3)
    samples = scrape(TiercacheCollector())
    label = (("function", reading_name(sign)),)
    assert samples[("tiercache_not_cached_total", label)] == sign.cache_stats().not_cached == 2
    assert samples[("tiercache_refreshes_ahead_total", label)] == 0
    assert samples[("tiercache_timeouts_total", label)] == 0
