"""A subscription's replies, read straight off its socket.

Every process hears every announcement on its namespace's channel, its own included: each set
of a coherent adapter (Django's ``cache.set``) wakes the listener once. redis-py's
``PubSub.get_message`` spends most of that wake-up around the read (a retry wrapper, health
checks, the socket's timeout set and restored on every read, a dict per message): about 9 us a
message, against 2 us for a poll, a ``recv`` and a reply parser. So once a subscription is
made through redis-py (which connects, authenticates and sends the first SUBSCRIBE), the
listener reads it here: ``poll`` on the socket, ``recv``, and hiredis's reader, or the small
Python reader below where hiredis is not installed, which answers the same way.

The replies are a subscription's only: arrays (RESP2) or pushes (RESP3) of bulk strings and
integers, simple strings (a RESP3 PONG), errors. What is not a socket redis-py opened (a
fakeredis client an application passed in) is read through ``get_message`` as before.
Replies are bounded as every other read is (``replies``): a string past the bound that starts
to arrive drops the subscription.
"""

from __future__ import annotations

import importlib
import select
import socket
from collections.abc import Callable
from typing import Any, Final

from redis.utils import HIREDIS_AVAILABLE

from tiercache._l2.replies import check_unparsed

__all__ = ["PubSubInbox", "ReplyError", "RespReader", "SocketInbox", "Subscription", "inbox_of"]

#: Bytes asked of the socket per read (redis-py's own figure).
READ_SIZE: Final = 65536


class ReplyError(Exception):
    """An error reply (``-ERR ...``), as hiredis's reader returns one: returned, not raised."""


class _Incomplete(Exception):
    pass


class RespReader:
    """hiredis's ``Reader`` (``feed``, ``gets``, ``len``) for a subscription's replies, in Python.

    ``gets()`` returns the next whole reply, or False until one has arrived whole. Nested
    arrays are read (a map or attribute reply is not: a subscription gets none).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0  # where the next reply begins

    def feed(self, data: bytes) -> None:
        """Add bytes read from the socket."""
        self._buffer += data

    def len(self) -> int:
        """Return how many bytes are held unparsed."""
        return len(self._buffer) - self._start

    def gets(self) -> Any:
        """Return the next reply, or False if it has not arrived whole."""
        try:
            reply, end = self._reply(self._start)
        except _Incomplete:
            return False
        if end == len(self._buffer):
            self._buffer.clear()
            self._start = 0
        else:
            self._start = end
        return reply

    def _reply(self, at: int) -> tuple[Any, int]:
        buffer = self._buffer
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            raise _Incomplete
        kind, line, at = buffer[at], bytes(buffer[at + 1 : line_end]), line_end + 2
        if kind in b"*>":  # an array, a push
            count = int(line)
            items = []
            for _ in range(count):
                item, at = self._reply(at)
                items.append(item)
            return (items if count >= 0 else None), at
        if kind == ord("$"):
            length = int(line)
            if length < 0:
                return None, at
            if len(buffer) < at + length + 2:
                raise _Incomplete
            return bytes(buffer[at : at + length]), at + length + 2
        scalar = _SCALARS.get(kind)
        if scalar is None:
            raise ValueError(f"not a reply a subscription gets: {bytes([kind])!r}")
        return scalar(line), at


#: How each one-line reply reads: an integer, a simple string, an error, RESP3's null.
_SCALARS: Final[dict[int, Callable[[bytes], Any]]] = {
    ord(":"): int,
    ord("+"): bytes,
    ord("-"): lambda line: ReplyError(line.decode("utf-8", "replace")),
    ord("_"): lambda _line: None,
}


def _reader() -> Any:
    # (hiredis comes with the hiredis extra only, and its reader returns errors the same way)
    return importlib.import_module("hiredis").Reader() if HIREDIS_AVAILABLE else RespReader()


class SocketInbox:
    """A subscribed connection read off its socket; commands still go out through redis-py."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._socket: socket.socket = connection._sock
        self._reader = _reader()
        self._poll = select.poll()
        self._poll.register(self._socket, select.POLLIN)
        # (TLS: bytes decrypted but not read yet wait in the SSL object, where poll cannot see
        # them; none do while each read asks for more than a record holds, as READ_SIZE does)
        self._pending = getattr(self._socket, "pending", None)

    def subscribe(self, channels: list[str]) -> None:
        """Subscribe to more ``channels`` (confirmed by replies read later)."""
        self._send("SUBSCRIBE", *channels)

    def ping(self) -> None:
        """Ask for a PONG (a quiet subscription's proof that the server still answers)."""
        self._send("PING")

    def _send(self, *command: str) -> None:
        # redis-py connects again by itself when its socket is gone: a new socket whose replies
        # nobody here reads. A subscription that lost its socket is lost.
        if self._connection._sock is not self._socket:
            raise ConnectionError("the subscription's connection was closed")
        self._connection.send_command(*command, check_health=False)

    def read(self, timeout: float) -> Any:
        """Return the next reply, None if none came within ``timeout`` seconds; raise if lost."""
        reader = self._reader
        while (reply := reader.gets()) is False:
            if not (self._pending and self._pending()) and not self._poll.poll(timeout * 1000):
                return None
            check_unparsed(reader.len())
            data = self._socket.recv(READ_SIZE)
            if not data:
                raise ConnectionError("the server closed the subscription")
            reader.feed(data)
        if isinstance(reply, Exception):
            raise reply  # (NOPERM on a channel, say: the subscription cannot be made)
        return reply


class PubSubInbox:
    """A subscription read through redis-py's ``get_message`` (not a socket of redis-py's)."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def subscribe(self, channels: list[str]) -> None:
        """Subscribe to more ``channels``."""
        self._pubsub.subscribe(*channels)

    def ping(self) -> None:
        """Ask for a PONG."""
        self._pubsub.ping()

    def read(self, timeout: float) -> Any:
        """Return the next reply as ``SocketInbox`` does (``[kind, channel, data]``), or None."""
        message = self._pubsub.get_message(timeout=timeout)
        if message is None:
            return None
        kind = message.get("type")
        return [kind.encode() if isinstance(kind, str) else kind, message.get("channel"), message.get("data")]


def inbox_of(pubsub: Any) -> SocketInbox | PubSubInbox:
    """Return how to read ``pubsub``, subscribed already (so connected): off its socket if it has one."""
    connection = pubsub.connection
    if isinstance(getattr(connection, "_sock", None), socket.socket):
        return SocketInbox(connection)
    return PubSubInbox(pubsub)


class Subscription:
    """What the listener holds (``coherence.Bus``): a redis-py PubSub, read as above once subscribed."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self.inbox: SocketInbox | PubSubInbox | None = None

    def subscribe(self, channels: list[str]) -> None:
        """Subscribe to ``channels``; the first time, redis-py connects and authenticates too."""
        if self.inbox is None:
            self.pubsub.subscribe(*channels)
            self.inbox = inbox_of(self.pubsub)
        else:
            self.inbox.subscribe(channels)

    def ping(self) -> None:
        """Ask for a PONG (once subscribed)."""
        if self.inbox is not None:
            self.inbox.ping()

    def read(self, timeout: float) -> Any:
        """Return the next reply (None: none within ``timeout`` seconds); raise if lost."""
        if self.inbox is None:
            raise ConnectionError("nothing is subscribed yet")
        return self.inbox.read(timeout)

    def close(self) -> None:
        """Unsubscribe and close the connection."""
        self.pubsub.close()

    def drop(self) -> None:
        """Close this process's copy of the socket only (in a forked child: it is the parent's)."""
        connection = getattr(self.pubsub, "connection", None)
        if connection is not None:
            connection.disconnect()
