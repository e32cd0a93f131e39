"""L2: Redis behind the few calls the tiers make, in sync and async twins; the only redis import.

Every failure leaves here as one of two exceptions of ours: ``RemoteUnavailable`` when the
endpoint could not be reached or did not answer in time (the circuit breaker counts these), and
``RemoteRejected`` when Redis answered with an error about one command (a key of another type,
out of memory, no permission), which says nothing about the endpoint's health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import urllib.parse
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Final, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiercache import _background
from tiercache._l2.breaker import CircuitBreaker
from tiercache._l2.coherence import LOST_AFTER, Bus
from tiercache._l2.envelope import (
    ABSENT,
    FOREIGN_TOKEN,
    LEAD,
    MAX_GENERATION,
    TOKEN_OFFSET,
    TOKEN_SIZE,
    fresh_since_absent,
)
from tiercache._l2.pool import NO_CONNECTION, WaitingConnectionPool

__all__ = [
    "AsyncStore",
    "Endpoint",
    "RemoteError",
    "RemoteRejected",
    "RemoteUnavailable",
    "SyncStore",
    "check_url",
    "redact_url",
]


logger = logging.getLogger("tiercache")


class RemoteError(Exception):
    """An L2 operation failed."""


class RemoteUnavailable(RemoteError):
    """Redis could not be reached, or did not answer within the timeout."""


class RemoteSaturated(RemoteUnavailable):
    """Every connection of our pool was busy for too long: a burst on our side, not an outage.

    The call skips L2 as for an outage (what the key holds now is unknown), but the breaker is
    not told: Redis itself is fine.
    """


class RemoteRejected(RemoteError):
    """Redis answered one command with an error; the endpoint itself is fine.

    ``kept_in_redis``: for an invalidation, whether data stayed in Redis (else only the
    announcement to other processes was refused).
    """

    def __init__(self, message: str, *, kept_in_redis: bool = True) -> None:
        super().__init__(message)
        self.kept_in_redis = kept_in_redis


def _translate(exc: BaseException) -> RemoteError:
    if isinstance(exc, redis.ResponseError):
        return RemoteRejected(str(exc))
    if _saturated(exc):
        return RemoteSaturated(f"{type(exc).__name__}: {exc}")
    return RemoteUnavailable(f"{type(exc).__name__}: {exc}")


def _saturated(exc: BaseException) -> bool:
    # redis-py's own pool limit (a client the application built), or our blocking pool's wait
    # for a free connection running out: both come before any command is sent.
    return isinstance(exc, redis.exceptions.MaxConnectionsError) or (
        isinstance(exc, redis.ConnectionError) and str(exc) == NO_CONNECTION
    )


#: Connections per client by default (configure(max_connections=)).
DEFAULT_MAX_CONNECTIONS: Final = 50
#: The least a caller waits for a pooled connection to come free before it skips L2.
POOL_WAIT: Final = 1.0


def _retry_once() -> Retry:
    # A connection that died under us (a Redis restart, CLIENT KILL, an idle timeout) is tried
    # once more on a fresh one before the operation counts as failed; a timeout is not retried
    # (the timeout bounds the call). Every command we send may be sent twice: a write that
    # landed but lost its reply finds its own value and is refused, which only costs a miss.
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _async_retry_once() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_CLUSTER_SUFFIX = "+cluster"


def plain_cluster_url(url: str) -> str | None:
    """Return the plain URL redis-py's cluster client takes, if ``url`` names a cluster."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.removesuffix(_CLUSTER_SUFFIX)}{sep}{rest}" if scheme.endswith(_CLUSTER_SUFFIX) else None


def check_url(url: str, owner: str) -> str:
    """Return ``url`` if it is a Redis URL redis-py can connect with; else raise ValueError."""
    if not isinstance(url, str):
        raise TypeError(f"{owner}: redis_url must be a str, not {type(url).__name__}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{owner}: redis_url {redact_url(url)!r} must start with one of "
            + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    try:
        redis.connection.parse_url(plain_cluster_url(url) or url)  # type: ignore[no-untyped-call]  # untyped
    except ValueError as exc:
        raise ValueError(f"{owner}: redis_url {redact_url(url)!r} is invalid: {exc}") from None
    return url


#: Query parameters whose values are credentials (redis-py reads ``?password=`` too).
_SECRET_PARAMETERS = ("pass", "pwd", "secret", "token", "auth", "credential")


def redact_url(url: str) -> str:
    """Return ``url`` with any password, in its user part or its query, replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is not None:
        user = f"{parts.username}:***@" if parts.username else ":***@"
        url = urllib.parse.urlunsplit(parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[-1]))
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        shown = urllib.parse.urlencode([(k, "***" if _secret(k) else v) for k, v in pairs], safe="*/")
        url = url.split("?", 1)[0] + "?" + shown + (f"#{parts.fragment}" if parts.fragment else "")
    return url


def _secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_PARAMETERS)


class _Translated:
    """``with TRANSLATED:`` turns a client failure into a RemoteError (stateless, reusable)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # Anything the client raises is an L2 failure to us, not only RedisError and OSError: a
        # connection closed under a command surfaces as ValueError, and must not reach a caller
        # either. (Interruptions, BaseException, pass through.)
        if isinstance(exc, Exception) and not isinstance(exc, RemoteError):
            raise _translate(exc) from exc


_TRANSLATED = _Translated()


AsyncClientSource = Callable[[], "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"]
#: ``(channel, message)`` to publish after a change (see ``_coherence``), or None.
Announce = tuple[str, bytes] | None


class Endpoint:
    """One Redis deployment, shared by every function and adapter that uses it.

    Holds the sync store (its client is thread-safe and pooled) and one async store per event
    loop: an asyncio connection belongs to the loop that opened it and is never used from
    another. Built from a URL, or from client objects the application made itself. A Redis
    Cluster is the same to the tiers: its stores split multi-key commands by slot.
    """

    def __init__(
        self,
        name: str,
        make_sync: Callable[[], Any],
        make_async: AsyncClientSource,
        *,
        async_per_loop: bool = True,
        probe: Callable[[], bool] | None = None,
        subscribe: Callable[[int], Any] | None = None,
        cluster: bool = False,
    ) -> None:
        self.name = name
        self._make_sync = make_sync
        self._make_async = make_async
        self._async_per_loop = async_per_loop
        self.cluster = cluster
        # Cross-process invalidations; None when no sync connection can be made to listen on.
        self.bus = Bus(name, subscribe) if subscribe is not None else None
        self.breaker = CircuitBreaker(name, probe=probe, on_open=self._connections_went_bad)
        # Bumped whenever the breaker opens: pooled connections may all be dead now (a Redis
        # restart kills every one of them), so each store drops its pool before its next use.
        self.epoch = 0
        self._lock = threading.Lock()
        self._sync: SyncStore | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncStore] = (
            weakref.WeakKeyDictionary()
        )
        self._shared_async: AsyncStore | None = None
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_store: AsyncStore | None = None
        self._access_checked: set[str] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float,
        connect_timeout: float,
        tls: dict[str, str] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> Endpoint:
        """Return an endpoint whose clients connect to ``url`` with these timeouts.

        ``tls`` adds redis-py's TLS options (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``)
        for a ``rediss://`` URL; the URL's query may carry them as well. Each client keeps at
        most ``max_connections``; callers beyond them wait for one (see RemoteSaturated).
        """
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            # One attempt per operation: the timeout bounds a call, and the breaker decides
            # when to try again, not redis-py's own retry loop.
            "retry_on_error": [],
            **(tls or {}),
        }
        if url.startswith("rediss"):
            # redis-py 5 checked no host names: a certificate for any host its CA signed would
            # do. (A URL's own ?ssl_check_hostname= still wins: redis-py applies it last.)
            options["ssl_check_hostname"] = True
        cluster_url = plain_cluster_url(url)
        if cluster_url is not None:
            return cls._cluster_from_url(url, cluster_url, options)

        wait = max(POOL_WAIT, 10 * timeout)

        def make_sync() -> redis.Redis:
            pool = redis.BlockingConnectionPool.from_url(
                url, retry=_retry_once(), max_connections=max_connections, timeout=wait, **options
            )
            return redis.Redis.from_pool(pool)

        def make_async() -> redis.asyncio.Redis:
            pool = WaitingConnectionPool.from_url(
                url, retry=_async_retry_once(), max_connections=max_connections, wait=wait, **options
            )
            return redis.asyncio.Redis.from_pool(pool)

        def probe() -> bool:
            # A connection of its own: the pool's may be the dead ones that failed.
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
            try:
                return bool(client.ping())
            except Exception:  # any failure means "not back yet"
                return False
            finally:
                client.close()

        def subscribe(_attempt: int) -> Any:
            # Its own client: a subscribed connection can do nothing else, and waits longer.
            listen = {**options, "socket_timeout": max(timeout, LOST_AFTER)}
            return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **listen).pubsub()  # type: ignore[no-untyped-call]

        return cls(
            redact_url(url),
            make_sync,
            make_async,
            probe=probe,
            subscribe=subscribe,
        )

    @classmethod
    def _cluster_from_url(cls, url: str, cluster_url: str, options: dict[str, Any]) -> Endpoint:
        # The cluster client follows MOVED/ASK and refreshes its slot map itself; with no retries
        # of ours, a dead primary costs one timeout per operation until the breaker opens.
        options = {key: value for key, value in options.items() if key != "retry_on_error"}
        endpoint: Endpoint

        def make_sync() -> redis.cluster.RedisCluster:
            return redis.cluster.RedisCluster.from_url(cluster_url, retry=Retry(NoBackoff(), 0), **options)

        def make_async() -> redis.asyncio.cluster.RedisCluster:
            return redis.asyncio.cluster.RedisCluster.from_url(
                cluster_url, retry=AsyncRetry(NoBackoff(), 0), **options
            )

        def probe() -> bool:
            client = make_sync()
            try:
                return bool(client.ping(target_nodes=redis.cluster.RedisCluster.PRIMARIES))
            except Exception:  # any failure (a primary still down) means "not back yet"
                return False
            finally:
                client.close()

        def subscribe(attempt: int) -> Any:
            # PUBLISH reaches every node of a cluster: listen on any reachable one, the next
            # one after each failure.
            nodes = [(node.host, node.port) for node in endpoint.sync_store().client.get_nodes()]
            parts = urllib.parse.urlsplit(cluster_url)
            host, port = nodes[attempt % len(nodes)] if nodes else (parts.hostname, parts.port or 6379)
            netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
            node_url = urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}{host}:{port}"))
            listen = {**options, "socket_timeout": max(options["socket_timeout"], LOST_AFTER)}
            return redis.Redis.from_url(node_url, retry=Retry(NoBackoff(), 0), **listen).pubsub()  # type: ignore[no-untyped-call]

        endpoint = cls(redact_url(url), make_sync, make_async, probe=probe, subscribe=subscribe, cluster=True)
        return endpoint

    @classmethod
    def from_clients(
        cls,
        sync_client: redis.Redis | redis.cluster.RedisCluster | None,
        async_client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster | AsyncClientSource | None,
    ) -> Endpoint:
        """Return an endpoint over clients the application built (for sync and/or async use).

        ``async_client`` may be a client, used from whichever loop calls (the application
        then keeps to one loop), or a zero-argument factory called once per event loop.
        """

        def missing() -> Any:
            raise RemoteUnavailable("this endpoint was configured without a client for this kind of caller")

        make_async: AsyncClientSource
        if async_client is None:
            make_async, per_loop = missing, False
        elif isinstance(async_client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            make_async, per_loop = (lambda: async_client), False
        else:
            make_async, per_loop = async_client, True
        make_sync = missing if sync_client is None else (lambda: sync_client)
        kind = type(sync_client if sync_client is not None else async_client).__qualname__
        cluster = isinstance(sync_client, redis.cluster.RedisCluster) or isinstance(
            async_client, redis.asyncio.cluster.RedisCluster
        )

        def probe() -> bool:
            try:
                return bool(sync_client is not None and sync_client.ping())
            except Exception:  # any failure means "not back yet"
                return False

        def subscribe(attempt: int) -> Any:
            if isinstance(sync_client, redis.cluster.RedisCluster):
                nodes = sync_client.get_nodes()  # type: ignore[no-untyped-call]
                return nodes[attempt % len(nodes)].redis_connection.pubsub()
            return cast("redis.Redis", sync_client).pubsub()  # type: ignore[no-untyped-call]

        # Without a sync client nothing can probe or listen from a thread: calls probe, one at a
        # time, and L1s follow TTLs only.
        return cls(
            f"client {kind}",
            make_sync,
            make_async,
            async_per_loop=per_loop,
            probe=probe if sync_client is not None else None,
            subscribe=subscribe if sync_client is not None else None,
            cluster=cluster,
        )

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r})"

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
            denied = self.sync_store().missing_permissions(namespace, channel)
        except Exception:  # no sync client, or Redis is down: the calls will say so
            return
        if denied:
            logger.warning(
                "tiercache: the Redis user at %s may not run %s on %s:*; values will not be stored "
                "there and cache_invalidate()/cache_clear() raise InvalidationError",
                self.name,
                ", ".join(denied),
                namespace,
            )

    def _connections_went_bad(self) -> None:
        self.epoch += 1

    def sync_store(self) -> SyncStore:
        """Return the store for sync callers."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = SyncStore(self._make_sync(), self)
        return self._sync

    def async_store(self) -> AsyncStore:
        """Return the store for coroutines running on the current event loop."""
        if not self._async_per_loop:
            if self._shared_async is None:
                self._shared_async = AsyncStore(self._make_async(), self)
            return self._shared_async
        loop = asyncio.get_running_loop()
        if loop is self._last_loop and self._last_store is not None:
            return self._last_store  # the common case, without a weakref lookup
        store = self._async.get(loop)
        if store is None:
            store = self._async[loop] = AsyncStore(self._make_async(), self)
            store.close_with_loop(lambda: self._forget_loop(loop))
        self._last_loop, self._last_store = loop, store
        return store

    def _forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._async.pop(loop, None)
        if self._last_loop is loop:
            self._last_loop, self._last_store = None, None

    def close(self) -> None:
        """Stop probing and listening; drop the sync client's connections (async ones go with their loops)."""
        self.breaker.stop()
        if self.bus is not None:
            self.bus.stop()
        if self._sync is not None:
            self._sync.client.close()

    async def aclose(self) -> None:
        """Like close(), and close the running loop's async connections now too."""
        self.close()
        loop = asyncio.get_running_loop()
        store = self._shared_async if not self._async_per_loop else self._async.get(loop)
        self._forget_loop(loop)
        if store is not None:
            await store.client.aclose()


# Delete the lock only if it still holds our token: never release another holder's lock.
_RELEASE_LOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)


def _lua_bytes(raw: bytes) -> str:
    """Return ``raw`` as the inside of a Lua string literal (decimal escapes: NULs and all)."""
    return "".join(f"\\{byte}" for byte in raw)


# The conditional write (see _envelope): store ARGV[2] for ARGV[3] ms only if the key's token is
# still ARGV[1], the one its writer read before computing. Absent reads as ABSENT; bytes that
# are not ours, or a key of another type, as FOREIGN_TOKEN, so garbage is still overwritten.
# (Where the writer read nothing, SET NX GET does the same at a plain SET's cost: see write().)
_WRITE_IF_UNCHANGED = f"""
local current = redis.pcall('GET', KEYS[1])
local token = '{_lua_bytes(ABSENT)}'
if type(current) == 'table' then
  token = '{FOREIGN_TOKEN.decode()}'
elseif current then
  local ours = string.sub(current, 1, {len(LEAD)}) == '{_lua_bytes(LEAD)}'
  if ours and #current >= {TOKEN_OFFSET + TOKEN_SIZE} then
    token = string.sub(current, {TOKEN_OFFSET + 1}, {TOKEN_OFFSET + TOKEN_SIZE})
  else
    token = '{FOREIGN_TOKEN.decode()}'
  end
end
if token ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Generations only go up: the new one is max(what Redis holds, ARGV[1]) + ARGV[2]. ARGV[1] is the
# highest this process has seen, so a Redis that lost the key (a restart, a failover) or had an
# old value planted back cannot take anyone back to entries written before a clear. Anything
# but a short decimal number reads as 0, as in ``_envelope.generation_from``. Returns the new
# generation and whether Redis held another one.
_RAISE_GENERATION = f"""
local current = redis.pcall('GET', KEYS[1])
local n = 0
if type(current) == 'string' and #current <= 16 and string.match(current, '^%d+$') then
  n = tonumber(current)
  if n >= {MAX_GENERATION} then n = 0 end
end
local floor = tonumber(ARGV[1])
if floor > n then n = floor end
n = n + tonumber(ARGV[2])
local text = string.format('%d', n)
if text == current then return {{n, 0}} end
redis.call('SET', KEYS[1], text)
return {{n, 1}}
"""

#: What the caches run, for the start-up permission check: (name, command with {key}/{channel}).
_NEEDED = (
    ("GET", ("GET", "{key}")),
    ("MGET", ("MGET", "{key}")),
    ("SET", ("SET", "{key}", "v")),
    ("DEL", ("DEL", "{key}")),
    ("EVALSHA", ("EVALSHA", "0" * 40, "1", "{key}")),
    ("PUBLISH", ("PUBLISH", "{channel}", "m")),
    ("SUBSCRIBE", ("SUBSCRIBE", "{channel}")),
)


def _refused(command: str, count: int, reasons: Sequence[str]) -> list[str]:
    """Return the one line that says Redis refused ``command`` (on ``count`` keys), and why."""
    on = f" of {count} key(s)" if count else ""
    return [f"{command}{on} refused: {'; '.join(reason.rstrip('.') for reason in reasons)}"]


def _attempt(command: str, keys: Sequence[str], run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``run``; return its result and ``[what Redis refused]`` if it answered with an error.

    Anything else (no answer, a dropped connection) propagates: that is an outage, not a refusal.
    """
    try:
        return run(), []
    except redis.ResponseError as exc:
        return None, _refused(command, len(keys), [str(exc)])


async def _aattempt(
    command: str, keys: Sequence[str], run: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[str]]:
    """Await ``run``; return its result and ``[what Redis refused]``, as ``_attempt`` does."""
    try:
        return await run(), []
    except redis.ResponseError as exc:
        return None, _refused(command, len(keys), [str(exc)])


def _refused_in(keys: Sequence[str], results: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Return the keys whose pipelined SET Redis refused, and why (each reason once)."""
    refused = [(key, r) for key, r in zip(keys, results, strict=True) if isinstance(r, redis.ResponseError)]
    if not refused:
        return [], []
    reasons = sorted({str(error) for _, error in refused})
    return [key for key, _ in refused], _refused("the tombstone's SET", len(refused), reasons)


def _generation_reply(reply: Any) -> tuple[int, bool]:
    new, changed = reply
    return int(new), bool(changed)


class SyncStore:
    """The L2 calls the tiers make, for sync callers."""

    def __init__(self, client: Any, endpoint: Endpoint) -> None:
        self.client = client
        self._endpoint = endpoint
        self._epoch = endpoint.epoch
        self._release = client.register_script(_RELEASE_LOCK)
        self._write_if_unchanged = client.register_script(_WRITE_IF_UNCHANGED)
        self._nx_get = True  # until a Redis older than 7.0 says otherwise
        self._raise_generation = client.register_script(_RAISE_GENERATION)
        # A cluster's MGET must keep to one slot; its non-atomic twin groups keys by slot and
        # sends one MGET per node, pipelined. (Our reads never needed atomicity.)
        self._mget = client.mget_nonatomic if endpoint.cluster else client.mget

    def _fresh_connections(self) -> None:
        """Drop pooled connections made before the breaker last opened (call when epochs differ)."""
        if self._epoch != self._endpoint.epoch:
            self._epoch = self._endpoint.epoch
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:
                # Idle connections only: one in use belongs to another thread's command; if it
                # is dead, that command fails and redis-py drops it.
                pool.disconnect(inuse_connections=False)

    def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        # The hot path of every L2 hit: try/except costs nothing here, a context manager would.
        try:
            if generation_key is None:
                payload: Any = self.client.get(key)
                return None, payload
            both: Any = self._mget([generation_key, key])
            return both[0], both[1]
        except Exception as exc:  # as in _Translated: any client failure is an L2 failure
            raise _translate(exc) from exc

    def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return ``(generation, payloads)`` for ``keys`` in one MGET."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        names = (generation_key, *keys) if generation_key is not None else keys
        with _TRANSLATED:
            found = cast("list[bytes | None]", self._mget(names)) if names else []
        return (found[0], found[1:]) if generation_key is not None else (None, found)

    def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token``.

        Return False if an invalidation came between: the key's token changed. Where the writer
        found nothing, SET NX GET is the whole check (a value written meanwhile by a writer who
        also found nothing is as good as ours, and stays); else a Lua script compares tokens.
        """
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        try:  # the hot path of every miss, as read()
            if token == ABSENT and self._nx_get:
                found = self.client.set(key, payload, px=ttl_ms, nx=True, get=True)
                return found is None or fresh_since_absent(found)
            return bool(self._write_if_unchanged(keys=[key], args=[token, payload, ttl_ms]))
        except redis.ResponseError as exc:
            if token == ABSENT and self._nx_get and "syntax" in str(exc).lower():
                self._nx_get = False  # Redis < 7.0: NX with GET is 7.0's; the script does it
                return self.write(key, payload, ttl_ms, token)
            raise _translate(exc) from exc
        except Exception as exc:
            raise _translate(exc) from exc

    def write_many(self, items: tuple[tuple[str, bytes, int], ...], announce: Announce = None) -> None:
        """Store ``(key, payload, ttl_ms)`` items in one pipelined round trip (then announce)."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            for key, payload, ttl_ms in items:
                pipeline.set(key, payload, px=ttl_ms)
            pipeline.execute()
            if announce is not None:
                self.client.publish(*announce)

    def ping(self) -> bool:
        """Return True if the endpoint answers PING."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        with _TRANSLATED:
            return bool(self.client.ping())

    def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """Leave ``tombstone`` under each of ``keys`` for ``ttl_ms`` (None: delete them), then announce.

        A refused tombstone (a full Redis refuses SET, not DEL) is replaced by a DEL. Raise
        RemoteRejected, after announcing, if Redis refused to drop any key or to publish.
        """
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        kept: list[str] = []
        unheard: list[str] = []
        with _TRANSLATED:
            left, why = self._leave_tombstones(keys, tombstone, ttl_ms) if tombstone else (keys, [])
            if left:
                _, kept = _attempt("DEL", left, lambda: self.client.delete(*left))
                kept = why + kept if kept else []
            if announce is not None:
                _, unheard = _attempt("PUBLISH", (), lambda: self.client.publish(*announce))
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))

    def _leave_tombstones(
        self, keys: Sequence[str], tombstone: bytes, ttl_ms: int
    ) -> tuple[Sequence[str], list[str]]:
        """Return the keys Redis refused a tombstone, and why."""
        if len(keys) == 1:
            _, why = _attempt(
                "the tombstone's SET", keys, lambda: self.client.set(keys[0], tombstone, px=ttl_ms)
            )
            return (keys if why else ()), why
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, tombstone, px=ttl_ms)
        return _refused_in(keys, pipeline.execute(raise_on_error=False))

    def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``, then announce.

        Return it, and whether Redis held another one.

        Raise RemoteRejected, after announcing, if Redis refused either.
        """
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        with _TRANSLATED:
            reply, kept = _attempt(
                "the generation's SET",
                (),
                lambda: self._raise_generation(keys=[generation_key], args=[floor, step]),
            )
            _, unheard = (
                _attempt("PUBLISH", (), lambda: self.client.publish(*announce)) if announce else (None, [])
            )
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))
        return _generation_reply(reply)

    def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we do."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        with _TRANSLATED:
            return bool(self.client.set(key, token, nx=True, px=ttl_ms))

    def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if we still hold it (``token``)."""
        if self._epoch != self._endpoint.epoch:
            self._fresh_connections()
        with _TRANSLATED:
            self._release(keys=[key], args=[token])

    def missing_permissions(self, namespace: str, channel: str) -> list[str] | None:
        """Return the commands the server's ACL denies us on ``namespace``, or None if it cannot say."""
        names = {"key": f"{namespace}:access-check", "channel": channel}
        denied = []
        try:
            user = self.client.execute_command("ACL", "WHOAMI")
            for name, command in _NEEDED:
                words = [word.format(**names) for word in command]
                if self.client.execute_command("ACL", "DRYRUN", user, *words) not in (b"OK", "OK"):
                    denied.append(name)
        except Exception:  # no ACL DRYRUN (Redis < 7, a cluster, a user who may not run it)
            return None
        return denied


class _ReadBatch:
    """Reads that arrived while another was in flight, to be sent together as one MGET."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.names: list[str] = []
        self._slots: dict[str, int] = {}
        self._waiters: list[tuple[asyncio.Future[Any], int | None, int]] = []

    def _slot(self, name: str) -> int:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = len(self.names)
            self.names.append(name)
        return slot

    def add(self, key: str, generation_key: str | None) -> asyncio.Future[Any]:
        """Return a future for ``(generation, payload)`` of ``key``, answered with the batch."""
        future: asyncio.Future[Any] = self._loop.create_future()
        generation = self._slot(generation_key) if generation_key is not None else None
        self._waiters.append((future, generation, self._slot(key)))
        return future

    def resolve(self, values: list[bytes | None]) -> None:
        for future, generation, key in self._waiters:
            if not future.done():  # a waiter may have been cancelled
                future.set_result((values[generation] if generation is not None else None, values[key]))

    def fail(self, error: BaseException) -> None:
        for future, _, _ in self._waiters:
            if not future.done():
                future.set_exception(error)


class AsyncStore:
    """The L2 calls the tiers make, for coroutines on one event loop.

    Reads coalesce: one that finds no other read in flight goes out at once (no added latency
    for a lone caller); reads that arrive while one is in flight join a batch, sent as a single
    MGET on the next turn of the loop. A hundred concurrent look-ups cost two round trips and,
    if Redis stalls, one timeout each, not a hundred connections.
    """

    def __init__(self, client: Any, endpoint: Endpoint) -> None:
        self.client = client
        self._endpoint = endpoint
        self._epoch = endpoint.epoch
        self._release = client.register_script(_RELEASE_LOCK)
        self._write_if_unchanged = client.register_script(_WRITE_IF_UNCHANGED)
        self._nx_get = True  # until a Redis older than 7.0 says otherwise
        self._raise_generation = client.register_script(_RAISE_GENERATION)
        self._mget = client.mget_nonatomic if endpoint.cluster else client.mget  # as in SyncStore
        self._closer: AsyncGenerator[None, None] | None = None
        self._in_flight = 0
        self._batch: _ReadBatch | None = None
        self._senders: set[asyncio.Future[Any]] = set()

    async def _fresh_connections(self) -> None:
        if self._epoch != self._endpoint.epoch:
            self._epoch = self._endpoint.epoch
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:
                await pool.disconnect(inuse_connections=False)

    def close_with_loop(self, forget: Callable[[], object]) -> None:
        """Close the client when its event loop shuts down, then call ``forget``.

        A client's connections hold their loop, so the loop never dies while we hold the
        client, and nothing would ever close them. ``asyncio.run``, ``asyncio.Runner`` and
        pytest-asyncio all close a loop's async generators before closing the loop itself: an
        async generator suspended inside ``try`` here gets that call, while the loop still runs.
        """

        async def closer() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                forget()
                await self.client.aclose()

        self._closer = closer()
        with contextlib.suppress(StopIteration):
            # Start it (registering it with the running loop) and leave it at its ``yield``.
            self._closer.__anext__().send(None)

    async def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        if self._in_flight:
            batch = self._batch
            if batch is None:
                batch = self._batch = _ReadBatch(asyncio.get_running_loop())
                # Sent on the next turn of the loop, when every read made ready now has joined.
                sender = asyncio.ensure_future(self._send(batch))
                self._senders.add(sender)
                sender.add_done_callback(self._senders.discard)
            result: tuple[bytes | None, bytes | None] = await batch.add(key, generation_key)
            return result
        self._in_flight += 1
        try:
            if generation_key is None:
                payload: Any = await self.client.get(key)
                return None, payload
            both: Any = await self._mget([generation_key, key])
            return both[0], both[1]
        except Exception as exc:  # as in _Translated: any client failure is an L2 failure
            raise _translate(exc) from exc
        finally:
            self._in_flight -= 1

    async def _send(self, batch: _ReadBatch) -> None:
        self._batch = None  # reads from now on start the next batch
        self._in_flight += 1
        try:
            with _TRANSLATED:
                values = cast("list[bytes | None]", await self._mget(batch.names))
        except RemoteError as exc:
            batch.fail(exc)
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            batch.fail(RemoteUnavailable("the read was cancelled"))
            raise
        else:
            batch.resolve(values)
        finally:
            self._in_flight -= 1

    async def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return ``(generation, payloads)`` for ``keys`` in one MGET."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        names = (generation_key, *keys) if generation_key is not None else keys
        with _TRANSLATED:
            found = cast("list[bytes | None]", await self._mget(names)) if names else []
        return (found[0], found[1:]) if generation_key is not None else (None, found)

    async def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token`` (see SyncStore)."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        try:  # the hot path of every miss, as read()
            if token == ABSENT and self._nx_get:
                found = await self.client.set(key, payload, px=ttl_ms, nx=True, get=True)
                return found is None or fresh_since_absent(found)
            return bool(await self._write_if_unchanged(keys=[key], args=[token, payload, ttl_ms]))
        except redis.ResponseError as exc:
            if token == ABSENT and self._nx_get and "syntax" in str(exc).lower():
                self._nx_get = False  # Redis < 7.0, as in SyncStore.write()
                return await self.write(key, payload, ttl_ms, token)
            raise _translate(exc) from exc
        except Exception as exc:
            raise _translate(exc) from exc

    async def write_many(self, items: tuple[tuple[str, bytes, int], ...], announce: Announce = None) -> None:
        """Store ``(key, payload, ttl_ms)`` items in one pipelined round trip (then announce)."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            for key, payload, ttl_ms in items:
                pipeline.set(key, payload, px=ttl_ms)
            await pipeline.execute()
            if announce is not None:
                await self.client.publish(*announce)

    async def ping(self) -> bool:
        """Return True if the endpoint answers PING."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        with _TRANSLATED:
            return bool(await self.client.ping())

    async def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """Leave ``tombstone`` under each of ``keys`` for ``ttl_ms`` (None: delete them), then announce.

        A refused tombstone (a full Redis refuses SET, not DEL) is replaced by a DEL. Raise
        RemoteRejected, after announcing, if Redis refused to drop any key or to publish.
        """
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        kept: list[str] = []
        unheard: list[str] = []
        with _TRANSLATED:
            left, why = await self._leave_tombstones(keys, tombstone, ttl_ms) if tombstone else (keys, [])
            if left:
                _, kept = await _aattempt("DEL", left, lambda: self.client.delete(*left))
                kept = why + kept if kept else []
            if announce is not None:
                _, unheard = await _aattempt("PUBLISH", (), lambda: self.client.publish(*announce))
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))

    async def _leave_tombstones(
        self, keys: Sequence[str], tombstone: bytes, ttl_ms: int
    ) -> tuple[Sequence[str], list[str]]:
        """Return the keys Redis refused a tombstone, and why."""
        if len(keys) == 1:
            _, why = await _aattempt(
                "the tombstone's SET", keys, lambda: self.client.set(keys[0], tombstone, px=ttl_ms)
            )
            return (keys if why else ()), why
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, tombstone, px=ttl_ms)
        return _refused_in(keys, await pipeline.execute(raise_on_error=False))

    async def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``, then announce.

        Return it, and whether Redis held another one.

        Raise RemoteRejected, after announcing, if Redis refused either.
        """
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        with _TRANSLATED:
            reply, kept = await _aattempt(
                "the generation's SET",
                (),
                lambda: self._raise_generation(keys=[generation_key], args=[floor, step]),
            )
            _, unheard = (
                await _aattempt("PUBLISH", (), lambda: self.client.publish(*announce))
                if announce
                else (None, [])
            )
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))
        return _generation_reply(reply)

    async def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we do."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        with _TRANSLATED:
            return bool(await self.client.set(key, token, nx=True, px=ttl_ms))

    async def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if we still hold it (``token``)."""
        if self._epoch != self._endpoint.epoch:
            await self._fresh_connections()
        with _TRANSLATED:
            await self._release(keys=[key], args=[token])
