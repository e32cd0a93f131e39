"""Replies too long to be ours are refused as they arrive, not after they were read whole.

Nothing we write is longer than the largest ``max_value_bytes`` of a cache in this process plus
an envelope; anyone who can write Redis can plant far more under a key we read (256 MB under a
value key cost four readers 1.46 GB and 17 s; under a generation or tag key, every call). The
parsers here are redis-py's own, given a bound: a string reply whose length passes it raises
``OversizedReply`` before more of it is read, and redis-py drops the connection (the rest of
the reply is never read). The stores then read the same keys again through ``READ_BOUNDED``,
which answers a key past the bound with its length and first bytes only (``Oversized``), so
the tiers treat it as what it is: a miss whose key is overwritten, a generation or tag token
that is rewritten.

hiredis buffers a bulk string until it is whole: its unparsed bytes are checked before each
read from the socket, so at most the bound and one read (64 KiB) come in. The pure-Python
parsers know a bulk string's length from its header, and check that.
"""

from __future__ import annotations

from typing import Any, Final

import redis
from redis._parsers import _AsyncRESP2Parser, _AsyncRESP3Parser, _RESP2Parser, _RESP3Parser
from redis._parsers.socket import SocketBuffer
from redis.utils import HIREDIS_AVAILABLE

from tiercache._l2.oversized import BOUND, OVERSIZED_PREFIX, Oversized

__all__ = [
    "HIREDIS_PARSER",
    "NOT_ENOUGH_DATA",
    "READ_BOUNDED",
    "OversizedReply",
    "abound_cluster",
    "abounded_parser",
    "bound_cluster",
    "bounded_parser",
    "check_unparsed",
    "from_bounded_reads",
    "queue_bounded_reads",
]


class OversizedReply(redis.RedisError):
    """A string reply longer than the bound started to arrive; its connection is dropped."""


def _check(length: int) -> None:
    """Raise OversizedReply if a string of ``length`` bytes is past the bound."""
    if length > BOUND.bytes:
        raise OversizedReply(
            f"a reply of more than {BOUND.bytes} bytes (the largest max_value_bytes here, with "
            "its envelope): not a value of ours"
        )


# One key per call (a pipeline of them for many keys: a cluster routes each by its slot).
# Answers {0} absent, {1} a key of another type, {2, value}, or {3, length, first bytes} for
# a string past ARGV[1] bytes, whose whole is never copied (STRLEN and GETRANGE do not).
READ_BOUNDED: Final = """
local length = redis.pcall('STRLEN', KEYS[1])
if type(length) ~= 'number' then return {1} end
if length > tonumber(ARGV[1]) then
  return {3, length, redis.call('GETRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)}
end
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'string' then return {2, value} end
if value then return {1} end
return {0}
"""


def queue_bounded_reads(pipeline: Any, keys: Any) -> None:
    """Queue READ_BOUNDED for each of ``keys`` on ``pipeline``.

    EVAL, as a command: a pipeline loads no script, and a cluster's has no ``eval()``.
    """
    for key in keys:
        pipeline.execute_command("EVAL", READ_BOUNDED, 1, key, BOUND.bytes, OVERSIZED_PREFIX)


def from_bounded_reads(replies: list[Any], other_type: bytes | None = None) -> list[bytes | None]:
    """Return what each READ_BOUNDED reply says the key holds, as MGET would say it.

    A key of another type reads as ``other_type`` (MGET: None; a pipelined GET fails, which
    the tag claim reads as b""). A refused script is an error (raised).
    """
    found: list[bytes | None] = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
        kind = int(reply[0])
        if kind == 2:
            found.append(reply[1])
        elif kind == 3:
            found.append(Oversized(reply[2], int(reply[1])))
        else:
            found.append(other_type if kind == 1 else None)
    return found


class _BoundedSocketBuffer(SocketBuffer):
    def read(self, length: int, *args: Any, **kwargs: Any) -> bytes:
        _check(length)
        return super().read(length, *args, **kwargs)


def _bounded_buffer(parser: Any) -> None:
    buffer = parser._buffer
    parser._buffer = _BoundedSocketBuffer(buffer._sock, buffer.socket_read_size, buffer.socket_timeout)


class _BoundedRESP2Parser(_RESP2Parser):
    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)  # type: ignore[no-untyped-call]
        _bounded_buffer(self)


class _BoundedRESP3Parser(_RESP3Parser):
    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)  # type: ignore[no-untyped-call]
        _bounded_buffer(self)


class _AsyncBoundedRESP2Parser(_AsyncRESP2Parser):
    async def _read(self, length: int) -> bytes:
        _check(length)
        return await super()._read(length)


class _AsyncBoundedRESP3Parser(_AsyncRESP3Parser):
    async def _read(self, length: int) -> bytes:
        _check(length)
        return await super()._read(length)


_SYNC: dict[tuple[bool, int], type] = {(False, 2): _BoundedRESP2Parser, (False, 3): _BoundedRESP3Parser}
_ASYNC: dict[tuple[bool, int], type] = {
    (False, 2): _AsyncBoundedRESP2Parser,
    (False, 3): _AsyncBoundedRESP3Parser,
}

#: What hiredis may still hold of replies it parsed (it trims its buffer past a kilobyte) and
#: a string's header: not counted against the bound.
_PARSED_ROOM: Final = 4096


def check_unparsed(unparsed: int) -> None:
    """Raise OversizedReply if a reader holding ``unparsed`` bytes holds a string past the bound.

    For readers that buffer a string until it is whole (hiredis's): asked before each read
    from the socket, while the reply so far is incomplete.
    """
    _check(unparsed - _PARSED_ROOM)


#: The bounded parser of redis.asyncio's connections reading with hiredis (None without it).
HIREDIS_PARSER: type | None = None

if HIREDIS_AVAILABLE:
    from redis._parsers import _AsyncHiredisParser, _HiredisParser

    class _BoundedHiredisParser(_HiredisParser):
        def read_from_socket(self, *args: Any, **kwargs: Any) -> Any:
            # (Called only while the reply so far is incomplete: what hiredis holds unparsed
            # is the string still arriving, and at most a kilobyte it already parsed.)
            if self._reader is not None:
                check_unparsed(self._reader.len())
            return super().read_from_socket(*args, **kwargs)  # type: ignore[no-untyped-call]

    class _AsyncBoundedHiredisParser(_AsyncHiredisParser):
        async def read_from_socket(self) -> Any:
            check_unparsed(self._reader.len())  # type: ignore[attr-defined]
            return await super().read_from_socket()  # type: ignore[no-untyped-call]

    for protocol in (2, 3):
        _SYNC[True, protocol], _ASYNC[True, protocol] = _BoundedHiredisParser, _AsyncBoundedHiredisParser
    HIREDIS_PARSER = _AsyncBoundedHiredisParser
    from redis._parsers.hiredis import NOT_ENOUGH_DATA  # (what redis-py's readers say, not False)
else:  # pragma: no cover - the hiredis extra is optional
    NOT_ENOUGH_DATA = object()


def bounded_parser(protocol: int, *, hiredis: bool = HIREDIS_AVAILABLE) -> type:
    """Return the bounded parser for redis-py's sync connections speaking RESP ``protocol``."""
    return _SYNC[hiredis, protocol]


def abounded_parser(protocol: int, *, hiredis: bool = HIREDIS_AVAILABLE) -> type:
    """Return the bounded parser for redis.asyncio's connections speaking RESP ``protocol``."""
    return _ASYNC[hiredis, protocol]


def bound_cluster(client: Any, protocol: int) -> None:
    """Have a new sync RedisCluster's node connections parse with the bound.

    Its constructor drops a ``parser_class``, but its node pools take one: set it in the
    options every node is made with, and on the nodes made already (whose connections, opened
    to read the slot map, are closed: the next ones are made bounded).
    """
    parser = bounded_parser(protocol)
    manager = client.nodes_manager
    manager.connection_kwargs["parser_class"] = parser
    for node in manager.nodes_cache.values():
        pool = node.redis_connection.connection_pool
        pool.connection_kwargs["parser_class"] = parser
        pool.disconnect()
        pool.reset()


def abound_cluster(client: Any, protocol: int) -> None:
    """Have a new asyncio RedisCluster's connections parse with the bound.

    As redis-py itself wires its maintenance notifications in: the options every node is made
    with, and the start-up nodes made already (they connect only when first used).
    """
    parser = abounded_parser(protocol)
    manager = client.nodes_manager
    manager.connection_kwargs["parser_class"] = parser
    for node in manager.startup_nodes.values():
        node.connection_kwargs["parser_class"] = parser
