"""What a cache owes L2: invalidations that could not reach it yet, replayed once it is back.

Keys to drop, clears, and whether Redis must be told the cache's generation again (it went
back). Each deferral is numbered, so a replay forgets only what it covered: the keys and
clears deferred before it looked (one deferred meanwhile, or a second replayer's copy of the
same, is not taken as done). ``_core.repairs`` sends them.
"""

from __future__ import annotations

import threading
from typing import Final, NamedTuple

__all__ = ["MAX_PENDING_KEYS", "Owed", "Repairs"]

#: Deletions kept for replay while L2 is unreachable; past this many a new generation replaces them.
MAX_PENDING_KEYS: Final = 10_000


class Repairs(NamedTuple):
    """Invalidations waiting for L2 (see Owed.pending)."""

    clears: int
    floor: bool  # whether Redis must be told our generation again (it went back)
    keys: tuple[str, ...]
    mark: int  # the number of the last deferral included: what repaired(upto=) forgets up to


class Owed:
    """The invalidations one cache owes L2."""

    __slots__ = ("_clears", "_deferrals", "_floor", "_keys", "_lock", "any")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deferrals = 0
        self._keys: dict[str, int] = {}  # key -> number of its latest deferral
        self._clears: list[int] = []  # the numbers of the clears deferred
        self._floor = False
        #: Whether anything is owed (read without the lock on every call: a hint, kept exact
        #: under it by every change).
        self.any = False

    def __len__(self) -> int:
        """Return how many invalidations are owed (a clear counts as one)."""
        return len(self._keys) + len(self._clears)

    def after_fork(self) -> None:
        """Replace the lock a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    def defer(self, *, keys: tuple[str, ...] = (), clear: bool = False) -> None:
        """Remember deletions (or a clear) that could not reach L2 (``repairs.defer`` does both)."""
        with self._lock:
            self._deferrals += 1
            if clear or len(self._keys) + len(keys) > MAX_PENDING_KEYS:
                self._clears.append(self._deferrals)  # a clear covers any key
                self._keys.clear()  # a new generation stales those entries anyway
            else:
                self._keys.update(dict.fromkeys(keys, self._deferrals))
            self.any = True

    def floor(self) -> None:
        """Remember that Redis must be told our generation again (it went back, or was unreadable)."""
        with self._lock:
            self._floor = self.any = True

    def pending(self) -> Repairs:
        """Return the invalidations owed, marked with the last deferral they include."""
        with self._lock:
            return Repairs(len(self._clears), self._floor, tuple(self._keys), self._deferrals)

    def repaired(
        self, *, clears: int = 0, floor: bool = False, keys: tuple[str, ...] = (), upto: int
    ) -> None:
        """Forget the repairs that reached L2, of those deferred up to deferral ``upto``.

        ``upto`` is the ``mark`` of the ``pending()`` replayed: anything deferred since (or
        again) stays owed.
        """
        with self._lock:
            if clears:
                self._clears = [number for number in self._clears if number > upto]
            if floor or clears:
                self._floor = False
            for key in keys:
                if self._keys.get(key, upto + 1) <= upto:
                    del self._keys[key]
            self.any = bool(self._keys or self._clears or self._floor)

    def covers(self, key: str) -> bool:
        """Whether an owed invalidation covers ``key`` (a clear, or a generation floor, covers every key)."""
        with self._lock:
            return bool(self._clears or self._floor or key in self._keys)
