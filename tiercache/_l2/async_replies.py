"""Replies read off a redis.asyncio connection by its own hiredis reader, one timer per pool.

redis.asyncio's ``read_response`` puts ``asyncio.timeout()`` around every reply (a Timeout, a
timer pushed on the loop's heap, a task's cancel bookkeeping: 35k instructions, an eighth of an
async L2 hit) and four frames of dispatch around the hiredis reader that parses it. The lean
commands (see wire) read their replies here instead, with that same reader, the bound checked
before each read from the socket as the bounded parser checks it (see replies).

The socket timeout is kept by a ``ReadTimer`` per pool: a read notes its deadline in a dict,
and one timer, ticking every quarter of the timeout while reads are under way, fails the stream
of any read past its deadline (``StreamReader.set_exception``: the read waiting on it raises at
once). A reply so takes between its timeout and a quarter more to time out, as a slow
redis-server is seen the same; the connection is then dropped, as redis-py drops it.

Only a connection whose parser is the bounded hiredis one is read here; any other (hiredis not
installed) keeps redis-py's ``read_response``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, NoReturn

import redis
import redis.asyncio

from tiercache._l2.oversized import BOUND
from tiercache._l2.replies import HIREDIS_PARSER, NOT_ENOUGH_DATA, check_unparsed

__all__ = ["MIN_TICK", "ReadTimer", "is_clean", "read_reply", "reads_here"]

try:  # (hiredis 3.2 and later hand RESP3 pushes over as this type)
    from hiredis import PushNotification as _Push  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - an older hiredis, or none
    _Push = None

_PLAIN_READ: Final = redis.asyncio.Connection.read_response

#: The timer never ticks more often than this, however short the timeout.
MIN_TICK: Final = 0.001


class ReadTimer:
    """The socket timeout of every lean read on one pool's connections (see the module)."""

    __slots__ = ("_handle", "_loop", "_reads", "_tick", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._tick = max(timeout / 4, MIN_TICK)
        self._reads: dict[asyncio.StreamReader, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, stream: asyncio.StreamReader) -> None:
        """Note that a reply is to be read from ``stream`` within the timeout from now."""
        self._reads[stream] = time.monotonic() + self.timeout
        loop = asyncio.get_running_loop()
        # (A pool lives on one loop; were it ever read on another, that loop ticks too: a timer
        # left on a loop that stopped must not leave reads here without a timeout.)
        if self._handle is None or self._loop is not loop:
            self._loop, self._handle = loop, loop.call_later(self._tick, self._check)

    def stop(self, stream: asyncio.StreamReader) -> bool:
        """Forget ``stream``'s read; False if it had overran (its stream was failed)."""
        return self._reads.pop(stream, None) is not None

    def _check(self) -> None:
        now = time.monotonic()
        for stream in [stream for stream, deadline in self._reads.items() if deadline <= now]:
            del self._reads[stream]
            stream.set_exception(redis.TimeoutError("Timeout reading from socket"))  # (as redis-py says)
        loop = asyncio.get_running_loop()
        if loop is self._loop:  # (else the timer of a loop this pool left: the new one ticks)
            self._handle = loop.call_later(self._tick, self._check) if self._reads else None


def _closed() -> NoReturn:
    raise redis.ConnectionError("Connection closed by server.")  # (as redis-py says)


def reads_here(connection: Any) -> bool:
    """Whether ``connection``'s replies may be read here, not by its ``read_response``.

    Its parser must be the bounded hiredis one, and its class must read replies as redis-py's
    plain Connection does: a Sentinel-managed one turns a READONLY reply (a primary demoted under
    it) into a dropped connection and a ConnectionError, so the command is tried once more on
    the new primary; read here, it would be an error reply, and a pipeline would go on writing
    to the replica.
    """
    return type(connection._parser) is HIREDIS_PARSER and type(connection).read_response is _PLAIN_READ


def is_clean(connection: Any) -> bool:
    """Whether ``connection`` (one that ``reads_here``) is connected with nothing unread.

    What redis-py's ``ensure_connection`` asks, without its frames; False sends a connection
    to that check (which reconnects it, or applies the pushes waiting on it).
    """
    parser = connection._parser
    stream = parser._stream
    return bool(
        getattr(parser, "_connected", False)
        and connection._writer is not None
        and stream is connection._reader
        and not parser._reader.has_data()
        and not stream._buffer
        and not stream._eof
        and stream._exception is None
    )


async def read_reply(connection: Any, timer: ReadTimer | None) -> Any:
    """Return the next reply on ``connection`` (one that ``reads_here``); raise an error reply.

    ``timer`` None: no timeout (the connection has none). A failure leaves the connection
    half read: the caller must drop it.
    """
    parser = connection._parser
    reader = parser._reader
    while True:  # (a loop, not a recursion: a burst of pushes must not grow the stack)
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA:
            stream = parser._stream
            if timer is not None:
                timer.start(stream)
            try:
                while reply is NOT_ENOUGH_DATA:
                    if reader.len() > BOUND.bytes:  # (the first check: the rest is check_unparsed's)
                        check_unparsed(reader.len())
                    reader.feed(await stream.read(parser._read_size) or _closed())  # (socket_read_size)
                    reply = reader.gets()
            except BaseException:
                if timer is not None:
                    timer.stop(stream)
                raise
            if timer is not None and not timer.stop(stream):
                raise redis.TimeoutError("Timeout reading from socket")  # (read, but its stream failed)
        if _Push is None or not isinstance(reply, _Push):
            break
        await parser.handle_push_response(reply)  # (RESP3: a notice between two replies)
    if isinstance(reply, Exception):
        raise reply  # (an error reply, read whole; or a connection error hiredis was handed)
    return reply
