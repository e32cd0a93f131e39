"""Invalidations and clears: sent to L2 now, or remembered and replayed once it is back.

A cache that cannot reach Redis keeps what it owes (``Tiers.owed``, see ``_core.owed``) and registers with
the endpoint (``Endpoint.owe``): the debt is settled in the background when the breaker closes,
or before the cache's next L2 operation, whichever comes first. Until then the cache keeps off
L2 for what it owes.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from tiercache._core import ops
from tiercache._core.ops import Op, l2_op
from tiercache._core.shells import run
from tiercache._l2.coherence import Announce
from tiercache._l2.envelope import new_token, tombstone
from tiercache._l2.errors import RemoteUnavailable

if TYPE_CHECKING:
    from tiercache._core.tiers import Tiers
    from tiercache._l2.endpoint import Endpoint

__all__ = ["defer", "drop_keys", "new_generation", "replay_repairs", "settle_in_background"]

logger = logging.getLogger("tiercache")


def defer(tiers: Tiers, endpoint: Endpoint, *, keys: tuple[str, ...] = (), clear: bool = False) -> None:
    """Remember deletions (or a clear) to replay at ``endpoint`` once it can be reached again.

    Replayed in the background as soon as its breaker closes, and before this cache's next
    L2 operation, whichever comes first.
    """
    tiers.owed.defer(keys=keys, clear=clear)
    endpoint.debts.owe(tiers, settle_in_background)


def drop_keys(
    tiers: Tiers, endpoint: Endpoint, keys: tuple[str, ...], action: str = "cache_invalidate()"
) -> Generator[Op, Any, None]:
    """Invalidate ``keys`` in L2 now, or remember to once it can be reached again.

    Other processes are told to drop the same entries from their L1s. Raise InvalidationError,
    naming ``action``, if Redis refused.
    """
    if not endpoint.breaker.allow():
        defer(tiers, endpoint, keys=keys)
        return
    ok, reply = yield from l2_op(
        tiers, endpoint, _invalidate(tiers, endpoint, keys, tiers.coherence.announce(keys))
    )
    if ok:
        return
    if isinstance(reply, RemoteUnavailable):
        defer(tiers, endpoint, keys=keys)
        return
    raise tiers.refusal(action, endpoint, reply)


def _invalidate(tiers: Tiers, endpoint: Endpoint, keys: tuple[str, ...], announce: Announce) -> ops.Command:
    # One fresh token for the lot: it only has to differ from any token a writer read before.
    if tiers.tombstone_ms is None:
        return ops.invalidate(endpoint, keys, None, 0, announce, owner=tiers)
    return ops.invalidate(endpoint, keys, tombstone(new_token()), tiers.tombstone_ms, announce, owner=tiers)


def new_generation(
    tiers: Tiers, endpoint: Endpoint, action: str = "cache_clear()"
) -> Generator[Op, Any, None]:
    """Stale every L2 entry of ``tiers`` by raising its generation, now or once L2 is back.

    A clear that cannot reach Redis yet is replayed once it is back, or before this process's
    next L2 operation if that comes first; until then it does not use L2 at all. Raise
    InvalidationError, naming ``action``, if Redis refused.
    """
    if not endpoint.breaker.allow():
        defer(tiers, endpoint, clear=True)
        return
    op = ops.raise_generation(
        endpoint,
        tiers.generation_key,
        tiers.remote.known_generation(),
        1,
        tiers.coherence.announce(None),
        owner=tiers,
    )
    ok, reply = yield from l2_op(tiers, endpoint, op)
    if ok:
        tiers.remote.learn_generation(endpoint, reply[0])
        return
    if isinstance(reply, RemoteUnavailable):
        defer(tiers, endpoint, clear=True)
        return
    raise tiers.refusal(action, endpoint, reply)


def replay_repairs(tiers: Tiers, endpoint: Endpoint) -> Generator[Op, Any, bool]:
    """Replay invalidations that could not reach L2 when they were made; False if L2 failed."""
    clears, floor, keys, mark = tiers.owed.pending()
    if clears or floor:
        announce = tiers.coherence.announce(None) if clears else None  # (restating ours changes nothing)
        op = ops.raise_generation(
            endpoint,
            tiers.generation_key,
            tiers.remote.known_generation(),
            int(clears > 0),
            announce,
            owner=tiers,
        )
        ok, reply = yield from l2_op(tiers, endpoint, op)
        if not ok:
            return False
        generation, went_back = reply
        if went_back and not clears:
            tiers.log_once(
                "generation-back",
                "%s: L2 at %s held an older generation than this process had seen (a restart, a "
                "failover, or an old value planted back); restored it",
                tiers.label,
                endpoint.name,
            )
        tiers.remote.learn_generation(endpoint, generation)
        tiers.owed.repaired(clears=clears, floor=floor, upto=mark)
    if keys:
        ok, _ = yield from l2_op(
            tiers, endpoint, _invalidate(tiers, endpoint, keys, tiers.coherence.announce(keys))
        )
        if not ok:
            return False
        tiers.owed.repaired(keys=keys, upto=mark)
    return True


def settle_in_background(tiers: Tiers, endpoint: Endpoint) -> None:
    """Replay what ``tiers`` owes ``endpoint`` (see Endpoint.owe), on a background thread.

    The invalidations then reach Redis, and other processes' L1s, once Redis is back, not at
    this cache's next call, which may never come. If Redis fails again, they wait for the next
    time it is back; if it refuses them, for the cache's next call (which replays and raises
    nothing, but keeps off L2 for what it owes).
    """
    if not tiers.owed.any or endpoint.closed:
        return  # (closed: replayed at the cache's next call, which reopens it, not behind close())
    if endpoint.breaker.closed:  # (else it opened again meanwhile: owed until it is back)
        try:
            run(replay_repairs(tiers, endpoint))
        except Exception as exc:  # (no sync client can be made: an async-only one the app built)
            logger.debug("%s: invalidations to replay wait for the next call (%s)", tiers.label, exc)
            return
    if tiers.owed.any and endpoint.breaker.is_open:  # (refused: left to the next call)
        endpoint.debts.owe(tiers, settle_in_background)
