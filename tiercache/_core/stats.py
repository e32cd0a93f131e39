"""Per-function counters and call latency, and the frozen snapshot users read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CacheStats", "LatencyHistogram", "StatsRecorder"]


class LatencyHistogram:
    """Durations in nanoseconds, counted in log-linear buckets (16 per power of two).

    Exact below 32 ns and within 1/32 (about 3%) of the true value everywhere above, in constant
    memory; weights let one timed call stand for many calls that were not timed.
    """

    __slots__ = ("counts", "total_ns", "total_weight")

    #: Enough buckets for any duration a 64-bit nanosecond count can hold.
    SIZE = 1024

    def __init__(self) -> None:
        self.counts = [0] * self.SIZE
        self.total_weight = 0
        self.total_ns = 0

    @staticmethod
    def bounds(index: int) -> tuple[int, int]:
        """Return the ``[low, high)`` nanosecond range that bucket ``index`` counts."""
        if index < 32:
            return index, index + 1
        shift = index // 16 - 1
        top = index - shift * 16
        return top << shift, (top + 1) << shift

    def record(self, ns: int, weight: int = 1) -> None:
        """Count one observation of ``ns`` nanoseconds standing for ``weight`` calls."""
        # Below 32 ns one bucket per ns; above, 16 per power of two (the top 5 bits of ns).
        if ns < 32:
            index = ns if ns > 0 else 0
        else:
            shift = ns.bit_length() - 5
            index = shift * 16 + (ns >> shift)
        self.counts[index] += weight
        self.total_weight += weight
        self.total_ns += ns * weight

    def mean(self) -> float:
        """Return the weighted mean in nanoseconds (0 when empty)."""
        return self.total_ns / self.total_weight if self.total_weight else 0.0

    def quantile(self, q: float) -> float:
        """Return the weighted ``q`` quantile in nanoseconds, at its bucket's midpoint."""
        if not self.total_weight:
            return 0.0
        rank = q * self.total_weight
        seen = 0
        last = 0
        for index, count in enumerate(self.counts):
            if not count:
                continue
            seen += count
            last = index
            if seen >= rank:
                break
        low, high = self.bounds(last)
        return (low + high) / 2 if high - low > 1 else float(low)

    def cumulative(self, bounds_ns: Sequence[int]) -> list[int]:
        """Return, for each ascending bound, the weight of observations in buckets ending at or below it.

        A bucket straddling a bound counts above it, so each figure is low by at most one bucket
        (about 3%) of the observations nearest that bound.
        """
        filled = [(self.bounds(index)[1], count) for index, count in enumerate(self.counts) if count]
        totals: list[int] = []
        seen = 0
        next_filled = 0
        for bound in bounds_ns:
            while next_filled < len(filled) and filled[next_filled][0] <= bound:
                seen += filled[next_filled][1]
                next_filled += 1
            totals.append(seen)
        return totals

    def copy(self) -> LatencyHistogram:
        """Return an independent copy."""
        other = LatencyHistogram()
        other.counts = list(self.counts)
        other.total_weight = self.total_weight
        other.total_ns = self.total_ns
        return other


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of one cached function's counters and call latency.

    Every call has exactly one outcome: ``l1_hits``, ``l2_hits``, ``misses`` (this call ran the
    function), ``coalesced`` (it shared a concurrent call's run) or ``stale_served``. ``errors``
    counts the calls, among those, that raised the function's exception. ``l2_lookups`` counts
    the calls that asked L2; ``l2_errors`` counts failed L2 operations of any kind;
    ``l2_corrupt`` entries that were not ours or damaged; ``l2_rejected`` entries refused for a
    missing or wrong signature or their size; ``unencodable`` and ``oversized`` values kept out
    of L2 for their type or size;
    ``refresh_errors`` background refreshes of stale values that raised;
    ``l2_writes_refused`` values Redis would not take because the entry was invalidated after
    they were read or computed (see the invalidation protocol); ``l2_saturated`` calls that
    skipped L2 because every pooled connection stayed busy (a burst of ours, not an outage:
    see ``configure(max_connections=)``); ``not_cached`` results kept out of both tiers by
    ``cache_if`` (or TTL functions returning None for both); ``refreshes_ahead`` background
    refreshes a hit near the end of its entry's life started (``refresh_ahead``); ``timeouts``
    calls that stopped waiting for the function (``timeout``/``hard_timeout``); ``invalidations``
    the entries this process invalidated (``cache_invalidate``, one per call) and the clears it
    made (``cache_clear``, one each). ``degraded`` says whether the
    function's Redis is being skipped right now (its circuit breaker is open), and
    ``degraded_seconds`` how long it has been skipped in all. ``pending_invalidations`` counts
    invalidations made while Redis was unreachable, waiting to be replayed there (a clear counts
    as one); ``coherent`` says whether this L1 follows other processes' invalidations right now.
    """

    function: str
    calls: int
    l1_hits: int
    l2_hits: int
    misses: int
    coalesced: int
    stale_served: int
    errors: int
    l2_lookups: int
    l2_errors: int
    l2_corrupt: int
    unencodable: int
    oversized: int
    l2_rejected: int
    refresh_errors: int
    l2_writes_refused: int
    l2_saturated: int
    not_cached: int
    refreshes_ahead: int
    timeouts: int
    invalidations: int
    degraded: bool
    degraded_seconds: float
    pending_invalidations: int
    coherent: bool
    l1_size: int
    avg_latency_ms: float
    p50_ms: float
    p99_ms: float

    @property
    def l1_hit_rate(self) -> float:
        """Share of calls served from L1."""
        return self.l1_hits / self.calls if self.calls else 0.0

    @property
    def l2_hit_rate(self) -> float:
        """Share of L2 look-ups (calls that missed L1 and asked L2) that L2 answered."""
        return self.l2_hits / self.l2_lookups if self.l2_lookups else 0.0

    @property
    def combined_hit_rate(self) -> float:
        """Share of calls served by either tier."""
        return (self.l1_hits + self.l2_hits) / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return every field and rate as a plain dict (JSON-ready)."""
        fields = asdict(self)
        fields.update(
            l1_hit_rate=self.l1_hit_rate,
            l2_hit_rate=self.l2_hit_rate,
            combined_hit_rate=self.combined_hit_rate,
        )
        return fields


_COUNTERS = (
    "l1_hits",
    "l2_hits",
    "misses",
    "coalesced",
    "stale_served",
    "errors",
    "l2_lookups",
    "l2_errors",
    "l2_corrupt",
    "unencodable",
    "oversized",
    "l2_rejected",
    "refresh_errors",
    "l2_writes_refused",
    "l2_saturated",
    "not_cached",
    "refreshes_ahead",
    "timeouts",
    "invalidations",
    "fast_path_entries",
)


_BATCH = 256
#: Flags of a recorded call: it raised; it came through the fast path; it asked L2.
ERROR, FAST, LOOKED_UP = 1, 2, 4


class StatsRecorder:
    """Counts what the slow path sees; the fast path's L1 hits are derived from its ticks.

    The generated wrapper only decrements a countdown on each call whose key it can build
    itself (``ticks``). Those calls that then reach the slow path say so (``fast_path_entries``),
    so the fast path's hits are ``ticks - fast_path_entries``, exactly, without a counter of
    their own. Latency: every slow-path call is timed; a fast-path hit is timed only when it is
    the sampled one of its window, and then stands for the whole window.
    """

    def __init__(self, function: str) -> None:
        self.function = function
        self.ticks: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._ticks_at_reset = 0
        self._latency = LatencyHistogram()
        # Outcomes and latencies wait here, appended without a lock (list.append is atomic),
        # until a snapshot or a full batch folds them into the counters under the lock.
        self._pending: list[tuple[str | None, int, int, int]] = []

    def after_fork(self) -> None:
        """Replace the lock, which a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    def sampled_hit(self, elapsed_ns: int, weight: int) -> None:
        """Keep the latency of a sampled fast-path hit (already counted by its tick)."""
        self.add(None, elapsed_ns, weight, 0)

    def add(self, outcome: str | None, elapsed_ns: int, weight: int, flags: int) -> None:
        """Record one call: outcome (None: latency only), latency, weight, ERROR/FAST/LOOKED_UP flags.

        See ``record_call`` for the meaning of each.
        """
        pending = self._pending
        pending.append((outcome, elapsed_ns, weight, flags))
        if len(pending) >= _BATCH:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        counts, latency = self._counts, self._latency
        buckets = latency.counts
        total_ns = weight_sum = 0
        for outcome, elapsed_ns, weight, flags in pending:
            if outcome is not None:
                counts[outcome] += 1
                if flags:
                    if flags & ERROR:
                        counts["errors"] += 1
                    if flags & FAST:
                        counts["fast_path_entries"] += 1
                    if flags & LOOKED_UP:
                        counts["l2_lookups"] += 1
            # LatencyHistogram.record(), inlined: this loop runs once per recorded call.
            if elapsed_ns < 32:
                index = elapsed_ns if elapsed_ns > 0 else 0
            else:
                shift = elapsed_ns.bit_length() - 5
                index = shift * 16 + (elapsed_ns >> shift)
            buckets[index] += weight
            weight_sum += weight
            total_ns += elapsed_ns * weight
        latency.total_weight += weight_sum
        latency.total_ns += total_ns

    def latency(self) -> LatencyHistogram:
        """Return a copy of the call latency histogram since the last reset."""
        with self._lock:
            self._fold()
            return self._latency.copy()

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one counter."""
        with self._lock:
            self._counts[counter] += n

    def record_call(
        self,
        outcome: str,
        elapsed_ns: int,
        weight: int = 1,
        *,
        error: bool = False,
        fast: bool = False,
        looked_up: bool = False,
    ) -> None:
        """Record a call's outcome and latency.

        ``fast``: the call came through the fast path (it ticked there); ``looked_up``: it asked
        L2; ``weight`` > 1 only for the sampled fast-path hit that stands for its whole window.
        """
        flags = (ERROR if error else 0) | (FAST if fast else 0) | (LOOKED_UP if looked_up else 0)
        self.add(outcome, elapsed_ns, weight, flags)

    def snapshot(
        self,
        *,
        degraded: bool = False,
        degraded_seconds: float = 0.0,
        l1_size: int = 0,
        pending_invalidations: int = 0,
        coherent: bool = False,
        reset: bool = False,
    ) -> CacheStats:
        """Return the counters so far; with ``reset``, also start them again from zero."""
        with self._lock:
            self._fold()
            ticks = self.ticks()
            counts = dict(self._counts)
            latency = self._latency
            fast_hits = max(ticks - self._ticks_at_reset - counts["fast_path_entries"], 0)
            if reset:
                self._counts = dict.fromkeys(_COUNTERS, 0)
                self._ticks_at_reset = ticks
                self._latency = LatencyHistogram()
        l1_hits = counts["l1_hits"] + fast_hits
        slow_calls = sum(counts[k] for k in ("l1_hits", "l2_hits", "misses", "coalesced", "stale_served"))
        return CacheStats(
            function=self.function,
            calls=slow_calls + fast_hits,
            l1_hits=l1_hits,
            l2_hits=counts["l2_hits"],
            misses=counts["misses"],
            coalesced=counts["coalesced"],
            stale_served=counts["stale_served"],
            errors=counts["errors"],
            l2_lookups=counts["l2_lookups"],
            l2_errors=counts["l2_errors"],
            l2_corrupt=counts["l2_corrupt"],
            unencodable=counts["unencodable"],
            oversized=counts["oversized"],
            l2_rejected=counts["l2_rejected"],
            refresh_errors=counts["refresh_errors"],
            l2_writes_refused=counts["l2_writes_refused"],
            l2_saturated=counts["l2_saturated"],
            not_cached=counts["not_cached"],
            refreshes_ahead=counts["refreshes_ahead"],
            timeouts=counts["timeouts"],
            invalidations=counts["invalidations"],
            degraded=degraded,
            degraded_seconds=degraded_seconds,
            pending_invalidations=pending_invalidations,
            coherent=coherent,
            l1_size=l1_size,
            avg_latency_ms=latency.mean() / 1e6,
            p50_ms=latency.quantile(0.50) / 1e6,
            p99_ms=latency.quantile(0.99) / 1e6,
        )
