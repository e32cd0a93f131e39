"""One Redis deployment (standalone or cluster): its stores, breaker, channel and owed repairs."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar

import redis.asyncio
import redis.asyncio.cluster

from tiercache._l2.breaker import CircuitBreaker
from tiercache._l2.coherence import Bus
from tiercache._l2.debts import Debts
from tiercache._l2.deployment_checks import DeploymentChecks
from tiercache._l2.nodes import AsyncPing, ClusterNodes, Ping
from tiercache._l2.oversized import Guard
from tiercache._l2.stores import AsyncStore, Stores, SyncStore

__all__ = ["CLOSE_WAIT", "DEFAULT_MAX_CONNECTIONS", "Endpoint", "live_endpoints"]

T = TypeVar("T")

#: Connections per client by default (configure(max_connections=)).
DEFAULT_MAX_CONNECTIONS: Final = 50
#: How long close() waits for the listener and prober threads to end.
CLOSE_WAIT: Final = 5.0


AsyncClientSource = Callable[[], "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"]


async def _no_answer(host: str, port: int) -> bool:
    return False


class Endpoint:
    """One Redis deployment, shared by every function and adapter that uses it.

    Holds its stores (one for threads, one per event loop), its breaker, its invalidation
    channel and the invalidations owed to it. Built by ``deployments`` from a URL, or from
    client objects the application made itself. A Redis Cluster is the same to the tiers: its
    stores split multi-key commands by slot.
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
        # A client of its own for each background check (see aside), closed after it when it
        # was made for it: the sync store's pool would stay open in a process that only awaits.
        self._checker = checker
        self.stores = Stores(make, amake, per_loop=async_per_loop)
        self.cluster = cluster
        # Cross-process invalidations; None when no sync connection can be made to listen on.
        self.bus = Bus(name, subscribe) if subscribe is not None else None
        if self.bus is not None:
            weakref.finalize(self, self.bus.abandon)
        self._lock = threading.Lock()
        #: Caches owing this endpoint invalidations it could not take (settled as it closes).
        self.debts = Debts(self, self._lock)
        self.breaker = CircuitBreaker(
            name, probe=probe, on_open=self._connections_went_bad, on_close=self.debts.settle
        )
        # Counted whenever the breaker opens: pooled connections may all be dead now (a Redis
        # restart kills every one of them), so each store drops its idle ones before its next
        # operation (store() sees to it; the async shell awaits it).
        self.openings = 0
        # close() sets it; the next store asked for reopens (listener and prober too).
        self._closed = False
        self._reopenings = 0  # (close() checks whether a call reopened it meanwhile)
        # Clients the application built are theirs to close, not ours.
        self.owns_clients = True
        #: See stores.Owner: set for a Sentinel deployment, whose failover promotes a replica.
        self.confirm_ms = 0
        #: See stores.Owner: reads ask lengths first for a while after a planted string was found.
        self.guard = Guard()
        #: See stores.Owner: the access check, timed-out reads' lengths, unacknowledged writes.
        self.checks = DeploymentChecks(name, self.aside, self.guard)
        #: A Redis Cluster's primaries that failed lately, and how to ask one whether it answers
        #: (see _l2.nodes); None elsewhere.
        self.nodes: ClusterNodes | None = None
        self.ping_node: Ping = lambda host, port: False
        self.aping_node: AsyncPing = _no_answer
        _live.add(self)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r})"

    def aside(self, action: Callable[[Any], T]) -> T | None:
        """Run ``action`` with a sync client of its own (closed after), as the deployment checks do.

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

    def store(self) -> SyncStore:
        """Return the store for sync callers, its pool rid of connections from before an outage."""
        if self._closed:
            self._reopen()
        store = self.stores.sync(self)
        if store.openings_seen != self.openings:
            store.drop_idle_connections()
        return store

    def astore(self) -> AsyncStore:
        """Return the store for coroutines running on the current event loop."""
        if self._closed:
            self._reopen()
        return self.stores.running(self)

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
        shuts down. Clients the application built (``endpoint_for_clients``) stay open: they are theirs.
        """
        with self._lock:
            self._closed = True
            reopenings = self._reopenings
        # Not under the lock: a listener may be asking for the sync store (a cluster's does).
        running = int(not self.breaker.stop(timeout))
        if self.bus is not None:
            running += int(not self.bus.stop(timeout))
        store = self.stores.sync_store
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
        store = self.stores.made_for_running_loop()
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
