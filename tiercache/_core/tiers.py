"""One cache's two tiers, as parts: L1, the L2 endpoint, remote, coherence, stats, owed repairs.

Shared by the decorator's per-function caches and the adapters: the flows decide, and ask this
object where L2 is and what to record. Its parts answer the rest: ``remote`` (``_core.remote``)
whether a payload is ours and current, in the generation it follows; ``coherence`` what L1
announces, hears and drops; ``sets_under_way`` what overlapping sets of one key leave in L1.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import TYPE_CHECKING, Final

from tiercache._core.checks import milliseconds
from tiercache._core.clocks import Clocks
from tiercache._core.interfaces import LocalTier
from tiercache._core.l1_coherence import L1Coherence
from tiercache._core.notices import Notices
from tiercache._core.overlapping_sets import SetsUnderWay
from tiercache._core.owed import Owed
from tiercache._core.remote import Remote
from tiercache._core.stats import CacheStats, StatsRecorder
from tiercache._errors import InvalidationError
from tiercache._l1.lru import LocalCache
from tiercache._l2.errors import RemoteError, RemotePartlyDown, RemoteSaturated, RemoteUnavailable

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
        #: Cross-process coherence (see _l2.coherence): what we announce, what L1 hears and drops.
        remote = self.remote  # (not self: the bus holds its members weakly, and so must they us)
        self.coherence = L1Coherence(label, local, lambda: remote.signer, self.log_once)
        #: Sets of one key at once (see overlapping_sets).
        self.sets_under_way = SetsUnderWay(local)
        self._endpoint: Endpoint | None = None  # set by subclasses, as they resolve where L2 is
        _live.add(self)

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
        self.coherence.after_fork()
        self.sets_under_way.after_fork()
        self.local.after_fork()
        self.stats.after_fork()
        self.owed.after_fork()

    # -- outcomes -------------------------------------------------------------------------

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

    def forget_local(self) -> None:
        """Empty L1 and zero the counters, as a newly started process has them; L2 keeps its entries."""
        self.coherence.drop_local(None)
        self.stats.snapshot(reset=True)

    def snapshot(self, *, reset: bool = False) -> CacheStats:
        """Return this cache's stats (and zero them with ``reset``)."""
        endpoint = self.endpoint()
        breaker = endpoint.breaker if endpoint is not None else None
        return self.stats.snapshot(
            degraded=breaker is not None and breaker.is_open,
            degraded_seconds=breaker.degraded_seconds() if breaker is not None else 0.0,
            l1_size=len(self.local),
            pending_invalidations=len(self.owed),
            coherent=self.coherence.hears_others,
            reset=reset,
        )


_live: weakref.WeakSet[Tiers] = weakref.WeakSet()


def live_tiers() -> list[Tiers]:
    """Return every cache of this process still referenced: functions and adapters."""
    return list(_live)


def _after_fork_in_child() -> None:
    # Every cache, adapters too: a worker forked from a preloading parent that goes on using
    # the parent's adapter is another process to its siblings (its own origin: it hears
    # theirs), and no parent thread will free the locks it held at the fork.
    for tiers in list(_live):
        tiers.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
