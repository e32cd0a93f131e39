"""What an endpoint checks of its deployment in the background, and says of it once.

Each check runs on a client of its own, closed after (``Endpoint.aside``): the stores' pools
would stay open, a sync one be made in a process that only awaits, a closed endpoint reopen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from tiercache import _background
from tiercache._l2.errors import brief
from tiercache._l2.oversized import Guard
from tiercache._l2.store_parts import missing_permissions, read_bounded_with

__all__ = ["Aside", "DeploymentChecks"]

logger = logging.getLogger("tiercache")

#: At most one background ask of timed-out keys' lengths per this many seconds (see suspect()).
SUSPECT_EVERY: Final = 1.0
#: How many keys of a timed-out read are asked, how often, how far apart.
SUSPECTS: Final = 64
SUSPECT_TRIES: Final = 10
SUSPECT_PAUSE: Final = 0.2

#: What the caches cannot do without each command (see _l2.stores.missing_permissions).
DENIED_MEANS: Final = {
    "GET": "nothing can be read back from Redis (every call misses L2)",
    "MGET": "nothing can be read back from Redis (every call misses L2)",
    "SET": "values are not stored there, and cache_invalidate(), cache_set() and the adapters' "
    "set() raise InvalidationError",
    "EVALSHA": "a value replacing an invalidated or expired one is not stored, cache_clear() and "
    "the adapters' clear() raise InvalidationError, and the adapters' update() and Django's incr() fail",
    "DEL": "the adapters' delete() raises InvalidationError, and lock= locks are held until they expire",
    "PUBLISH": "invalidations raise InvalidationError (other processes cannot be told), and sets "
    "are not announced",
    "SUBSCRIBE": "other processes' invalidations cannot be heard: L1 entries live 1 s at most",
}


#: Runs an action with a client of its own, closed after (None, and nothing run: no such client).
Aside = Callable[[Callable[[Any], Any]], Any]


class DeploymentChecks:
    """The ACL check per namespace, the lengths of timed-out reads, the unacknowledged writes."""

    def __init__(self, name: str, aside: Aside, guard: Guard) -> None:
        self._name = name
        self._aside = aside
        self._guard = guard
        self._lock = threading.Lock()
        self._access_checked: set[str] = set()
        self._suspected_at = -SUSPECT_EVERY
        self.asking = False  # (a length ask is under way: tests wait for it)
        self._unconfirmed_said = False

    def check_access(self, namespace: str, channel: str) -> None:
        """Check once per namespace, in the background, that our Redis user may run what caches need.

        Warns once, naming the commands the server's ACL denies. Where the server cannot say
        (no ACL DRYRUN, or a user who may not run it), the first refusal is logged instead.
        """
        with self._lock:
            if namespace in self._access_checked:
                return
            self._access_checked.add(namespace)
        _background.submit(lambda: self._report_access(namespace, channel))

    def _report_access(self, namespace: str, channel: str) -> None:
        try:
            denied = self._aside(lambda client: missing_permissions(client, namespace, channel))
        except Exception:  # Redis is down: the calls will say so
            return
        if denied:  # (None: no sync client to check with; the first refusal is logged instead)
            logger.warning(
                "tiercache: the Redis user at %s may not run %s on %s:*: %s",
                self._name,
                ", ".join(denied),
                namespace,
                "; ".join(dict.fromkeys(DENIED_MEANS[name] for name in denied)),
            )

    def unconfirmed(self, what: str, reply: Any, within_ms: int) -> None:
        """Say (once) that no replica acknowledged ``what`` within ``within_ms`` (see stores.Owner)."""
        if self._unconfirmed_said:
            return
        self._unconfirmed_said = True
        answer = brief(reply) if isinstance(reply, BaseException) else f"WAIT answered {reply!r}"
        logger.warning(
            "tiercache: no replica of %s acknowledged %s within %d ms (%s): a failover before it "
            "does would lose it, and the old values could be read again",
            self._name,
            what,
            within_ms,
            answer,
        )

    def suspect(self, names: Sequence[str]) -> None:
        """Have the lengths of ``names`` asked, in the background: a read of them timed out.

        Redis copies a whole string into its output buffer before it sends a byte of it: a
        planted 256 MB one makes every read of it time out, so the bounded parsers never see it
        (see oversized.Guard). Asked by length (READ_BOUNDED copies nothing), such a key arms the
        guard, and the reads after it go the bounded way and repair it. At most one such ask a
        second, and none while guarded.
        """
        now = time.monotonic()
        if self._guard.until or self.asking or now < self._suspected_at + SUSPECT_EVERY:
            return
        self._suspected_at, self.asking = now, True  # (one ask at a time: an outage times out too)
        asked = tuple(names[:SUSPECTS])
        _background.submit(lambda: self._ask_lengths(asked), dropped=self._asked)

    def _ask_lengths(self, names: tuple[str, ...]) -> None:
        # Redis may still be busy copying for the reads that timed out: try again a few times.
        try:
            for _ in range(SUSPECT_TRIES):
                try:
                    # (arms the guard if one is past the bound; None: closed, or no sync client)
                    self._aside(lambda client: read_bounded_with(client, names, self._guard))
                except Exception:  # (not answered yet, or not at all: the next try, or none)
                    time.sleep(SUSPECT_PAUSE)
                    continue
                return
        finally:
            self._asked()

    def _asked(self) -> None:
        self.asking = False
