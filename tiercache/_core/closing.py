"""Shutting down: a last try at invalidations Redis never got, and a report of what is left."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tiercache._core.checks import check_seconds
from tiercache._core.ops import Flow
from tiercache._core.repairs import replay_repairs
from tiercache._core.tiers import Tiers

__all__ = ["CloseReport", "checked_timeout", "last_repairs", "report"]

logger = logging.getLogger("tiercache")


@dataclass(frozen=True)
class CloseReport:
    """What ``close()`` could not finish; a clean shutdown has nothing in it.

    ``pending_invalidations`` maps a cache (a function's qualified name, or an adapter) to the
    invalidations made while Redis was unreachable that it never took, even at close: other
    processes may serve those old values until they expire. This process replays them if it
    uses the cache again. ``still_running`` counts background runs (stale refreshes, runs past
    their ``compute_timeout``), and listeners or Redis probers still in a Redis call, that had
    not ended when close stopped waiting for them (they end on their own), and
    ``dropped`` the background refreshes that had not started (they are not needed: the next
    call refreshes).
    """

    pending_invalidations: Mapping[str, int] = field(default_factory=dict)
    still_running: int = 0
    dropped: int = 0

    @property
    def clean(self) -> bool:
        """Whether nothing was left pending or running."""
        return not self.pending_invalidations and not self.still_running


def checked_timeout(timeout: object, owner: str) -> float:
    """Return ``timeout`` (seconds, for a close) or raise naming ``owner``."""
    return check_seconds(timeout, "timeout", owner) or 0.0  # (never None: not optional)


def last_repairs(tiers: Tiers) -> Flow:
    """Replay ``tiers``' deferred invalidations if its Redis seems reachable (else leave them)."""
    endpoint = tiers.endpoint_in_use()
    if endpoint is not None and tiers.owed.any and endpoint.breaker.allow():
        yield from replay_repairs(tiers, endpoint)


def report(caches: Iterable[Tiers], owner: str, *, still_running: int = 0, dropped: int = 0) -> CloseReport:
    """Return (and log, when something is left) what ``owner`` could not finish for ``caches``."""
    pending: dict[str, int] = {}
    for tiers in caches:
        clears, floor, keys, _ = tiers.owed.pending()
        count = clears + int(floor) + len(keys)
        if count:
            name, n = tiers.label, 1
            while name in pending:
                n += 1
                name = f"{tiers.label}#{n}"
            pending[name] = count
    if pending:
        logger.warning(
            "%s: %d invalidation(s) of %s never reached Redis (it was unreachable); other "
            "processes may serve the old values until they expire",
            owner,
            sum(pending.values()),
            ", ".join(sorted(pending)),
        )
    if still_running:
        logger.warning(
            "%s: %d background run(s) or Redis thread(s) had not ended; they end on their own",
            owner,
            still_running,
        )
    return CloseReport(pending, still_running, dropped)
