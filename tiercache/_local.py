"""L1: an in-process dict kept in least-recently-used order, with a per-entry expiry time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

__all__ = ["MISSING", "Clock", "LocalCache"]

Clock = Callable[[], float]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by lookups that found nothing; ``None`` is a value like any other and is cached.
MISSING: Final[Any] = _Missing()


class LocalCache:
    """A bounded LRU map whose entries expire ``ttl`` seconds after they were written.

    Each entry is a ``(value, expires_at)`` tuple in a plain dict; recency is the dict's order,
    renewed on every hit by taking the entry out and putting it back at the end. Reads take no
    lock (each dict operation is atomic); writes take one so that eviction sees a stable dict.
    The generated fast path of a decorated function reads ``data`` the same way ``get`` does.
    """

    __slots__ = ("_lock", "clock", "data", "max_entries", "ttl")

    def __init__(self, max_entries: int, ttl: float, clock: Clock = time.monotonic) -> None:
        self.data: dict[Hashable, tuple[Any, float]] = {}
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Hashable) -> Any:
        """Return the live value for ``key`` and mark it most recently used, else MISSING."""
        entry = self.data.pop(key, None)
        if entry is None or entry[1] <= self.clock():
            return MISSING  # an expired entry stays out: expiry is lazy
        self.data[key] = entry
        return entry[0]

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (the cache's own TTL by default), evicting LRU."""
        if self.max_entries <= 0:
            return
        expires_at = self.clock() + (self.ttl if ttl is None else min(ttl, self.ttl))
        data = self.data
        with self._lock:
            data.pop(key, None)
            data[key] = (value, expires_at)
            while len(data) > self.max_entries:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        # Lock-free readers may reorder the dict while we look for its first key; try again then.
        while True:
            try:
                del self.data[next(iter(self.data))]
            except (RuntimeError, KeyError):
                continue
            except StopIteration:
                return
            return

    def delete(self, key: Hashable) -> bool:
        """Drop ``key``; return whether it was present (expired or not)."""
        with self._lock:
            return self.data.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self.data.clear()

    def purge_expired(self) -> int:
        """Drop every expired entry now, rather than when next looked up; return how many."""
        now = self.clock()
        with self._lock:
            dead = [key for key, (_, expires_at) in list(self.data.items()) if expires_at <= now]
            for key in dead:
                self.data.pop(key, None)
        return len(dead)
