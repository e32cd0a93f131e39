"""Where a cache reads the time: one object, so a test swaps every clock of a cache at once.

``monotonic`` times L1 expiry, flights and generation re-reads; ``wall`` stamps the L2
deadlines other processes read. Given a test's clock, the wall clock follows it from the
moment the first cache on that clock was made, so L2 freshness moves with it too and expiry
tests never sleep; every cache on one clock reads the same wall clock from it, as processes
sharing real time do (caches made at different moments of a test would disagree otherwise).
What must track real time stays on it: a lock's wait and a tombstone's life are measured by
Redis, in real seconds.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Clocks"]


@dataclass(frozen=True, slots=True)
class Clocks:
    """The seconds sources of one cache."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    @classmethod
    def following(cls, clock: Callable[[], float]) -> Clocks:
        """Return the real clocks, or for a test's ``clock`` both clocks moving with it."""
        if clock is time.monotonic:
            return cls()
        try:
            offset = _offsets.setdefault(clock, time.time() - clock())
        except TypeError:  # (a clock that cannot be weakly referenced: this cache's own offset)
            offset = time.time() - clock()
        return cls(clock, lambda: clock() + offset)


#: Each test clock's distance from the wall clock, fixed by the first cache that follows it.
_offsets: weakref.WeakKeyDictionary[Callable[[], float], float] = weakref.WeakKeyDictionary()
