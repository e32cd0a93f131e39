"""The I/O a flow can ask for, and the steps every flow's L2 work shares.

A flow yields these operations; a shell (``shells``) performs them and sends back the result,
or throws the operation's exception into the flow. Each names its ``owner``, the cache it is
done for, which only tracing reads (None: no cache in particular).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiercache._core.flights import Settled
from tiercache._core.interfaces import Arguments, AsyncStore, FlightHolder, Store
from tiercache._l2.coherence import Announce
from tiercache._l2.errors import RemoteError

if TYPE_CHECKING:
    from tiercache._core.tiers import Tiers
    from tiercache._l2.endpoint import Endpoint

__all__ = [
    "REMOTE_OPS",
    "AcquireLock",
    "Await",
    "ClaimTags",
    "Compute",
    "Flow",
    "Invalidate",
    "Join",
    "Land",
    "Op",
    "Outcome",
    "Overran",
    "Ping",
    "RaiseGeneration",
    "Read",
    "ReadMany",
    "ReadTagged",
    "ReleaseLock",
    "RemoteOp",
    "Sleep",
    "Spawn",
    "Swap",
    "Write",
    "WriteMany",
    "WriteManyIfUnchanged",
    "know_generation",
    "l2_op",
    "write_in_generation",
]


@dataclass(slots=True)
class Read:
    """Fetch ``key`` (and the generation, when ``generation_key`` is set): sent (gen, payload)."""

    endpoint: Endpoint
    key: str
    generation_key: str | None
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.read(self.key, self.generation_key)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.key,) if self.generation_key is None else (self.generation_key, self.key)


@dataclass(slots=True)
class ReadMany:
    """Fetch ``keys`` in one round trip: sent (generation or None, [payload or None, ...])."""

    endpoint: Endpoint
    keys: tuple[str, ...]
    generation_key: str | None
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.read_many(self.keys, self.generation_key)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return self.keys if self.generation_key is None else (self.generation_key, *self.keys)


@dataclass(slots=True)
class ReadTagged:
    """Fetch ``key`` and its tags' tokens (``tag_keys``) in one round trip.

    Sent ``(generation or None, payload, [token or None per tag key])``.
    """

    endpoint: Endpoint
    key: str
    generation_key: str | None
    tag_keys: tuple[str, ...]
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.read_tagged(self.key, self.generation_key, self.tag_keys)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (
            (self.key, *self.tag_keys)
            if self.generation_key is None
            else (self.generation_key, self.key, *self.tag_keys)
        )


@dataclass(slots=True)
class ClaimTags:
    """Give each of ``keys`` (tags Redis holds no token for) ``token`` unless one came meanwhile.

    Sent the token each holds now, ours or the one that came first.
    """

    endpoint: Endpoint
    keys: tuple[str, ...]
    token: bytes
    ttl_ms: int
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.claim_tokens(self.keys, self.token, self.ttl_ms)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return self.keys


@dataclass(slots=True)
class Write:
    """Store ``payload`` under ``key`` for ``ttl_ms`` if the key's token is still ``token``.

    Sent whether Redis took it (see ``_l2.envelope``: a value read or computed before an
    invalidation is refused).
    """

    endpoint: Endpoint
    key: str
    payload: bytes
    ttl_ms: int
    token: bytes
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.write(self.key, self.payload, self.ttl_ms, self.token)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.key,)


@dataclass(slots=True)
class Swap:
    """Store ``payload`` under ``key`` only if it still holds ``expected`` (None: nothing).

    Then announce. Sent whether it did (False: another writer changed the key since it was read).
    """

    endpoint: Endpoint
    key: str
    expected: bytes | None
    payload: bytes
    ttl_ms: int
    announce: Announce = None
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.swap(self.key, self.expected, self.payload, self.ttl_ms, self.announce)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.key,)


@dataclass(slots=True)
class WriteManyIfUnchanged:
    """``Write`` for each ``(key, payload, ttl_ms, token)``, in one round trip: sent which were taken."""

    endpoint: Endpoint
    items: tuple[tuple[str, bytes, int, bytes], ...]
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.write_many_if_unchanged(self.items)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return tuple(item[0] for item in self.items)


@dataclass(slots=True)
class WriteMany:
    """Store ``(key, payload, ttl_ms)`` items in one round trip, whatever they held.

    Sent the generation (read from ``generation_key``) as it was once they had landed, if asked,
    and ``[why]`` if Redis refused to publish the announcement.
    """

    endpoint: Endpoint
    items: tuple[tuple[str, bytes, int], ...]
    announce: Announce = None
    owner: Tiers | None = None
    generation_key: str | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.write_many(self.items, self.announce, self.generation_key)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        keys = tuple(item[0] for item in self.items)
        return keys if self.generation_key is None else (*keys, self.generation_key)


@dataclass(slots=True)
class Invalidate:
    """Leave ``tombstone`` under ``keys`` for ``ttl_ms`` (None: delete them), then announce."""

    endpoint: Endpoint
    keys: tuple[str, ...]
    tombstone: bytes | None
    ttl_ms: int
    announce: Announce = None
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.invalidate(self.keys, self.tombstone, self.ttl_ms, self.announce)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return self.keys


@dataclass(slots=True)
class RaiseGeneration:
    """Set the generation to max(Redis's, ``floor``) + ``step``; sent it and whether it changed."""

    endpoint: Endpoint
    generation_key: str
    floor: int
    step: int
    announce: Announce = None
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.raise_generation(self.generation_key, self.floor, self.step, self.announce)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.generation_key,)


@dataclass(slots=True)
class Ping:
    """Check that the endpoint answers."""

    endpoint: Endpoint
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.ping()

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return ()


@dataclass(slots=True)
class AcquireLock:
    """Take ``key`` for ``ttl_ms`` unless another process holds it; sent whether we got it."""

    endpoint: Endpoint
    key: str
    token: bytes
    ttl_ms: int
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.acquire_lock(self.key, self.token, self.ttl_ms)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.key,)


@dataclass(slots=True)
class ReleaseLock:
    """Give ``key`` back if it still holds our ``token``."""

    endpoint: Endpoint
    key: str
    token: bytes
    owner: Tiers | None = None

    def perform(self, store: Store | AsyncStore) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return store.release_lock(self.key, self.token)

    def names(self) -> tuple[str, ...]:
        """Return the Redis keys it touches."""
        return (self.key,)


@dataclass(slots=True)
class Join:
    """Join the single flight for ``key`` among ``cache``'s.

    Sent None to lead it, or how another run settled. (Threads and each event loop have
    flights of their own.)
    """

    key: Hashable
    cache: FlightHolder


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
    """Run ``function`` with ``call``'s arguments; sent its value or thrown its exception.

    With ``timeout``, the run may outlive the wait: past it, ``Overran`` is thrown instead,
    holding the run still under way (for an ``Outcome`` later).
    """

    function: Callable[..., Any]
    call: Arguments
    timeout: float | None = None
    owner: Tiers | None = None


class Overran(Exception):
    """Thrown into a flow whose ``Compute`` outlasted its timeout; the run goes on.

    ``pending`` is the run (a ``concurrent.futures.Future`` for a sync function, an asyncio
    task for an async one): yield ``Outcome(pending)`` from a flow spawned ``after`` it.
    """

    def __init__(self, pending: Any) -> None:
        super().__init__("the function outlasted its timeout")
        self.pending = pending

    owner: Tiers | None = None


@dataclass(slots=True)
class Outcome:
    """Sent the value of a run that overran (or thrown its exception)."""

    pending: Any


@dataclass(slots=True)
class Await:
    """Wait up to ``timeout`` seconds for ``pending``, a run that overran for an earlier caller.

    Sent its value, or thrown its exception; past the timeout, ``Overran`` (the run goes on).
    """

    pending: Any
    timeout: float | None


@dataclass(slots=True)
class Sleep:
    """Wait ``seconds`` (while another process fills L2)."""

    seconds: float


@dataclass(slots=True)
class Spawn:
    """Run ``flow`` in the background; the caller does not wait for it.

    With ``after`` (a run that overran), start it once that run has ended. ``dropped`` is called
    if the flow never starts (tiercache closed first): what the flow would have released in its
    ``finally``, it releases (a generator that never started runs no ``finally``).
    """

    flow: Generator[Any, Any, Any]
    after: Any = None
    dropped: Callable[[], object] | None = None


#: The operations on L2; each performs itself on a store (``perform``; awaited for an async one).
REMOTE_OPS = (
    Read,
    ReadMany,
    ReadTagged,
    ClaimTags,
    Write,
    Swap,
    WriteManyIfUnchanged,
    WriteMany,
    Invalidate,
    RaiseGeneration,
    Ping,
    AcquireLock,
    ReleaseLock,
)
RemoteOp = (
    Read
    | ReadMany
    | ReadTagged
    | ClaimTags
    | Write
    | Swap
    | WriteManyIfUnchanged
    | WriteMany
    | Invalidate
    | RaiseGeneration
    | Ping
    | AcquireLock
    | ReleaseLock
)
Op = RemoteOp | Join | Land | Compute | Await | Outcome | Sleep | Spawn
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


def know_generation(tiers: Tiers, endpoint: Endpoint) -> Generator[Op, Any, bool]:
    """Make sure a generation is known before sealing payloads; False if L2 failed.

    One known is enough, however old: write_in_generation() reads it again in the writes' own
    round trip and writes again if a clear came first, so a set is one round trip.
    """
    if tiers.knows_generation(endpoint):
        return True
    ok, reply = yield from l2_op(tiers, endpoint, ReadMany(endpoint, (), tiers.generation_key, tiers))
    if ok:
        tiers.learn_generation(endpoint, reply[0])
    return bool(ok)


#: Times write_in_generation() writes again because a clear came before its writes landed.
MAX_REWRITES = 8


def write_in_generation(
    tiers: Tiers,
    endpoint: Endpoint,
    seal: Callable[[], tuple[tuple[str, bytes, int], ...]],
    announce: Announce,
) -> Generator[Op, Any, bool]:
    """Write what ``seal()`` returns, sealed in the generation known now; False if it did not land.

    A value set (not computed) must survive a clear made just before it, in another process
    this one has not heard from yet: sealed in the old generation, it would be a miss for all.
    So the generation is read once the writes have landed; if a clear came first, everything
    is sealed again in the new generation and written again.
    """
    for _ in range(MAX_REWRITES):
        sealed_in = tiers.known_generation()
        items = seal()
        if not items:
            return False
        op = WriteMany(endpoint, items, announce, tiers, tiers.generation_key)
        ok, reply = yield from l2_op(tiers, endpoint, op)
        if not ok:
            return False
        raw, unheard = reply
        if unheard:
            # The values landed; only other processes' L1s were not told (they keep what they
            # hold until ttl_l1, as a process that cannot hear announcements does).
            tiers.log_once(
                "set-unheard",
                "%s: Redis at %s took a set but refused to announce it (%s); other processes' "
                "L1s keep what they hold until it expires",
                tiers.label,
                endpoint.name,
                "; ".join(unheard),
            )
        if tiers.learn_generation(endpoint, raw) <= sealed_in:
            return True
    return False
