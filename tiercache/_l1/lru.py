"""L1: an in-process dict kept in least-recently-used order, with a per-entry expiry time."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Final

from tiercache._l1.admission import FrequencySketch

__all__ = ["L1_POLICIES", "MISSING", "Clock", "LocalCache"]

#: What decides who stays when L1 is full: recency alone, or recency behind a TinyLFU doorkeeper.
L1_POLICIES: Final = frozenset({"lru", "tinylfu"})

Clock = Callable[[], float]
# (value, fresh until on the cache's clock), its size in bytes where L1 has a byte bound, and
# with refresh-ahead, when its life ends (it is due for a refresh from "fresh until" on)
Entry = tuple[Any, ...]
#: What sizes a value and its key for a byte bound: (key, value) -> bytes.
Sizer = Callable[[Hashable, Any], int]

#: Keys dropped since the oldest lease still remembered one by one; past this many, a drop
#: voids every outstanding lease instead (a few extra misses, never a stale write).
MAX_REMEMBERED_DROPS: Final = 4096


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by lookups that found nothing; ``None`` is a value like any other and is cached.
MISSING: Final[Any] = _Missing()


class LocalCache:
    """A bounded LRU map whose entries expire ``ttl`` seconds after they were written.

    Each entry is a ``(value, expires_at)`` tuple in an OrderedDict; a hit renews its recency
    with ``move_to_end``, one atomic step. (Taking the entry out and putting it back, as a plain
    dict would need, lets a delete that lands in between be undone by the put-back.) Reads take
    no lock; writes and drops take one, so eviction sees a stable map and a write can be refused
    atomically. The generated fast path of a decorated function reads ``data`` as ``get`` does.

    Writes that follow a slow read (of L2, or of the function's own data source) carry a lease
    taken before that read: ``set`` refuses it once the key was dropped (invalidated, cleared)
    in between, so a value that may predate an invalidation never lands after it. That is the
    memcache lease, kept in process: a drop counter instead of tokens.

    An expired entry is dropped when next looked at, unless it is within ``grace`` (a function's
    ``stale_ttl``): ``lookup`` then reports it and leaves it in place for stale serving. With
    ``policy="tinylfu"`` a full cache admits a newcomer only if it was missed more often lately
    than the entry it would evict (see ``admission``); hits cost the same either way. With
    ``max_bytes``, the entries' sizes (``sizer``) stay under it too, least recently used out
    first, and an entry larger than the bound is not kept at all. With ``ahead`` (a fraction),
    an entry stops being fresh that fraction of its lifetime early and is *due* until its life
    ends: ``lookup`` reports it as it reports a stale one (``due()`` tells them apart), so a
    caller can serve it while it is refreshed. ``cap``
    bounds every entry's lifetime while invalidations from other processes cannot be heard
    (``set_cap``), and the lifetime of what is written later under a lease taken meanwhile.
    """

    __slots__ = (
        "_bytes",
        "_capped_before",
        "_dropped",
        "_drops",
        "_floor",
        "_lifted_cap",
        "_lock",
        "ahead",
        "cap",
        "clock",
        "data",
        "grace",
        "max_bytes",
        "max_entries",
        "sizer",
        "sketch",
        "ttl",
    )

    def __init__(
        self,
        max_entries: int,
        ttl: float,
        clock: Clock = time.monotonic,
        grace: float = 0.0,
        policy: str = "lru",
        *,
        max_bytes: int | None = None,
        sizer: Sizer | None = None,
        ahead: float = 0.0,
    ) -> None:
        self.data: OrderedDict[Hashable, Entry] = OrderedDict()
        self.max_bytes = max_bytes
        self.sizer = sizer
        self._bytes = 0  # the sizes of the entries held, with a byte bound
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self.grace = grace
        self.ahead = ahead
        self.cap = math.inf
        self.sketch = FrequencySketch(max_entries) if policy == "tinylfu" and max_entries > 0 else None
        self._lock = threading.Lock()
        self._drops = 0  # bumped by every drop; a lease is its value when taken
        self._floor = 0  # leases below it are void (a clear, or too many drops to remember)
        self._dropped: dict[Hashable, int] = {}  # key -> the drop that last removed it
        # Leases below _capped_before were taken under a cap since lifted: their writes keep it.
        self._capped_before = 0
        self._lifted_cap = math.inf

    def __len__(self) -> int:
        return len(self.data)

    @property
    def bytes(self) -> int:
        """The sizes of the entries held, where L1 has a byte bound (else 0)."""
        return self._bytes

    def after_fork(self) -> None:
        """Replace the lock, which a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: Hashable) -> Any:
        """Return the live value for ``key`` and mark it most recently used, else MISSING."""
        entry = self.data.get(key)
        if entry is None:
            return MISSING
        if entry[1] > self.clock():
            self._touch(key)
            return entry[0]
        if self.within_grace(entry) is None:  # (one within grace stays for lookup's callers)
            self._discard(key, entry)
        return MISSING

    def lookup(self, key: Hashable) -> tuple[Any, Entry | None]:
        """Return ``(value, None)`` for a live entry, else ``(MISSING, the entry if within grace)``.

        An entry within grace stays where it is (stale, for fail-safe); one past it is dropped.
        """
        entry = self.data.get(key)
        if entry is None:
            return MISSING, None
        if entry[1] > self.clock():
            self._touch(key)
            return entry[0], None
        stale = self.within_grace(entry)
        if stale is None:
            self._discard(key, entry)
        return MISSING, stale

    def within_grace(self, entry: Entry) -> Entry | None:
        """Return an expired ``entry`` if it is still due or within the grace period, else None."""
        if self.ahead:
            return entry if entry[-1] + self.grace > self.clock() else None
        return entry if self.grace and entry[1] + self.grace > self.clock() else None

    def due(self, entry: Entry) -> bool:
        """Whether an entry ``lookup`` reported is due for a refresh, not past its life (stale)."""
        return bool(self.ahead) and entry[-1] > self.clock()

    def _touch(self, key: Hashable) -> None:
        try:  # noqa: SIM105 - suppress() would add a context manager to every hit
            self.data.move_to_end(key)
        except KeyError:
            pass  # dropped since we read it: our read came first, the drop stands

    def discard(self, key: Hashable, entry: Entry) -> None:
        """Remove the expired ``entry`` of ``key``, if it is still the one there (no lease is voided).

        For a stale entry found invalidated elsewhere: it must not serve as a fallback.
        """
        self._discard(key, entry)

    def _discard(self, key: Hashable, entry: Entry) -> None:
        # Only the entry we saw expire: another thread may have written a fresh one since.
        with self._lock:
            if self.data.get(key) is entry:
                del self.data[key]
                if self.max_bytes is not None:
                    self._bytes -= entry[2]

    # -- writes ---------------------------------------------------------------------------

    def lease(self) -> int:
        """Return a lease for a ``set`` after a slow read: void once the key is dropped meanwhile."""
        return self._drops

    def valid(self, key: Hashable, lease: int) -> bool:
        """Return whether ``lease`` still allows writing ``key`` (no drop of it since it was taken)."""
        return lease >= self._floor and self._dropped.get(key, -1) <= lease

    def set(self, key: Hashable, value: Any, ttl: float | None = None, lease: int | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds (the cache's own TTL by default), evicting LRU.

        With a ``lease``, only if ``key`` was not dropped since it was taken. Return whether
        the value was stored.
        """
        if self.max_entries <= 0:
            return False
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        lifetime = min(lifetime, self.cap)
        if lease is not None and lease < self._capped_before:
            lifetime = min(lifetime, self._lifted_cap)  # read while the cap was on
        if lifetime <= 0:
            return False
        now = self.clock()
        data = self.data
        if self.max_bytes is not None:
            return self._set_sized(key, value, now, lifetime, lease)
        entry = (
            (value, now + lifetime)
            if not self.ahead
            else (value, now + lifetime * (1 - self.ahead), now + lifetime)
        )
        with self._lock:
            if lease is not None and not self.valid(key, lease):
                return False
            if self.sketch is not None and key not in data and not self._admits(self.sketch, key, now):
                return False
            data[key] = entry
            data.move_to_end(key)
            while len(data) > self.max_entries:
                data.popitem(last=False)
        return True

    def _set_sized(self, key: Hashable, value: Any, now: float, lifetime: float, lease: int | None) -> bool:
        # set() under a byte bound: sized outside the lock (it may encode the value).
        expires = now + lifetime * (1 - self.ahead)
        size = self.sizer(key, value) if self.sizer is not None else 0
        bound = self.max_bytes or 0
        data = self.data
        with self._lock:
            if lease is not None and not self.valid(key, lease):
                return False
            if size > bound:  # too big to keep: nor may an older value stand in for it
                old = data.pop(key, None)
                if old is not None:
                    self._bytes -= old[2]
                return False
            if (
                self.sketch is not None
                and key not in data
                and not self._admits(self.sketch, key, self.clock())
            ):
                return False
            old = data.get(key)
            if old is not None:
                self._bytes -= old[2]
            data[key] = (value, expires, size) if not self.ahead else (value, expires, size, now + lifetime)
            data.move_to_end(key)
            self._bytes += size
            while len(data) > self.max_entries or self._bytes > bound:
                self._bytes -= data.popitem(last=False)[1][2]
        return True

    def set_cap(self, cap: float) -> None:
        """Bound the lifetime of entries written from now on (``math.inf``: no bound).

        Lifting a cap keeps it for writes under leases taken before: what they read, they read
        while the cap was on.
        """
        with self._lock:
            if cap > self.cap:
                self._drops += 1  # a mark between leases, not a drop: it voids none
                self._capped_before = self._drops
                self._lifted_cap = self.cap
            self.cap = cap

    def _admits(self, sketch: FrequencySketch, key: Hashable, now: float) -> bool:
        # With the lock held, for a key not in the cache: an L1 miss, counted as one.
        sketch.add(key)
        if len(self.data) < self.max_entries:
            return True
        while True:
            try:  # lock-free readers may reorder the map while we look at its oldest entry
                victim = next(iter(self.data), None)
                break
            except RuntimeError:
                continue
        if victim is None:
            return True
        entry = self.data.get(victim)
        expired = entry is None or entry[1] <= now
        return expired or sketch.estimate(key) > sketch.estimate(victim)

    # -- drops (each voids the leases that predate it) ------------------------------------

    def delete(self, key: Hashable) -> bool:
        """Drop ``key``; return whether it was present (expired or not)."""
        with self._lock:
            return self._delete(key)

    def delete_since(self, key: Hashable, lease: int) -> int | None:
        """Drop ``key`` as ``delete`` does, and return a lease for the caller's own write after it.

        None when ``key`` was dropped since ``lease`` was taken (or every lease was voided): a
        writer that must void everyone else's leases (the set of a key, after its write) keeps
        its own only if nothing else dropped the key meanwhile. Checked and dropped at once: a
        drop can come neither between the two nor unseen after them.
        """
        with self._lock:
            intact = self.valid(key, lease)
            self._delete(key)
            return self._drops if intact else None

    def _delete(self, key: Hashable) -> bool:
        # (With the lock held.)
        self._drops += 1
        if len(self._dropped) >= MAX_REMEMBERED_DROPS:
            self._forget_drops()
        self._dropped[key] = self._drops
        entry = self.data.pop(key, None)
        if entry is not None and self.max_bytes is not None:
            self._bytes -= entry[2]
        return entry is not None

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._drops += 1
            self._forget_drops()
            self.data.clear()
            self._bytes = 0

    def expire_all(self) -> None:
        """Make every entry stale now: never served as fresh again, kept for its grace period."""
        if not self.grace:
            self.clear()
            return
        now = self.clock()
        with self._lock:
            self._drops += 1
            self._forget_drops()
            for key, entry in list(self.data.items()):
                if entry[1] > now or (self.ahead and entry[-1] > now):
                    # (with refresh-ahead, the life ends now too: stale, not merely due)
                    self.data[key] = (
                        (entry[0], now, *entry[2:-1], now) if self.ahead else (entry[0], now, *entry[2:])
                    )

    def void_leases(self) -> None:
        """Refuse every write under a lease taken before now (entries stay)."""
        with self._lock:
            self._drops += 1
            self._forget_drops()

    def _forget_drops(self) -> None:
        # With the lock held: every lease taken before now is void, so no key needs remembering.
        self._floor = self._drops
        self._dropped.clear()
