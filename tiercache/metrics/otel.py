"""OpenTelemetry export (``pip install 'tiercache[otel]'``): instruments per cached function, and spans.

``instrument()`` registers asynchronous instruments on a meter; the SDK calls them back at each
collection, so exporting costs nothing on the call path. Counters carry a ``function`` attribute
(hits also ``tier``). OpenTelemetry has no asynchronous histogram, so latency is exported as the
gauge ``tiercache.call.duration`` with a ``statistic`` attribute (``p50``, ``p99``, ``mean``),
from the histogram tiercache keeps anyway. Every observation carries ``process.pid``: behind
several worker processes exporting under one resource, each worker's series stay apart (a
backend sums them), where they would overwrite each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import TracerProvider

from tiercache._core import tracing
from tiercache.metrics._source import COUNTERS, Reading, readings

__all__ = ["instrument", "trace"]


def instrument(meter_provider: MeterProvider | None = None, prefix: str = "tiercache") -> None:
    """Register tiercache's instruments with ``meter_provider`` (default: the global one)."""
    meter = metrics.get_meter("tiercache", meter_provider=meter_provider)
    for field, text in COUNTERS:
        meter.create_observable_counter(
            f"{prefix}.{field}", callbacks=[_observe(_counter(field))], unit="{call}", description=text
        )
    meter.create_observable_counter(
        f"{prefix}.hits",
        callbacks=[
            _observe(lambda r: [(r.stats.l1_hits, {"tier": "l1"}), (r.stats.l2_hits, {"tier": "l2"})])
        ],
        unit="{call}",
        description="Calls served from a cache tier",
    )
    meter.create_observable_up_down_counter(
        f"{prefix}.l1.entries",
        callbacks=[_observe(lambda r: [(r.stats.l1_size, {})])],
        unit="{entry}",
        description="Entries in the function's L1",
    )
    meter.create_observable_gauge(
        f"{prefix}.call.duration",
        callbacks=[_observe(_durations)],
        unit="s",
        description="Latency of calls of the cached function (p50, p99, mean)",
    )


def _counter(field: str) -> Callable[[Reading], list[tuple[float, dict[str, str]]]]:
    return lambda reading: [(getattr(reading.stats, field), {})]


def _durations(reading: Reading) -> list[tuple[float, dict[str, str]]]:
    stats = reading.stats
    return [
        (stats.p50_ms / 1e3, {"statistic": "p50"}),
        (stats.p99_ms / 1e3, {"statistic": "p99"}),
        (stats.avg_latency_ms / 1e3, {"statistic": "mean"}),
    ]


def _observe(
    values: Callable[[Reading], list[tuple[float, dict[str, str]]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        pid = os.getpid()  # (read at each collection: a forked worker is another process)
        return [
            Observation(value, {"function": reading.function, "process.pid": pid, **attributes})
            for reading in readings()
            for value, attributes in values(reading)
        ]

    return callback


def trace(tracer_provider: TracerProvider | None = None) -> None:
    """Send tiercache's spans to ``tracer_provider`` (None, the default: the global provider).

    Spans need no call of this: tiercache makes them whenever the global tracer provider is
    set (``opentelemetry.trace.set_tracer_provider``), and none while it is the API's default.
    Call it to use another provider than the global one. One span per L2 operation
    (``tiercache.l2.read``, ``.write``, ...) and per computation on a miss
    (``tiercache.compute``), with the attributes ``tiercache.function``, ``tiercache.outcome``
    and ``tiercache.key_digest`` (never the arguments); none for L1 hits.
    """
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise TypeError(
            "tiercache.metrics.otel.trace(): tracer_provider must be an opentelemetry TracerProvider, "
            f"not {type(tracer_provider).__name__}"
        )
    tracing.choose_provider(tracer_provider)
