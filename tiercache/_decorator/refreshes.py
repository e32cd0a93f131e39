"""One function's background runs: refreshes, and runs that outlasted their callers.

A key has at most one such run per process. Callers that find a stale or due value start one
(``claim``) unless one is under way or has just replaced what they found; callers that find a
run that overran wait for it (``overrun_of``) rather than start their own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable
from typing import Any, Final

__all__ = ["REFRESHES_REMEMBERED", "Refreshes"]

#: Keys whose last background refresh's end is remembered (see Refreshes.claim).
REFRESHES_REMEMBERED: Final = 1024


class Refreshes:
    """The background runs of one function's keys, under way and just ended."""

    __slots__ = ("_ended", "_lock", "_overruns", "_running")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Hashable] = set()
        self._ended: dict[Hashable, int] = {}  # when each key's last refresh ended (perf_counter_ns)
        self._overruns: dict[Hashable, Any] = {}  # runs that outlasted their callers, by key

    def claim(self, l1_key: Hashable, seen_ns: int | None = None, *, overrun: Any = None) -> bool:
        """Return True (once) if no background run of this key is under way in this process yet.

        ``seen_ns``: when the caller found the value it would refresh (``perf_counter_ns``). A
        refresh of the key that ended since replaced that value already: a caller whose read
        crossed its write does not start another. ``overrun``: the claim is for a run that
        outlasted its caller (a future, or a task), which later callers wait for (overrun_of).
        """
        with self._lock:
            if l1_key in self._running:
                return False
            if seen_ns is not None and self._ended.get(l1_key, seen_ns) > seen_ns:
                return False
            self._running.add(l1_key)
            if overrun is not None:
                self._overruns[l1_key] = overrun
            return True

    def overrun_of(self, l1_key: Hashable) -> Any:
        """Return the run of this key that outlasted its caller and goes on, if this caller can wait for it.

        A task can be waited for on its own event loop only (None elsewhere: a run of its own).
        """
        pending = self._overruns.get(l1_key)
        if isinstance(pending, asyncio.Future):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            return pending if pending.get_loop() is loop else None
        return pending

    def running(self, l1_key: Hashable) -> bool:
        """Whether a background run of this key (a refresh, or a run that overran) is under way."""
        return l1_key in self._running

    def release(self, l1_key: Hashable) -> None:
        """Mark the background run of this key as finished."""
        with self._lock:
            self._running.discard(l1_key)
            self._overruns.pop(l1_key, None)
            if len(self._ended) >= REFRESHES_REMEMBERED:
                self._ended.clear()  # (a read that crossed a refresh then may start one more)
            self._ended[l1_key] = time.perf_counter_ns()
