"""One Redis deployment (standalone or cluster): its clients, stores, breaker and channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel
import redis.utils
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiercache import _background
from tiercache._l2.breaker import CircuitBreaker
from tiercache._l2.coherence import LOST_AFTER, Bus
from tiercache._l2.errors import RemoteUnavailable, brief
from tiercache._l2.inbox import Subscription
from tiercache._l2.nodes import AsyncPing, ClusterNodes, Ping
from tiercache._l2.oversized import Guard
from tiercache._l2.pool import (
    SyncWaitingConnectionPool,
    SyncWaitingSentinelPool,
    WaitingConnectionPool,
    WaitingSentinelPool,
)
from tiercache._l2.replies import abound_cluster, abounded_parser, bound_cluster, bounded_parser
from tiercache._l2.sentinel import (
    SentinelTarget,
    asking_sentinels,
    primary_client,
    primary_options,
    sentinel_target,
)
from tiercache._l2.stores import AsyncStore, SyncStore, missing_permissions, read_bounded_with
from tiercache._l2.urls import plain_cluster_url, redact_url

__all__ = ["CLOSE_WAIT", "DEFAULT_MAX_CONNECTIONS", "Endpoint", "live_endpoints"]

T = TypeVar("T")

logger = logging.getLogger("tiercache")

#: Connections per client by default (configure(max_connections=)).
DEFAULT_MAX_CONNECTIONS: Final = 50
#: The least a caller waits for a pooled connection to come free before it skips L2.
POOL_WAIT: Final = 1.0
#: At most one background ask of timed-out keys' lengths per this many seconds (see suspect()).
SUSPECT_EVERY: Final = 1.0
#: How many keys of a timed-out read are asked, how often, how far apart.
SUSPECTS: Final = 64
SUSPECT_TRIES: Final = 10
SUSPECT_PAUSE: Final = 0.2
#: How long close() waits for the listener and prober threads to end.
CLOSE_WAIT: Final = 5.0


def _retry_once() -> Retry:
    # A connection that died under us (a Redis restart, CLIENT KILL, an idle timeout) is tried
    # once more on a fresh one before the operation counts as failed; a timeout is not retried
    # (the timeout bounds the call). Every command we send may be sent twice: a write that
    # landed but lost its reply finds its own value and is refused, which only costs a miss.
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _aretry_once() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _protocol(url: str) -> int:
    """Return the RESP version connections to ``url`` speak: the URL's, else redis-py's default.

    redis-py picks a parser for it, but only in place of its own: we pick ours (redis-py 8
    speaks RESP3 by default, 7 RESP2).
    """
    asked = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("protocol")
    if asked:
        return 3 if asked[-1].strip() == "3" else 2
    # (redis-py 8 keeps its default in redis.utils, 7 in redis.connection)
    default = getattr(redis.utils, "DEFAULT_RESP_VERSION", None) or getattr(
        redis.connection, "DEFAULT_RESP_VERSION", 2
    )
    return 3 if str(default) == "3" else 2


AsyncClientSource = Callable[[], "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"]


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


async def _no_answer(host: str, port: int) -> bool:
    return False


#: The share of the L2 timeout a write waits for a replica's acknowledgement (Sentinel only),
#: leaving the rest for the round trip: WAIT itself must not outlast the socket's timeout.
CONFIRM_SHARE: Final = 0.5


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
        make: Callable[[], Any],
        amake: AsyncClientSource,
        *,
        async_per_loop: bool = True,
        probe: Callable[[], bool] | None = None,
        subscribe: Callable[[int], Any] | None = None,
        cluster: bool = False,
        checker: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.name = name
        # A client for the start-up permission check, closed after it when it was made for it:
        # the sync store's pool would stay open in a process that only awaits.
        self._checker = checker
        self._make_sync = make
        self._make_async = amake
        self._async_per_loop = async_per_loop
        self.cluster = cluster
        # Cross-process invalidations; None when no sync connection can be made to listen on.
        self.bus = Bus(name, subscribe) if subscribe is not None else None
        if self.bus is not None:
            weakref.finalize(self, self.bus.abandon)
        # Caches owing this endpoint invalidations it could not take, and how each settles them
        # (see owe()): weakly, so a cache that is gone owes nothing.
        self._debtors: weakref.WeakKeyDictionary[Any, Callable[[Any, Endpoint], object]] = (
            weakref.WeakKeyDictionary()
        )
        self.breaker = CircuitBreaker(
            name, probe=probe, on_open=self._connections_went_bad, on_close=self._settle_debts
        )
        # Counted whenever the breaker opens: pooled connections may all be dead now (a Redis
        # restart kills every one of them), so each store drops its idle ones before its next
        # operation (store() sees to it; the async shell awaits it).
        self.openings = 0
        self._lock = threading.Lock()
        self._sync: SyncStore | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncStore] = (
            weakref.WeakKeyDictionary()
        )
        self._shared_async: AsyncStore | None = None
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_store: AsyncStore | None = None
        self._access_checked: set[str] = set()
        # close() sets it; the next store asked for reopens (listener and prober too).
        self._closed = False
        self._reopenings = 0  # (close() checks whether a call reopened it meanwhile)
        # Clients the application built are theirs to close, not ours.
        self.owns_clients = True
        #: See stores.Owner: set for a Sentinel deployment, whose failover promotes a replica.
        self.confirm_ms = 0
        #: See stores.Owner: reads ask lengths first for a while after a planted string was found.
        self.guard = Guard()
        self._suspected_at = -SUSPECT_EVERY
        self._asking = False
        #: A Redis Cluster's primaries that failed lately, and how to ask one whether it answers
        #: (see _l2.nodes); None elsewhere.
        self.nodes: ClusterNodes | None = None
        self.ping_node: Ping = lambda host, port: False
        self.aping_node: AsyncPing = _no_answer
        self._unconfirmed_said = False
        _live.add(self)

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
        target = sentinel_target(url)
        if target is not None:
            return cls._sentinel_from_url(url, target, options, max_connections, wait)

        protocol = _protocol(url)

        def make() -> redis.Redis:
            pool = SyncWaitingConnectionPool.from_url(
                url,
                retry=_retry_once(),
                max_connections=max_connections,
                wait=wait,
                parser_class=bounded_parser(protocol),
                **options,
            )
            return redis.Redis.from_pool(pool)

        def amake() -> redis.asyncio.Redis:
            pool = WaitingConnectionPool.from_url(
                url,
                retry=_aretry_once(),
                max_connections=max_connections,
                wait=wait,
                parser_class=abounded_parser(protocol),
                **options,
            )
            return redis.asyncio.Redis.from_pool(pool)

        def one_off() -> contextlib.closing[redis.Redis]:
            # A client of its own, closed after use: the pool's connections may be the dead ones
            # that failed (the probe), or would stay open in a process that only awaits (the check).
            return contextlib.closing(redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options))

        def probe() -> bool:
            try:
                with one_off() as client:
                    return bool(client.ping())
            except Exception:  # any failure means "not back yet"
                return False

        def subscribe(_attempt: int) -> Subscription:
            # Its own client: a subscribed connection can do nothing else, and waits longer.
            listen = {**options, "socket_timeout": max(timeout, LOST_AFTER)}
            return Subscription(
                redis.Redis.from_url(
                    url, retry=Retry(NoBackoff(), 0), parser_class=bounded_parser(protocol), **listen
                ).pubsub()
            )

        return cls(
            redact_url(url),
            make,
            amake,
            probe=probe,
            subscribe=subscribe,
            checker=one_off,
        )

    @classmethod
    def _cluster_from_url(cls, url: str, cluster_url: str, options: dict[str, Any]) -> Endpoint:
        # The cluster client follows MOVED/ASK and refreshes its slot map itself; with no retries
        # of ours, a dead primary costs one timeout per operation until the breaker opens.
        options = {key: value for key, value in options.items() if key != "retry_on_error"}
        endpoint: Endpoint

        protocol = _protocol(cluster_url)

        def make() -> redis.cluster.RedisCluster:
            client = redis.cluster.RedisCluster.from_url(cluster_url, retry=Retry(NoBackoff(), 0), **options)
            bound_cluster(client, protocol)
            return client

        def amake() -> redis.asyncio.cluster.RedisCluster:
            client = redis.asyncio.cluster.RedisCluster.from_url(
                cluster_url, retry=AsyncRetry(NoBackoff(), 0), **options
            )
            abound_cluster(client, protocol)
            return client

        def one_off() -> contextlib.closing[redis.cluster.RedisCluster]:
            return contextlib.closing(make())  # (closed after use, as for a single server)

        parts = urllib.parse.urlsplit(cluster_url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""

        def node_url(host: str, port: int) -> str:
            return urllib.parse.urlunsplit(parts._replace(netloc=f"{credentials}{host}:{port}"))

        def known_nodes(primaries: bool) -> list[tuple[str, int]]:
            try:
                client = endpoint.store().client
                nodes = client.get_primaries() if primaries else client.get_nodes()
            except Exception:  # (no slot map yet: the URL's node is all we know)
                nodes = []
            return [(node.host, node.port) for node in nodes] or [(parts.hostname or "", parts.port or 6379)]

        def ping_node(host: str, port: int) -> bool:
            try:
                with contextlib.closing(
                    redis.Redis.from_url(node_url(host, port), retry=Retry(NoBackoff(), 0), **options)
                ) as client:
                    return bool(client.ping())
            except Exception:  # any failure means "does not answer"
                return False

        async def aping_node(host: str, port: int) -> bool:
            client = redis.asyncio.Redis.from_url(
                node_url(host, port), retry=AsyncRetry(NoBackoff(), 0), **options
            )
            try:
                return bool(await client.ping())
            except Exception:  # as in ping_node
                return False
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

        def probe() -> bool:
            # Back as soon as one primary answers: the keys of one that does not skip L2 on their
            # own (see _l2.nodes); a probe that waited for every primary kept all of it off L2.
            return any(ping_node(host, port) for host, port in known_nodes(primaries=True))

        def subscribe(attempt: int) -> Subscription:
            # PUBLISH reaches every node of a cluster: listen on any reachable one, the next
            # one after each failure.
            nodes = known_nodes(primaries=False)
            host, port = nodes[attempt % len(nodes)]
            listen = {**options, "socket_timeout": max(options["socket_timeout"], LOST_AFTER)}
            listen["parser_class"] = bounded_parser(protocol)
            client = redis.Redis.from_url(node_url(host, port), retry=Retry(NoBackoff(), 0), **listen)
            return Subscription(client.pubsub())

        endpoint = cls(
            redact_url(url),
            make,
            amake,
            probe=probe,
            subscribe=subscribe,
            cluster=True,
            checker=one_off,
        )
        endpoint.nodes = ClusterNodes()
        endpoint.ping_node, endpoint.aping_node = ping_node, aping_node
        return endpoint

    @classmethod
    def _sentinel_from_url(
        cls, url: str, target: SentinelTarget, options: dict[str, Any], max_connections: int, wait: float
    ) -> Endpoint:
        # Connections ask the sentinels where the primary is each time they connect; one that
        # finds a demoted primary (READONLY) or a dead one is dropped, and the next connects to
        # whichever server the sentinels name by then. Until they name one, L2 is unavailable
        # (the breaker opens, calls go on without it); the probe finds the new primary.
        sentinels = list(target.sentinels)
        protocol = _protocol(url)
        pooled = {
            "service_name": target.service,
            "max_connections": max_connections,
            "wait": wait,
            **primary_options(target, options),
        }

        def make() -> redis.Redis:
            asking = asking_sentinels(target, options, Retry(NoBackoff(), 0))
            manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=asking)
            return redis.Redis.from_pool(
                SyncWaitingSentinelPool(
                    sentinel_manager=manager,
                    retry=_retry_once(),
                    parser_class=bounded_parser(protocol),
                    **pooled,
                )
            )

        def amake() -> redis.asyncio.Redis:
            asking = asking_sentinels(target, options, AsyncRetry(NoBackoff(), 0))
            manager = redis.asyncio.sentinel.Sentinel(sentinels, sentinel_kwargs=asking)
            return redis.asyncio.Redis.from_pool(
                WaitingSentinelPool(
                    sentinel_manager=manager,
                    retry=_aretry_once(),
                    parser_class=abounded_parser(protocol),
                    **pooled,
                )
            )

        def one_off() -> contextlib.closing[redis.Redis]:
            return contextlib.closing(primary_client(target, {**options, "retry": Retry(NoBackoff(), 0)}))

        def probe() -> bool:
            try:
                with one_off() as client:
                    return bool(client.ping())
            except Exception:  # no primary named yet, or it does not answer: "not back yet"
                return False

        def subscribe(_attempt: int) -> Subscription:
            # On the primary; a replica hears what its primary publishes as well, so a listener
            # left on a demoted primary still hears, and one on a dead primary reconnects here.
            listen = {**options, "retry": Retry(NoBackoff(), 0), "parser_class": bounded_parser(protocol)}
            listen["socket_timeout"] = max(options["socket_timeout"], LOST_AFTER)
            return Subscription(primary_client(target, listen).pubsub())

        endpoint = cls(redact_url(url), make, amake, probe=probe, subscribe=subscribe, checker=one_off)
        # Invalidations, clears and sets wait for a replica (WAIT), within the L2 timeout: a
        # failover promoting a replica that had not received them would bring old values back.
        endpoint.confirm_ms = max(1, round(options["socket_timeout"] * 1000 * CONFIRM_SHARE))
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

        amake: AsyncClientSource
        if async_client is None:
            amake, per_loop = missing, False
        elif isinstance(async_client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            amake, per_loop = (lambda: async_client), False
        else:
            amake, per_loop = async_client, True
        make = missing if sync_client is None else (lambda: sync_client)
        kind = type(sync_client if sync_client is not None else async_client).__qualname__
        cluster = isinstance(sync_client, redis.cluster.RedisCluster) or isinstance(
            async_client, redis.asyncio.cluster.RedisCluster
        )

        def probe() -> bool:
            try:
                return bool(sync_client is not None and sync_client.ping())
            except Exception:  # any failure means "not back yet"
                return False

        def subscribe(attempt: int) -> Subscription:
            if isinstance(sync_client, redis.cluster.RedisCluster):
                nodes = sync_client.get_nodes()  # type: ignore[no-untyped-call]
                return Subscription(nodes[attempt % len(nodes)].redis_connection.pubsub())
            return Subscription(cast("redis.Redis", sync_client).pubsub())

        # Without a sync client nothing can probe or listen from a thread: calls probe, one at a
        # time, and L1s follow TTLs only.
        endpoint = cls(
            f"client {kind}",
            make,
            amake,
            async_per_loop=per_loop,
            probe=probe if sync_client is not None else None,
            subscribe=subscribe if sync_client is not None else None,
            cluster=cluster,
            # The application's own client checks, and stays open: it is theirs.
            checker=(lambda: contextlib.nullcontext(sync_client)) if sync_client is not None else None,
        )
        endpoint.owns_clients = False
        return endpoint

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
        if self._checker is None:
            return  # no sync client to check with: the first refusal is logged instead
        try:
            with self._checker() as client:
                denied = missing_permissions(client, namespace, channel)
        except Exception:  # Redis is down: the calls will say so
            return
        if denied:
            logger.warning(
                "tiercache: the Redis user at %s may not run %s on %s:*: %s",
                self.name,
                ", ".join(denied),
                namespace,
                "; ".join(dict.fromkeys(DENIED_MEANS[name] for name in denied)),
            )

    def unconfirmed(self, what: str, reply: Any) -> None:
        """Say (once) that no replica acknowledged ``what`` within ``confirm_ms`` (see stores.Owner)."""
        if self._unconfirmed_said:
            return
        self._unconfirmed_said = True
        answer = brief(reply) if isinstance(reply, BaseException) else f"WAIT answered {reply!r}"
        logger.warning(
            "tiercache: no replica of %s acknowledged %s within %d ms (%s): a failover before it "
            "does would lose it, and the old values could be read again",
            self.name,
            what,
            self.confirm_ms,
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
        if self.guard.until or self._asking or now < self._suspected_at + SUSPECT_EVERY:
            return
        self._suspected_at, self._asking = now, True  # (one ask at a time: an outage times out too)
        asked = tuple(names[:SUSPECTS])
        _background.submit(lambda: self._ask_lengths(asked), dropped=self._asked)

    def _ask_lengths(self, names: tuple[str, ...]) -> None:
        # On a client of its own, closed after (as the access check): the stores' pools would
        # stay open, a sync one be made in a process that only awaits, a closed endpoint reopen.
        # Redis may still be busy copying for the reads that timed out: try again a few times.
        try:
            for _ in range(SUSPECT_TRIES):
                if self._closed or self._checker is None:
                    return
                try:
                    with self._checker() as client:
                        read_bounded_with(client, names, self.guard)  # (arms it if one is past)
                except Exception:  # (not answered yet, or not at all: the next try, or none)
                    time.sleep(SUSPECT_PAUSE)
                    continue
                return
        finally:
            self._asked()

    def _asked(self) -> None:
        self._asking = False

    def aside(self, action: Callable[[Any], T]) -> T | None:
        """Run ``action`` with a sync client of its own (closed after), as the checks above do.

        For background work that must not open the stores' pools (a process that only awaits
        would keep a sync pool) nor reopen a closed endpoint: None, and nothing run, when the
        endpoint is closed or was given no sync client. Redis's failures are raised.
        """
        if self._closed or self._checker is None:
            return None
        with self._checker() as client:
            return action(client)

    def _connections_went_bad(self) -> None:
        self.openings += 1

    def owe(self, debtor: Any, settle: Callable[[Any, Endpoint], object]) -> None:
        """Have ``settle(debtor, self)`` run on a background thread once this endpoint is back.

        For invalidations it could not take: they reach Redis (and other processes' L1s) when
        the breaker closes, not at the debtor's next call, which may never come. At once if the
        breaker is closed already. ``settle`` must not hold ``debtor`` (it is held weakly).
        """
        with self._lock:
            self._debtors[debtor] = settle
        if self.breaker.closed:
            self._settle_debts()

    def _settle_debts(self) -> None:
        with self._lock:
            if self._closed:
                return  # (kept: settled once it reopens and is back, or at the debtor's next call)
            debts = list(self._debtors.items())
            self._debtors.clear()
        if debts:
            _background.submit(
                lambda: [settle(debtor, self) for debtor, settle in debts],
                dropped=lambda: self._remember(debts),  # (tiercache closing: settled when back)
            )

    def _remember(self, debts: list[tuple[Any, Callable[[Any, Endpoint], object]]]) -> None:
        with self._lock:
            for debtor, settle in debts:
                self._debtors.setdefault(debtor, settle)

    def store(self) -> SyncStore:
        """Return the store for sync callers, its pool rid of connections from before an outage."""
        if self._closed:
            self._reopen()
        store = self._sync
        if store is None:
            with self._lock:
                if self._sync is None:
                    self._sync = SyncStore(self._make_sync(), self)
                store = self._sync
        if store.openings_seen != self.openings:
            store.drop_idle_connections()
        return store

    def astore(self) -> AsyncStore:
        """Return the store for coroutines running on the current event loop."""
        if self._closed:
            self._reopen()
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
            store.close_with_loop(lambda: self._forget_store(loop, store))
        self._last_loop, self._last_store = loop, store
        return store

    def _forget_store(self, loop: asyncio.AbstractEventLoop, store: AsyncStore) -> None:
        # Only that store: the loop may have a newer one by the time an old one closes.
        if self._async.get(loop) is store:
            del self._async[loop]
        if self._last_store is store:
            self._last_loop, self._last_store = None, None

    @property
    def closed(self) -> bool:
        """Whether close() was called and no operation has reopened it since."""
        return self._closed

    def close(self, timeout: float = CLOSE_WAIT) -> int:
        """Stop listening and probing, and close the idle connections this endpoint opened for threads.

        Waits up to ``timeout`` seconds for the listener and a probe under way, and returns how
        many of the two were still in a Redis call when it stopped waiting. Safe to call
        twice; the next operation reopens the endpoint (listener, prober, connections). Calls
        still in flight finish on their connections, which go back to the pool: closed by the
        next close, never left to the garbage collector. Async connections belong to their event
        loop: ``aclose()`` closes the running loop's, and every other loop's close when that loop
        shuts down. Clients the application built (``from_clients``) stay open: they are theirs.
        """
        with self._lock:
            self._closed = True
            reopenings = self._reopenings
        # Not under the lock: a listener may be asking for the sync store (a cluster's does).
        running = int(not self.breaker.stop(timeout))
        if self.bus is not None:
            running += int(not self.bus.stop(timeout))
        store = self._sync
        if store is not None and self.owns_clients:
            store.close_connections()
        with self._lock:
            if self._reopenings != reopenings:
                # A call reopened the endpoint while we were closing it, and we may just have
                # stopped what it restarted: it is open, so it listens and probes.
                self._resume()
        return running

    async def aclose(self, timeout: float = CLOSE_WAIT) -> int:
        """Like close(), and close the running loop's idle async connections now too."""
        # The joins of close() take a poll at most (50 ms), and nothing when nothing runs.
        running = self.close(timeout)
        store = self._async.get(asyncio.get_running_loop()) if self._async_per_loop else None
        if store is not None:
            await store.close_connections()
        return running

    def _reopen(self) -> None:
        with self._lock:
            if self._closed:
                self._closed = False
                self._reopenings += 1
                self._resume()

    def _resume(self) -> None:
        # (Called under self._lock.)
        self.breaker.resume()
        if self.bus is not None:
            self.bus.resume()


_live: weakref.WeakSet[Endpoint] = weakref.WeakSet()


def live_endpoints() -> list[Endpoint]:
    """Return every endpoint of this process still referenced (tiercache.close() closes them)."""
    return list(_live)
