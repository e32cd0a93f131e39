"""A clock tests move by hand (``clock.now += 10``): L1 expiry without sleeping."""

from __future__ import annotations


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
