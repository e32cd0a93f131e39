"""L1: an in-process dict kept in least-recently-used order, with a per-entry expiry time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

from ._admission import FrequencySketch

__all__ = ["MISSING", "Clock", "LocalCache"]

Clock = Callable[[], float]
Entry = tuple[Any, float]  # (value, fresh until, on the cache's clock)


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

    An expired entry is dropped when next looked at. With a ``grace`` (a function's
    ``stale_ttl``) ``lookup`` hands it over instead, for a caller to serve stale or fall back on.
    With ``policy="tinylfu"`` a full cache admits a newcomer only if it was missed more often
    lately than the entry it would evict (see ``_admission``); hits cost the same either way.
    """

    __slots__ = ("_lock", "clock", "data", "grace", "max_entries", "sketch", "ttl")

    def __init__(
        self,
        max_entries: int,
        ttl: float,
        clock: Clock = time.monotonic,
        grace: float = 0.0,
        policy: str = "lru",
    ) -> None:
        self.data: dict[Hashable, Entry] = {}
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self.grace = grace
        self.sketch = FrequencySketch(max_entries) if policy == "tinylfu" and max_entries > 0 else None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def after_fork(self) -> None:
        """Replace the lock, which a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """Return the live value for ``key`` and mark it most recently used, else MISSING."""
        entry = self.data.pop(key, None)
        if entry is None or entry[1] <= self.clock():
            return MISSING  # an expired entry stays out: expiry is lazy
        self.data[key] = entry
        return entry[0]

    def lookup(self, key: Hashable) -> tuple[Any, Entry | None]:
        """Return ``(value, None)`` for a live entry, else ``(MISSING, the entry if within grace)``.

        An expired entry is taken out either way; ``restore`` puts a stale one back.
        """
        entry = self.data.pop(key, None)
        if entry is None:
            return MISSING, None
        if entry[1] > self.clock():
            self.data[key] = entry
            return entry[0], None
        return MISSING, self.within_grace(entry)

    def within_grace(self, entry: Entry) -> Entry | None:
        """Return an expired ``entry`` if it is still within the grace period, else None."""
        return entry if self.grace and entry[1] + self.grace > self.clock() else None

    def restore(self, key: Hashable, entry: Entry) -> None:
        """Put back an entry taken out by ``lookup`` (as it was, expiry included)."""
        with self._lock:
            if key not in self.data and self.max_entries > 0:
                self.data[key] = entry
                while len(self.data) > self.max_entries:
                    self._evict_oldest()

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (the cache's own TTL by default), evicting LRU."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if self.max_entries <= 0 or lifetime <= 0:
            return
        now = self.clock()
        data = self.data
        with self._lock:
            if self.sketch is not None and key not in data and not self._admits(self.sketch, key, now):
                return
            data.pop(key, None)
            data[key] = (value, now + lifetime)
            while len(data) > self.max_entries:
                self._evict_oldest()

    def _admits(self, sketch: FrequencySketch, key: Hashable, now: float) -> bool:
        # With the lock held, for a key not in the cache: an L1 miss, counted as one.
        sketch.add(key)
        victim = next(iter(self.data), None) if len(self.data) >= self.max_entries else None
        if victim is None:
            return True
        entry = self.data.get(victim)
        expired = entry is None or entry[1] <= now
        return expired or sketch.estimate(key) > sketch.estimate(victim)

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

    def expire_all(self) -> None:
        """Make every entry stale now: never served as fresh again, kept for its grace period."""
        if not self.grace:
            self.clear()
            return
        now = self.clock()
        with self._lock:
            for key, (value, expires_at) in list(self.data.items()):
                if expires_at > now:
                    self.data[key] = (value, now)

    def purge_expired(self) -> int:
        """Drop every expired entry now, rather than when next looked up; return how many."""
        now = self.clock()
        with self._lock:
            dead = [key for key, (_, expires_at) in list(self.data.items()) if expires_at <= now]
            for key in dead:
                self.data.pop(key, None)
        return len(dead)
