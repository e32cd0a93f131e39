"""Where a cache reads the time: one object, so a test swaps every clock of a cache at once.

``monotonic`` times L1 expiry, flights and generation re-reads; ``wall`` stamps the L2
deadlines other processes read. Given a test's clock, the wall clock follows it from the
moment the cache was made, so L2 freshness moves with it too and expiry tests never sleep.
What must track real time stays on it: a lock's wait and a tombstone's life are measured by
Redis, in real seconds.
"""

from __future__ import annotations

import time
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
        offset = time.time() - clock()
        return cls(clock, lambda: clock() + offset)
