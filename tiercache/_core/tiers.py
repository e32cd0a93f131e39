"""One cache's two tiers: its L1, its L2 endpoint, its coherence, its stats, its pending repairs.

Shared by the decorator's per-function caches and the adapters: the flows decide, and ask this
object where L2 is and what to record; its ``remote`` (``_core.remote``) says whether a payload
is ours and current, in the generation it follows.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Final

from tiercache._core.checks import milliseconds
from tiercache._core.clocks import Clocks
from tiercache._core.interfaces import LocalTier
from tiercache._core.notices import Notices
from tiercache._core.owed import Owed
from tiercache._core.remote import Remote
from tiercache._core.stats import CacheStats, StatsRecorder
from tiercache._errors import InvalidationError
from tiercache._l1.lru import LocalCache
from tiercache._l2.coherence import DEAF_L1_SECONDS, announcement, channel_for
from tiercache._l2.errors import RemoteError, RemotePartlyDown, RemoteSaturated, RemoteUnavailable
from tiercache._l2.layout import DIGEST_LENGTH
from tiercache._l2.signing import Signer

if TYPE_CHECKING:
    from tiercache._l2.endpoint import Endpoint

__all__ = ["TOMBSTONE_FLOOR", "Tiers", "live_tiers"]

#: Seconds a tombstone stays at least (else as long as the entries): a write whose writer read
#: the key longer ago than its tombstone lives could miss an invalidation, so it is not sent.
TOMBSTONE_FLOOR: Final = 300.0


class Tiers:
    """The state behind one cache's L1 and L2, and the answers the flows need from it."""

    #: Redis key of this cache's generation (set by subclasses, which know their namespace).
    generation_key: str

    def __init__(
        self,
        label: str,
        local: LocalCache,
        *,
        ttl_l2: float | None,
        stale_ttl: float,
        tombstones: bool = True,
        tagged: bool = False,
    ) -> None:
        self.label = label
        self.local = local  # all of it: the tiers keep its bounds, drops and leases
        self.l1: LocalTier = local  # what flows may ask of it
        self.clocks = Clocks.following(local.clock)
        self.stats = StatsRecorder(label)
        self.ttl_l2 = ttl_l2
        self.stale_ttl = stale_ttl
        # An entry stays in Redis for its stale period too; its envelope says when it went stale.
        self.l2_ttl_ms = milliseconds((ttl_l2 or 0.0) + stale_ttl)
        # Invalidations leave tombstones (see _l2.envelope) where values are computed and written
        # conditionally; None: plain deletes (the adapters, whose values are set, not computed).
        self.tombstone_ms = max(self.l2_ttl_ms, round(TOMBSTONE_FLOOR * 1000)) if tombstones else None
        self._lock = threading.Lock()
        self.log_once = Notices().once
        #: Invalidations that could not reach L2 yet, replayed once it is back (in the
        #: background) or before the next L2 operation, whichever comes first.
        self.owed = Owed()
        #: The generation followed in L2, and the payloads sealed and opened in it.
        self.remote = Remote(
            label,
            self.stats,
            self.clocks,
            self.owed,
            self.log_once,
            ttl_l2=ttl_l2,
            stale_ttl=stale_ttl,
            tagged=tagged,
        )
        #: Whether this cache has an L1 at all (an L1-less one skips its leases and look-ups).
        self.has_l1 = local.max_entries > 0
        #: Whether entries carry tag blocks (a function with ``tags=``; see ``_l2.envelope``).
        self.tagged = tagged
        # Cross-process coherence (see _l2.coherence): where our changes are announced (None: they
        # are not, and this L1 follows its TTL alone), and who we are in those announcements.
        self.coherent = True
        self.channel: str | None = None
        self.origin = os.urandom(8)
        self.key_prefix = ""
        self._endpoint: Endpoint | None = None  # set by subclasses, as they resolve where L2 is
        _live.add(self)
        self._by_digest: dict[str, Hashable] = {}  # see note_digest()
        # Sets under way, by L1 key: how many, and whether two ever overlapped (see begin_set).
        self._sets: dict[Hashable, list[int]] = {}

    def enabled(self) -> bool:
        """Whether caching is on at all."""
        return True

    def endpoint(self) -> Endpoint | None:
        """Return the L2 endpoint in use now, or None when this cache keeps to L1."""
        raise NotImplementedError

    def endpoint_in_use(self) -> Endpoint | None:
        """Return the endpoint this cache last used, without resolving settings again (closing)."""
        return self._endpoint

    def after_fork(self) -> None:
        """Replace locks a thread of the parent may have held when it forked."""
        self.origin = os.urandom(8)  # the child is another process to the others
        self._lock = threading.Lock()
        self.local.after_fork()
        self.stats.after_fork()
        self.owed.after_fork()

    # -- coherence ------------------------------------------------------------------------

    def follow(self, endpoint: Endpoint | None, namespace: str) -> None:
        """Announce our changes on ``namespace``'s channel and follow everyone else's there."""
        if endpoint is not None:
            endpoint.check_access(namespace, channel_for(namespace))
        if not self.coherent or endpoint is None:
            self.channel = None
            self.set_deaf(False)  # nothing to hear: L1 follows ttl_l1, as documented
            return
        if endpoint.bus is None:
            self.channel = None
            self.set_deaf(False)
            self.log_once(
                "incoherent",
                "%s: no sync Redis client to listen with; its L1 follows ttl_l1 only",
                self.label,
                level=logging.INFO,
            )
            return
        self.channel = channel_for(namespace)
        endpoint.bus.join(self.channel, self)

    def announce(self, redis_keys: Sequence[str] | None) -> tuple[str, bytes] | None:
        """Return what to publish after changing ``redis_keys`` (None: all), or None if nothing.

        Announcements name digests, never arguments (see ``_l2.announcement``).
        """
        if self.channel is None:
            return None
        digests = None if redis_keys is None else [self.digest_for(key) for key in redis_keys]
        return self.channel, announcement(self, self.channel, digests)

    def digest_for(self, redis_key: str) -> str:
        """Return the digest other processes know ``redis_key``'s entry by (its key name's tail)."""
        return redis_key[-DIGEST_LENGTH:]

    def note_digest(self, digest: str, l1_key: Hashable) -> None:
        """Remember which L1 key ``digest`` stands for, so announcements can name it.

        Every L1 write, and every read that may lead to one, of a cache that follows a channel
        is noted. Past a bound the notes keep only the keys L1 holds; calls under way then lose
        their note, so their L1 writes are refused (their leases voided), never left unheard.
        """
        notes = self._by_digest
        notes[digest] = l1_key
        if len(notes) > 2 * self.local.max_entries + 1024:
            held = self.local.data
            self._by_digest = {d: key for d, key in list(notes.items()) if key in held}
            self.lose_track()

    def lose_track(self) -> None:
        """Refuse what calls under way would write to L1: their notes were let go (see note_digest)."""
        self.local.void_leases()

    def drop_announced(self, digests: Sequence[str]) -> None:
        """Drop the L1 entries another process invalidated, known here by their digests.

        A digest not noted here names nothing in L1. Without an L1, though, runs that just
        ended linger briefly for late callers, and their notes may be gone: drop them all.
        """
        notes = self._by_digest
        keys = [notes[digest] for digest in digests if digest in notes]
        if len(keys) < len(digests) and self.local.max_entries == 0:
            self.drop_local(None)
        elif keys:
            self.drop_local(keys)

    def drop_local(self, keys: Sequence[Hashable] | None, *, keep_stale: bool = False) -> None:
        """Drop ``keys`` (None: every entry) from L1: invalidated here or in another process.

        Writes of values read or computed before now are refused from now on (L1 leases).
        ``keep_stale`` (after a lost subscription, when nothing is known to have changed) keeps
        entries as stale ones instead: never served as fresh, still there for fail-safe.
        """
        if keys is None and keep_stale:
            self.local.expire_all()
        elif keys is None:
            self.local.clear()
        else:
            for key in keys:
                self.local.delete(key)

    def set_deaf(self, deaf: bool) -> None:
        """Bound L1 lifetimes while other processes' invalidations cannot be heard (or lift it)."""
        self.local.set_cap(DEAF_L1_SECONDS if deaf else math.inf)

    @property
    def signer(self) -> Signer | None:
        """What signs this cache's payloads, announcements and digests (None: nothing is signed)."""
        return self.remote.signer

    @property
    def hears_others(self) -> bool:
        """Whether this L1 follows other processes' invalidations right now."""
        return self.channel is not None and self.local.cap == math.inf

    # -- sets of one key at once -----------------------------------------------------------

    def begin_set(self, key: Hashable) -> None:
        """Note that a set of ``key`` (its L1 key) begins writing Redis; ``end_set`` must follow.

        Which of two sets' writes Redis took last is not known here, so neither may decide what
        L1 keeps: sets that overlapped leave the key out of L1, and the next read asks Redis.
        """
        with self._lock:
            under_way = self._sets.get(key)
            if under_way is None:
                self._sets[key] = [1, 0]
            else:
                under_way[0] += 1
                under_way[1] = 1  # overlapped

    def end_set(self, key: Hashable, keep: Callable[[], object]) -> None:
        """End a set of ``key`` begun by ``begin_set``: ``keep()`` its value in L1, unless sets overlapped."""
        with self._lock:
            under_way = self._sets[key]
            under_way[0] -= 1
            if not under_way[0]:
                del self._sets[key]
            if under_way[1]:
                self.local.delete(key)
            else:
                keep()

    def refusal(self, action: str, endpoint: Endpoint, error: RemoteError) -> InvalidationError:
        """Return the error for an invalidation Redis refused, saying what may still serve the old value."""
        cleared = action.endswith("clear()")
        old, expires = ("the old values", "they expire") if cleared else ("the old value", "it expires")
        l1_bound = f"up to {self.local.ttl:g} s" if math.isfinite(self.local.ttl) else "their TTL"
        others = f"other processes' L1s may keep {old} for {l1_bound}"
        if getattr(error, "kept_in_redis", True):
            l2_bound = f"up to {self.l2_ttl_ms / 1000:g} s" if self.ttl_l2 is not None else "its TTL"
            remains = f"{old} may stay in Redis until {expires} ({l2_bound}), and {others}"
        else:
            remains = f"Redis dropped {old}, but refused the announcement: {others}"
        return InvalidationError(self.label, action, endpoint.name, str(error), remains)

    # -- outcomes -------------------------------------------------------------------------

    def remote_failed(self, endpoint: Endpoint, exc: RemoteError) -> None:
        """Count a failed L2 operation and tell the endpoint's breaker if Redis is unreachable.

        A pool saturated by our own burst is counted apart and never opens the breaker.
        """
        if isinstance(exc, RemoteSaturated):
            self.stats.count("l2_saturated")
            self.log_once(
                "saturated",
                "%s: every connection to L2 at %s stayed busy; calls skip L2 until one frees "
                "(raise configure(max_connections=...) if this is the normal load)",
                self.label,
                endpoint.name,
            )
            return
        self.stats.count("l2_errors")
        if isinstance(exc, RemotePartlyDown):  # one primary of a cluster: its keys skip L2, not all
            self.log_once(
                "partly-down", "%s: L2 at %s: %s; its keys skip L2 meanwhile", self.label, endpoint.name, exc
            )
            return
        if isinstance(exc, RemoteUnavailable):
            endpoint.breaker.failure(exc)  # the breaker logs the outage, once
            return
        endpoint.breaker.success()  # Redis answered, if only to refuse this one command
        self.log_once(
            f"rejected:{exc}", "%s: L2 at %s refused an operation: %s", self.label, endpoint.name, exc
        )

    def snapshot(self, *, reset: bool = False) -> CacheStats:
        """Return this cache's stats (and zero them with ``reset``)."""
        endpoint = self.endpoint()
        breaker = endpoint.breaker if endpoint is not None else None
        return self.stats.snapshot(
            degraded=breaker is not None and breaker.is_open,
            degraded_seconds=breaker.degraded_seconds() if breaker is not None else 0.0,
            l1_size=len(self.local),
            pending_invalidations=len(self.owed),
            coherent=self.hears_others,
            reset=reset,
        )


_live: weakref.WeakSet[Tiers] = weakref.WeakSet()


def live_tiers() -> list[Tiers]:
    """Return every cache of this process still referenced: functions and adapters."""
    return list(_live)
