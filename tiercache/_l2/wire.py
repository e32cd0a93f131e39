"""L2's commands on redis-py's connections, without its per-command client layer.

``Redis.get`` runs a retry loop of lambdas, observability hooks, response callbacks and
maintenance checks around every command: about 86k instructions of a bare ``r.get()``'s 136k;
redis.asyncio adds an ``asyncio.wait_for`` task around every write. A cache that owns its
timeouts, its breaker and its retry-once needs none of it, so the commands of every L2 hit
(GET, MGET), of every miss (SET NX GET) and the pipelines of sets and invalidations are sent here
on a pooled connection directly, sync or async: redis-py still parses the replies (with the
bounded parsers of ``replies``) and keeps the pool; what it no longer does per command is what
tiercache does once around the call.

Only for the clients tiercache builds from a URL (one server, Sentinel): a client the
application passes in keeps its own behaviour, and a cluster its own routing (``ways_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.connection
from redis._parsers.encoders import Encoder

from tiercache._l2.async_replies import ReadTimer, read_reply, reads_here
from tiercache._l2.pool import SyncWaitingConnectionPool, WaitingConnectionPool

__all__ = ["LeanPipeline", "Ways", "alean_command", "lean_command", "lean_pipeline", "ways_for"]

try:  # hiredis packs a command in C (redis-py's own packer is Python: ten times the cost)
    from hiredis import pack_command as _hiredis_pack  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the hiredis extra is optional
    _hiredis_pack = None

_ENCODER = Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]
_PACKER = redis.connection.PythonRespSerializer(6000, _ENCODER.encode)


def _packed_in_c(command: tuple[Any, ...]) -> list[bytes]:
    return [_hiredis_pack(command)]  # (send_packed_command sends each item of a list)


def _packed_in_python(command: tuple[Any, ...]) -> list[bytes]:
    packed: list[bytes] = _PACKER.pack(*command)  # type: ignore[no-untyped-call]
    return packed


pack: Callable[[tuple[Any, ...]], list[bytes]] = _packed_in_c if _hiredis_pack else _packed_in_python


@dataclass(frozen=True, slots=True)
class Ways:
    """How a store sends its hot commands: the lean way where it may, else through the client.

    From an async client, each returns an awaitable. A lean pipeline's replies are Redis's own
    (see LeanPipeline).
    """

    send: Callable[..., Any]  # send(*command), as execute_command
    pipeline: Callable[[], Any]  # a new pipeline, as pipeline(transaction=False)
    set_nx_get: Callable[[str, bytes, int], Any]  # SET key payload PX ttl_ms NX GET


def ways_for(client: Any, *, cluster: bool) -> Ways:
    """Return the ways for ``client``, sync or async; a cluster's client routes by key or node."""
    pipelines = (None if cluster else lean_pipeline(client)) or (lambda: client.pipeline(transaction=False))
    if cluster:
        lean = None
    else:
        lean = alean_command(client) if isinstance(client, redis.asyncio.Redis) else lean_command(client)
    if lean is None:  # (redis-py's SET returns Redis's reply as it is only when told get=True)
        return Ways(
            client.execute_command,
            pipelines,
            lambda key, payload, ttl_ms: client.set(key, payload, px=ttl_ms, nx=True, get=True),
        )
    return Ways(
        lean, pipelines, lambda key, payload, ttl_ms: lean("SET", key, payload, "PX", ttl_ms, "NX", "GET")
    )


def lean_command(client: Any) -> Callable[..., Any] | None:
    """Return ``send(*command)`` sending on ``client``'s pool directly, or None where it may not.

    A dropped connection (ConnectionError, not a timeout) is tried once more on a fresh one,
    as the clients tiercache builds are told to; any failure leaves the connection closed, so
    no later command reads a reply that was not its own.
    """
    exchange = _exchange_on(client)
    if exchange is None:
        return None

    def send(*command: Any) -> Any:
        return exchange(pack(command), 0)

    return send


def lean_pipeline(client: Any) -> Callable[[], LeanPipeline] | None:
    """Return a maker of ``LeanPipeline``s sending on ``client``'s pool directly (see lean_command).

    ``client`` may be a redis.asyncio one (see alean_command): its pipelines' ``execute``
    returns an awaitable.
    """
    exchange = _aexchange_on(client) if isinstance(client, redis.asyncio.Redis) else _exchange_on(client)
    return None if exchange is None else (lambda: LeanPipeline(exchange))


class LeanPipeline:
    """The commands of a set or an invalidation, sent as one write, their replies read in order.

    As redis-py's pipeline with ``raise_on_error=False``, an error reply is returned in its
    place; replies are Redis's own (``b"OK"`` for a SET, not True).
    """

    __slots__ = ("_commands", "_exchange")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange  # (sync or async: see _exchange_on, _aexchange_on)
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *command: Any) -> None:
        """Queue ``command``."""
        self._commands.append(command)

    def set(self, key: str, value: bytes, *, px: int) -> None:
        """Queue SET ``key`` ``value`` PX ``px``."""
        self._commands.append(("SET", key, value, "PX", px))

    def get(self, key: str) -> None:
        """Queue GET ``key``."""
        self._commands.append(("GET", key))

    def delete(self, *keys: str) -> None:
        """Queue DEL ``keys``."""
        self._commands.append(("DEL", *keys))

    def execute(self, *, raise_on_error: bool = False) -> Any:
        """Send every queued command in one write; return their replies (errors among them).

        From an async client, the awaitable of them.
        """
        if raise_on_error:
            raise TypeError("LeanPipeline.execute(): only raise_on_error=False is supported")
        packed = [b"".join([chunk for command in self._commands for chunk in pack(command)])]
        return self._exchange(packed, len(self._commands))


def _replies(connection: Any, count: int) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as error:  # (its reply read whole: the next one follows)
            replies.append(error)
    return replies


#: ``exchange(packed, count)``: send ``packed`` on a pooled connection; return its one reply
#: (count 0: an error reply raised) or its ``count`` replies (error replies in their place).
Exchange = Callable[[list[bytes], int], Any]


def _exchange_on(client: Any) -> Exchange | None:
    """Return ``exchange(packed, count)`` on ``client``'s pool, or None where it may not be used."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SyncWaitingConnectionPool) or getattr(client, "connection", None) is not None:
        return None  # (not ours, or a single-connection client)
    get_connection, release = pool.take, pool.give

    def exchange(packed: list[bytes], count: int) -> Any:
        connection = get_connection()
        retried = False
        try:
            while True:  # (a loop, not a helper: a frame less on every L2 hit)
                try:
                    connection.send_packed_command(packed)
                    return _replies(connection, count) if count else connection.read_response()
                except redis.ConnectionError:
                    if retried:
                        raise
                    retried = True
                    connection.disconnect()  # (once more, on a connection made afresh)
        except BaseException:
            connection.disconnect()  # (redis-py mostly has; a half-read reply must never be read)
            raise
        finally:
            release(connection)  # (one a server's maintenance notice marked is reconnected there)

    return exchange


def alean_command(client: Any) -> Callable[..., Awaitable[Any]] | None:
    """Return ``send(*command)`` for ``client``, a redis.asyncio one, as ``lean_command`` does.

    redis.asyncio also wraps every write in ``asyncio.wait_for`` (a task per command); here the
    command goes to the connection's stream at once, and only a socket too full to take it
    waits for it to drain, within the connection's timeout. The reply is read by the
    connection's hiredis reader (see async_replies; without hiredis, by redis-py), within that
    timeout too; a read cut short (a timeout, a cancelled task) closes the connection.
    """
    exchange = _aexchange_on(client)
    if exchange is None:
        return None
    if _hiredis_pack is None:
        return lambda *command: exchange(pack(command), 0)
    return lambda *command: exchange([_hiredis_pack(command)], 0)


async def _areplies(connection: Any, count: int, timer: ReadTimer | None) -> list[Any]:
    lean = reads_here(connection)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await (read_reply(connection, timer) if lean else connection.read_response()))
        except redis.ResponseError as error:  # (as _replies)
            replies.append(error)
    return replies


def _aexchange_on(client: Any) -> Exchange | None:
    """Return ``exchange(packed, count)``, awaitable, on ``client``'s pool, or None (see Exchange)."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, WaitingConnectionPool) or getattr(client, "single_connection_client", True):
        return None  # (not ours, or a single-connection client: it connects on first use)
    take, give = pool.take, pool.give
    timeout = pool.connection_kwargs.get("socket_timeout")
    timer = None if timeout is None else ReadTimer(timeout)  # (the pool's connections share it)

    async def exchange(packed: list[bytes], count: int) -> Any:
        connection = await take()
        try:
            try:
                return await _round_trip(connection, packed, count, timer)
            # (and the builtin one: a reset socket raises ConnectionResetError at our stream's
            # read, where redis-py's own read would have raised its ConnectionError)
            except (redis.ConnectionError, ConnectionError):
                await connection.disconnect()  # (once more, on a connection made afresh)
                return await _round_trip(connection, packed, count, timer)
        except BaseException:
            await connection.disconnect(nowait=True)  # (a half-read reply must never be read)
            raise
        finally:
            await give(connection)

    return exchange


async def _round_trip(connection: Any, packed: list[bytes], count: int, timer: ReadTimer | None) -> Any:
    writer = connection._writer
    if writer is None or connection._reader is None:
        await connection.connect()
        writer = connection._writer
    transport = writer.transport
    if transport.is_closing():
        raise redis.ConnectionError("the connection was closed")
    transport.write(packed[0] if len(packed) == 1 else b"".join(packed))
    if transport.get_write_buffer_size():  # (the socket did not take it all at once)
        try:
            async with asyncio.timeout(connection.socket_timeout):
                await writer.drain()
        except TimeoutError:
            raise redis.TimeoutError("Timeout writing to socket") from None  # (as redis-py says)
    if count:
        return await _areplies(connection, count, timer)
    return await (read_reply(connection, timer) if reads_here(connection) else connection.read_response())
