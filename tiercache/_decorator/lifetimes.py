"""How long one function keeps each value in each tier: its TTLs, as its results decide them."""

from __future__ import annotations

from typing import Any, Literal, overload

from tiercache._core.checks import milliseconds
from tiercache._core.stats import StatsRecorder
from tiercache._decorator.options import Options
from tiercache._decorator.policies import ResultPolicy

__all__ = ["Keeping", "ResultLifetimes"]

#: How to keep a value: L1 seconds, L2 seconds (None: the cache's TTL), into L1?, into L2?
Keeping = tuple[float | None, float | None, bool, bool]


class ResultLifetimes:
    """A function's TTLs, asked of each value it stores (``cache_if``, TTL functions, jitter)."""

    def __init__(self, label: str, options: Options, stats: StatsRecorder, l2_ttl_ms: int) -> None:
        ttl_l1, ttl_l2 = options.ttl_l1, options.ttl_l2
        #: What each computed result decides of its own caching (None: nothing, the cache's TTLs).
        self.policy = (
            ResultPolicy(label, options.cache_if, ttl_l1, ttl_l2, options.ttl_jitter)
            if options.cache_if is not None or callable(ttl_l1) or callable(ttl_l2) or options.ttl_jitter
            else None
        )
        #: Whether ttl_l1 is a function of the result (else L1 keeps a value as long as L2 does).
        self.l1_varies = callable(ttl_l1)
        self._options = options
        self._stats = stats
        self._l2_ttl_ms = l2_ttl_ms
        self._stale_ttl = options.stale_ttl or 0.0

    @overload
    def keeping(self, value: Any, *, asked: Literal[True]) -> Keeping: ...
    @overload
    def keeping(self, value: Any, *, asked: bool = False) -> Keeping | None: ...
    def keeping(self, value: Any, *, asked: bool = False) -> Keeping | None:
        """Return how to keep a value to store (see Keeping), or None to keep it nowhere.

        ``asked``: the caller put the value in itself (``cache_set``), so ``cache_if`` is not
        asked; a value it rejects is counted as not cached.
        """
        if self.policy is None:
            return None, None, True, True
        lifetimes = self.policy.lifetimes(value, asked=asked)
        if lifetimes is None:
            self._stats.count("not_cached")
            return None
        l1_seconds, l2_seconds = lifetimes
        return l1_seconds, l2_seconds, l1_seconds is not None, l2_seconds is not None

    def l2_ttl_ms(self, seconds: float | None) -> int:
        """Return Redis's TTL for a value fresh for ``seconds`` (None: ``ttl_l2``), stale period and all."""
        return self._l2_ttl_ms if seconds is None else milliseconds(seconds + self._stale_ttl)

    def l1_seconds(self, value: Any, fresh_for: float) -> float | None:
        """Return how long L1 keeps ``value``, which L2 holds fresh for ``fresh_for`` more seconds."""
        fresh_for = max(fresh_for, 0.0)
        if not self.l1_varies or self.policy is None:
            return fresh_for
        seconds = self.policy.lifetimes(value)
        return 0.0 if seconds is None or seconds[0] is None else min(seconds[0], fresh_for)

    def due_in_l2(self, value: Any, fresh_for: float) -> bool:
        """Whether an L2 hit with ``fresh_for`` seconds left is in the refresh-ahead part of its life."""
        ttl = self._options.ttl_l2
        if callable(ttl):
            seconds = ttl(value)
            ttl = seconds if isinstance(seconds, (int, float)) else 0.0
        return fresh_for < (self._options.refresh_ahead or 0.0) * (ttl or 0.0)
