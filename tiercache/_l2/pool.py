"""Connection pools that wait, when full, instead of failing: one for threads, one for coroutines.

redis-py's ConnectionPool raises MaxConnectionsError past ``max_connections``: a burst of our
own would look like an outage. Its BlockingConnectionPool waits, but takes a condition and a
timeout on every command, uncontended or not (about a tenth of an async L2 hit on a loopback
Redis, 2% of a sync one). These are the plain pools until full; only then does a caller wait,
for ``wait`` seconds at most.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.exceptions import MaxConnectionsError

from tiercache._l2.async_replies import is_clean, reads_here

__all__ = [
    "NO_CONNECTION",
    "SyncWaitingConnectionPool",
    "SyncWaitingSentinelPool",
    "WaitingConnectionPool",
    "WaitingSentinelPool",
]

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
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
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
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                continue  # a newcomer took it first: queue again

    async def release(self, connection: Any) -> None:
        """Put ``connection`` back, and wake the longest waiting caller."""
        await super().release(connection)
        if self._waiters:  # (checked here: every command releases, and few find a queue)
            self._wake_next()

    async def take(self) -> Any:
        """Return an idle connection, checked as ``get_connection`` checks it, without its extras.

        redis-py's checkout and return record metrics and dispatch events on every command (as
        the sync pool's; see ``SyncWaitingConnectionPool.take``). The check itself is redis-py's
        own (``ensure_connection``: connected, nothing unread), whichever version is installed.
        """
        checked = not self._available_connections or self._lock.locked()
        if checked:
            connection = await self.get_connection()  # (locked: disconnect() may be closing them)
        else:
            connection = self._available_connections.pop()
            self._in_use_connections.add(connection)
            if reads_here(connection) and is_clean(connection):
                return connection  # (what ensure_connection would find, seen without its frames)
        try:
            if not checked:
                await self.ensure_connection(connection)
            # redis-py 7's Python parser looks for EOF only: bytes already in the stream pass its
            # check, and would answer our command. (8's checks the stream's buffer too.)
            if getattr(getattr(connection, "_reader", None), "_buffer", None):
                await connection.disconnect()
                await self.ensure_connection(connection)
        except BaseException:
            await self.give(connection)
            raise
        return connection

    async def give(self, connection: Any) -> None:
        """Put back a connection from ``take`` (the full ``release`` if it must be reconnected)."""
        if connection not in self._in_use_connections:
            return  # (not ours: from before a reset)
        if connection.should_reconnect():
            await self.release(connection)
            return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)
        if self._waiters:
            self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return


class SyncWaitingConnectionPool(redis.ConnectionPool):
    """The plain pool for threads; past ``max_connections`` callers wait up to ``wait`` seconds."""

    def __init__(self, *, wait: float, **kwargs: Any) -> None:
        self._wait = wait
        super().__init__(**kwargs)

    def reset(self) -> None:
        """Start afresh (redis-py calls this when made, and in a forked child)."""
        if getattr(self, "pid", os.getpid()) != os.getpid():
            _close_inherited([*self._available_connections, *self._in_use_connections])
        super().reset()
        # A parent's thread may have held the condition when it forked: the child gets its own.
        self._freed = threading.Condition()
        self._queued = 0
        # Changes with every release: a waiter that saw it change since its failed attempt
        # tries again instead of waiting (a release may come between the attempt and the wait).
        self._releases = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Return a connection: at once while one is free or may be made, else after a wait."""
        seen = self._releases
        try:
            return super().get_connection(*args, **kwargs)
        except MaxConnectionsError:
            pass
        deadline = time.monotonic() + self._wait
        while True:
            with self._freed:
                self._queued += 1
                try:
                    while self._releases == seen:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise redis.ConnectionError(NO_CONNECTION)
                        self._freed.wait(left)
                finally:
                    self._queued -= 1
            seen = self._releases
            try:
                return super().get_connection(*args, **kwargs)
            except MaxConnectionsError:
                continue  # another thread took it first: wait for the next release

    def release(self, connection: Any) -> None:
        """Put ``connection`` back, and wake a waiting caller if there is one."""
        super().release(connection)
        self._released()

    def _released(self) -> None:
        self._releases += 1
        if self._queued:  # (read after the count changed: a waiter that queued sees the change)
            with self._freed:
                self._freed.notify()

    def take(self) -> Any:
        """Return an idle connection as ``get_connection`` would, without its per-command extras.

        redis-py's pool records metrics and dispatches events on every checkout and return
        (about 5 us of Python, a tenth of an L2 hit); the hot reads (see wire) take the idle
        connection here, checked as redis-py checks it: connected, and with nothing unread
        on it. Anything else (none idle, a forked child, unread data) goes the full way.
        """
        if self.pid == os.getpid():
            with self._lock:
                connection = self._available_connections.pop() if self._available_connections else None
                if connection is not None:
                    self._in_use_connections.add(connection)
            if connection is not None:
                connecting = connection._sock is None
                try:
                    if connecting:  # (connect() runs a retry loop even when connected)
                        connection.connect()  # (failing, it fails as redis-py's checkout would)
                        return connection
                    if not connection.can_read():
                        return connection
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    if connecting:
                        self.release(connection)
                        raise
                    # (closed by the server, say: redis-py's own checkout connects afresh)
                except BaseException:
                    self.release(connection)
                    raise
                self.release(connection)  # (unread data, or dead: redis-py's checkout deals with it)
        return self.get_connection()

    def give(self, connection: Any) -> None:
        """Put back a connection from ``take`` (the full ``release`` if it must be reconnected)."""
        if self.pid != os.getpid() or connection.should_reconnect():
            self.release(connection)
            return
        with self._lock:
            if connection not in self._in_use_connections:
                return  # (not ours: from before a reset)
            self._in_use_connections.remove(connection)
            self._available_connections.append(connection)
        self._released()


def _close_inherited(connections: list[Any]) -> None:
    """Close a forked child's copies of its parent's sockets (the parent's stay open).

    redis-py's reset() in a child only forgets them. A connection whose maintenance handlers
    point back at it (RESP3) is then freed by the garbage collector, which may finalize its
    socket before the connection's own close: a ResourceWarning for every inherited socket,
    and the fds open until then. disconnect() shuts a socket down only in the process that
    opened it, so here it just closes this process's copy.
    """
    for connection in connections:
        with contextlib.suppress(Exception):
            connection.disconnect()


class SyncWaitingSentinelPool(SyncWaitingConnectionPool, redis.sentinel.SentinelConnectionPool):
    """The waiting pool for threads, over connections to whichever server the sentinels call primary."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the connections, and those to the sentinels, which redis-py's pool leaves open."""
        super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.close()


class WaitingSentinelPool(WaitingConnectionPool, redis.asyncio.sentinel.SentinelConnectionPool):
    """The waiting pool for coroutines, over connections to the sentinels' primary."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the connections, and those to the sentinels, which redis-py's pool leaves open."""
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()
