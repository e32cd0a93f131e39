"""The I/O a flow can ask for, and the steps every flow's L2 work shares.

A flow yields these operations; a shell (``_shells``) performs them and sends back the result,
or throws the operation's exception into the flow.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._flight import Settled
from ._remote import Announce, Endpoint, RemoteError, RemoteUnavailable

if TYPE_CHECKING:
    from ._function import Call, FunctionCache
    from ._remote import AsyncStore, SyncStore
    from ._tiers import Tiers

__all__ = [
    "REMOTE_OPS",
    "AcquireLock",
    "Compute",
    "Delete",
    "Flow",
    "Join",
    "Land",
    "NewGeneration",
    "Op",
    "Ping",
    "Read",
    "ReadMany",
    "ReleaseLock",
    "RemoteOp",
    "Sleep",
    "Spawn",
    "Write",
    "WriteMany",
    "drop_keys",
    "l2_op",
    "new_generation",
    "replay_repairs",
]


@dataclass(slots=True)
class Read:
    """Fetch ``key`` (and the generation, when ``generation_key`` is set): sent (gen, payload)."""

    endpoint: Endpoint
    key: str
    generation_key: str | None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.read(self.key, self.generation_key)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.read(self.key, self.generation_key)


@dataclass(slots=True)
class ReadMany:
    """Fetch ``keys`` in one round trip: sent (generation or None, [payload or None, ...])."""

    endpoint: Endpoint
    keys: tuple[str, ...]
    generation_key: str | None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.read_many(self.keys, self.generation_key)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.read_many(self.keys, self.generation_key)


@dataclass(slots=True)
class Write:
    """Store ``payload`` under ``key`` for ``ttl_ms``."""

    endpoint: Endpoint
    key: str
    payload: bytes
    ttl_ms: int
    announce: Announce = None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.write(self.key, self.payload, self.ttl_ms, self.announce)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.write(self.key, self.payload, self.ttl_ms, self.announce)


@dataclass(slots=True)
class WriteMany:
    """Store ``(key, payload, ttl_ms)`` items in one round trip."""

    endpoint: Endpoint
    items: tuple[tuple[str, bytes, int], ...]
    announce: Announce = None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.write_many(self.items, self.announce)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.write_many(self.items, self.announce)


@dataclass(slots=True)
class Delete:
    """Delete ``keys``."""

    endpoint: Endpoint
    keys: tuple[str, ...]
    announce: Announce = None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.delete(self.keys, self.announce)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.delete(self.keys, self.announce)


@dataclass(slots=True)
class NewGeneration:
    """Set a generation to ``token``, staling every entry written under another one."""

    endpoint: Endpoint
    generation_key: str
    token: bytes
    announce: Announce = None

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.set_generation(self.generation_key, self.token, self.announce)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.set_generation(self.generation_key, self.token, self.announce)


@dataclass(slots=True)
class Ping:
    """Check that the endpoint answers."""

    endpoint: Endpoint

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.ping()

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.ping()


@dataclass(slots=True)
class AcquireLock:
    """Take ``key`` for ``ttl_ms`` unless another process holds it; sent whether we got it."""

    endpoint: Endpoint
    key: str
    token: bytes
    ttl_ms: int

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.acquire_lock(self.key, self.token, self.ttl_ms)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.acquire_lock(self.key, self.token, self.ttl_ms)


@dataclass(slots=True)
class ReleaseLock:
    """Give ``key`` back if it still holds our ``token``."""

    endpoint: Endpoint
    key: str
    token: bytes

    def perform(self, store: SyncStore) -> Any:
        """Do it with a sync store."""
        return store.release_lock(self.key, self.token)

    def aperform(self, store: AsyncStore) -> Awaitable[Any]:
        """Do it with an async store (return the store call's awaitable)."""
        return store.release_lock(self.key, self.token)


@dataclass(slots=True)
class Join:
    """Join the single flight for ``key`` among ``owner``'s.

    Sent None to lead it, or how another run settled. (Threads and each event loop have
    flights of their own.)
    """

    key: Hashable
    owner: FunctionCache


@dataclass(slots=True)
class Land:
    """End the single flight this call leads: wake its followers with ``settled``.

    ``linger``: keep the result briefly for callers whose L2 read raced our L2 write; only
    sound once the value is in L2, where they would have found it a moment later.
    """

    key: Hashable
    settled: Settled
    linger: bool


@dataclass(slots=True)
class Compute:
    """Run ``function`` with ``call``'s arguments; sent its value or thrown its exception."""

    function: Callable[..., Any]
    call: Call


@dataclass(slots=True)
class Sleep:
    """Wait ``seconds`` (while another process fills L2)."""

    seconds: float


@dataclass(slots=True)
class Spawn:
    """Run ``flow`` in the background; the caller does not wait for it."""

    flow: Generator[Any, Any, Any]


#: The operations on L2; each performs itself on a store (``perform`` / ``aperform``).
REMOTE_OPS = (Read, ReadMany, Write, WriteMany, Delete, NewGeneration, Ping, AcquireLock, ReleaseLock)
RemoteOp = Read | ReadMany | Write | WriteMany | Delete | NewGeneration | Ping | AcquireLock | ReleaseLock
Op = RemoteOp | Join | Land | Compute | Sleep | Spawn
Flow = Generator[Op, Any, Any]


def l2_op(tiers: Tiers, endpoint: Endpoint, op: Op) -> Generator[Op, Any, tuple[bool, Any]]:
    """Perform one L2 operation; return ``(True, reply)`` or ``(False, the RemoteError)``.

    Every L2 operation goes through here, so the breaker and the stats learn of each outcome.
    """
    try:
        reply = yield op
    except RemoteError as exc:
        tiers.remote_failed(endpoint, exc)
        return False, exc
    endpoint.breaker.success()
    return True, reply


def drop_keys(
    tiers: Tiers, endpoint: Endpoint, keys: tuple[str, ...], local_keys: tuple[Hashable, ...]
) -> Generator[Op, Any, None]:
    """Delete ``keys`` from L2 now, or remember to once it can be reached again.

    Other processes are told to drop ``local_keys`` (the same entries, as their L1s know them).
    """
    if not endpoint.breaker.allow():
        tiers.defer(keys=keys)
        return
    ok, reply = yield from l2_op(tiers, endpoint, Delete(endpoint, keys, tiers.announce(local_keys)))
    if not ok and isinstance(reply, RemoteUnavailable):
        tiers.defer(keys=keys)


def new_generation(tiers: Tiers, endpoint: Endpoint) -> Generator[Op, Any, None]:
    """Stale every L2 entry of ``tiers`` by starting a new generation, now or once L2 is back.

    From now on this process writes and accepts only the new generation, even before Redis
    has it: a clear that cannot reach Redis yet is replayed before the next L2 operation.
    """
    token = os.urandom(8)
    tiers.learn_generation(endpoint, token)
    if not endpoint.breaker.allow():
        tiers.defer(generation=token)
        return
    op = NewGeneration(endpoint, tiers.generation_key, token, tiers.announce(None))
    ok, reply = yield from l2_op(tiers, endpoint, op)
    if not ok and isinstance(reply, RemoteUnavailable):
        tiers.defer(generation=token)


def replay_repairs(tiers: Tiers, endpoint: Endpoint) -> Generator[Op, Any, bool]:
    """Replay invalidations that could not reach L2 when they were made; False if L2 failed."""
    generation, keys = tiers.pending_repairs()
    # Which L1 keys those were is not kept: other processes are told to drop everything.
    announce = tiers.announce(None)
    if generation is not None:
        op = NewGeneration(endpoint, tiers.generation_key, generation, announce)
        ok, _ = yield from l2_op(tiers, endpoint, op)
        if not ok:
            return False
        tiers.repaired(generation=generation)
        announce = None
    if keys:
        ok, _ = yield from l2_op(tiers, endpoint, Delete(endpoint, keys, announce))
        if not ok:
            return False
        tiers.repaired(keys=keys)
    return True
