"""Sets of one key at once: which of two sets' writes Redis took last is not known here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from tiercache._l1.lru import LocalCache

__all__ = ["SetsUnderWay"]


class SetsUnderWay:
    """The sets of each L1 key now writing Redis: how many, and whether two ever overlapped.

    Neither of two overlapping sets may decide what L1 keeps: they leave the key out of L1,
    and the next read asks Redis.
    """

    def __init__(self, local: LocalCache) -> None:
        self._local = local
        self._lock = threading.Lock()
        self._sets: dict[Hashable, list[int]] = {}

    def after_fork(self) -> None:
        """Replace the lock a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    def begin(self, key: Hashable) -> None:
        """Note that a set of ``key`` (its L1 key) begins writing Redis; ``end`` must follow."""
        with self._lock:
            under_way = self._sets.get(key)
            if under_way is None:
                self._sets[key] = [1, 0]
            else:
                under_way[0] += 1
                under_way[1] = 1  # overlapped

    def end(self, key: Hashable, keep: Callable[[], object]) -> None:
        """End a set of ``key`` begun by ``begin``: ``keep()`` its value in L1, unless sets overlapped."""
        with self._lock:
            under_way = self._sets[key]
            under_way[0] -= 1
            if not under_way[0]:
                del self._sets[key]
            if under_way[1]:
                self._local.delete(key)
            else:
                keep()
