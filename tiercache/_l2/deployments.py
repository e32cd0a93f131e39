"""How an endpoint is built: from a URL (one server, a Sentinel deployment, a cluster) or from clients.

Each builder makes the client factories, the probe, the subscription and the one-off checking
client of its kind of deployment, and hands them to an ``Endpoint``, which knows no URL. The
front ends take what they need of a deployment from here: the builders, the type, its defaults.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Any, Final, cast

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

from tiercache._l2.coherence import LOST_AFTER
from tiercache._l2.endpoint import CLOSE_WAIT, DEFAULT_MAX_CONNECTIONS, AsyncClientSource, Endpoint
from tiercache._l2.errors import RemoteUnavailable
from tiercache._l2.inbox import Subscription
from tiercache._l2.nodes import ClusterNodes
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
from tiercache._l2.urls import plain_cluster_url, redact_url

__all__ = ["CLOSE_WAIT", "DEFAULT_MAX_CONNECTIONS", "Endpoint", "endpoint_for_clients", "endpoint_for_url"]

#: The least a caller waits for a pooled connection to come free before it skips L2.
POOL_WAIT: Final = 1.0
#: The share of the L2 timeout a write waits for a replica's acknowledgement (Sentinel only),
#: leaving the rest for the round trip: WAIT itself must not outlast the socket's timeout.
CONFIRM_SHARE: Final = 0.5


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


def endpoint_for_url(
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
        return _cluster(url, cluster_url, options)
    wait = max(POOL_WAIT, 10 * timeout)
    target = sentinel_target(url)
    if target is not None:
        return _sentinel(url, target, options, max_connections, wait)

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

    return Endpoint(
        redact_url(url),
        make,
        amake,
        probe=probe,
        subscribe=subscribe,
        checker=one_off,
    )


def _cluster(url: str, cluster_url: str, options: dict[str, Any]) -> Endpoint:
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

    endpoint = Endpoint(
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


def _sentinel(
    url: str, target: SentinelTarget, options: dict[str, Any], max_connections: int, wait: float
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

    endpoint = Endpoint(redact_url(url), make, amake, probe=probe, subscribe=subscribe, checker=one_off)
    # Invalidations, clears and sets wait for a replica (WAIT), within the L2 timeout: a
    # failover promoting a replica that had not received them would bring old values back.
    endpoint.confirm_ms = max(1, round(options["socket_timeout"] * 1000 * CONFIRM_SHARE))
    return endpoint


def endpoint_for_clients(
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
    endpoint = Endpoint(
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
