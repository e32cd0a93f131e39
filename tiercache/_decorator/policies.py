"""What a result decides about its own caching: whether it is kept, and for how long in each tier.

``cache_if=``, callable ``ttl_l1``/``ttl_l2`` and ``ttl_jitter=`` are asked here, once per
computed value, on the miss path only; a function with none of them never comes here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, overload

from tiercache._core.checks import MAX_SECONDS, as_seconds, shortening

__all__ = ["NOT_NONE", "Lifetimes", "ResultPolicy", "Seconds"]

#: A TTL option: seconds, None (not in that tier), or a function of the result returning either.
Seconds = float | Callable[[Any], float | None] | None
#: Seconds to keep a value in L1 and in L2; None: not in that tier (0 seconds reads the same).
Lifetimes = tuple[float | None, float | None]


class _NotNone:
    """``cache_if=NOT_NONE``: cache every result but ``None`` (a "not found" is asked again)."""

    __slots__ = ()

    def __call__(self, value: Any) -> bool:
        return value is not None

    def __repr__(self) -> str:
        return "tiercache.NOT_NONE"

    def __reduce__(self) -> str:
        return "NOT_NONE"  # a singleton, pickled by name


NOT_NONE: Final = _NotNone()


@dataclass(frozen=True)
class ResultPolicy:
    """How one function's results are kept: asked with each value it computes."""

    label: str
    cache_if: Callable[[Any], object] | None
    ttl_l1: Seconds
    ttl_l2: Seconds
    jitter: float

    @overload
    def lifetimes(self, value: Any, *, asked: Literal[True]) -> Lifetimes: ...
    @overload
    def lifetimes(self, value: Any, *, asked: bool = False) -> Lifetimes | None: ...
    def lifetimes(self, value: Any, *, asked: bool = False) -> Lifetimes | None:
        """Return how long to keep ``value`` in L1 and in L2, or None to keep it in neither.

        ``asked``: the caller put this value in itself (``cache_set``): ``cache_if`` is not asked.

        Raise TypeError, naming the function and the option, if a TTL function returns anything
        but seconds or None (the caller gets the error: the result is not cached).
        """
        if not asked and self.cache_if is not None and not self.cache_if(value):
            return None
        l1 = self._seconds("ttl_l1", self.ttl_l1, value)
        l2 = self._seconds("ttl_l2", self.ttl_l2, value)
        if self.jitter:
            keep = shortening(self.jitter)  # (one draw for both tiers: see shortening)
            l1 = None if l1 is None else l1 * keep
            l2 = None if l2 is None else l2 * keep
        return l1, l2

    def _seconds(self, option: str, ttl: Seconds, value: Any) -> float | None:
        if not callable(ttl):
            return ttl
        seconds = as_seconds(ttl(value))
        if seconds is None:
            return None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise TypeError(
                f"{self.label}: {option} returned {seconds!r} for a {type(value).__name__} result; "
                "it must return seconds (a finite number or a timedelta) or None"
            )
        return None if seconds <= 0 else min(float(seconds), MAX_SECONDS)  # (longer means "for ever")
