"""A connection pool for coroutines that waits, when full, instead of failing.

redis-py's asyncio ConnectionPool raises MaxConnectionsError past ``max_connections``: a burst of
our own would look like an outage. Its BlockingConnectionPool waits, but takes a condition and a
timeout on every command, uncontended or not (about a tenth of an L2 hit on a loopback Redis).
This one is the plain pool until it is full; only then does a caller queue, first come first
served, for ``wait`` seconds at most.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import MaxConnectionsError

__all__ = ["NO_CONNECTION", "WaitingConnectionPool"]

#: What a caller that waited its time without a connection gets (as BlockingConnectionPool says).
NO_CONNECTION = "No connection available."


class WaitingConnectionPool(redis.asyncio.ConnectionPool):
    """The plain asyncio pool; past ``max_connections`` callers wait up to ``wait`` seconds."""

    def __init__(self, *, wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wait = wait
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Return a connection: at once while one is free or may be made, else after a wait."""
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        except MaxConnectionsError:
            pass
        deadline = time.monotonic() + self._wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.ConnectionError(NO_CONNECTION)
            turn = asyncio.get_running_loop().create_future()
            self._waiters.append(turn)
            try:
                await asyncio.wait_for(turn, left)
            except BaseException as exc:
                if turn.done() and not turn.cancelled():
                    self._wake_next()  # woken, but leaving (cancelled): pass the turn on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(turn)
                if isinstance(exc, TimeoutError):
                    raise redis.ConnectionError(NO_CONNECTION) from None
                raise
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                continue  # a newcomer took it first: queue again

    async def release(self, connection: Any) -> None:
        """Put ``connection`` back, and wake the longest waiting caller."""
        await super().release(connection)
        if self._waiters:  # (checked here: every command releases, and few find a queue)
            self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
