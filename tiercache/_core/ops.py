"""The I/O a flow can ask for, and the steps every flow's L2 work shares.

A flow yields these operations; a shell (``shells``) performs them and sends back the result,
or throws the operation's exception into the flow. Work on L2 is one type, ``Command``: a
store method and its arguments, made by the function of the same name here (``read``,
``write``, ...). A new Redis command goes in two places besides: the sync and async stores'
methods of that name (``_l2.stores``). The other operations drive single flights, runs and waits.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiercache._core.flights import FlightTables, Settled
from tiercache._core.interfaces import Arguments
from tiercache._l2.coherence import Announce
from tiercache._l2.errors import RemoteError

if TYPE_CHECKING:
    from tiercache._core.tiers import Tiers
    from tiercache._l2.endpoint import Endpoint

__all__ = [
    "ACQUIRE_LOCK",
    "CLAIM_TOKENS",
    "INVALIDATE",
    "KINDS",
    "PING",
    "RAISE_GENERATION",
    "READ",
    "READ_MANY",
    "READ_TAGGED",
    "RELEASE_LOCK",
    "SWAP",
    "WRITE",
    "WRITE_MANY",
    "WRITE_MANY_IF_UNCHANGED",
    "Await",
    "Command",
    "Compute",
    "Flow",
    "Join",
    "Kind",
    "Land",
    "Op",
    "Outcome",
    "Overran",
    "Sleep",
    "Spawn",
    "acquire_lock",
    "claim_tokens",
    "invalidate",
    "know_generation",
    "l2_op",
    "ping",
    "raise_generation",
    "read",
    "read_many",
    "read_tagged",
    "release_lock",
    "swap",
    "write",
    "write_in_generation",
    "write_many",
    "write_many_if_unchanged",
]


def _found(command: Command, reply: Any) -> str:
    return "hit" if reply[1] is not None else "miss"


def _found_many(command: Command, reply: Any) -> str:
    if not command.keys:  # (a read of the generation alone)
        return "done"
    found = sum(payload is not None for payload in reply[1])
    return "hit" if found == len(command.keys) else "miss" if not found else "partial"


def _stored(command: Command, reply: Any) -> str:
    return "stored" if reply else "refused"


def _stored_many(command: Command, reply: Any) -> str:
    return "stored" if all(reply) else "refused" if not any(reply) else "partial"


def _acquired(command: Command, reply: Any) -> str:
    return "acquired" if reply else "held"


def _done(command: Command, reply: Any) -> str:
    return "done"


@dataclass(frozen=True, slots=True)
class Kind:
    """What a command is: the store method that performs it, and what tracing makes of it.

    ``method`` is also the name of the function here that makes the command, whose arguments
    (after the endpoint) are the store method's ``params``; a unit test holds the two stores
    and the maker to them.
    """

    method: str
    params: tuple[str, ...]
    #: What spans call it (``tiercache.l2.<span>``).
    span: str
    #: What its reply says happened (``tiercache.outcome``).
    outcome: Callable[[Command, Any], str] = _done


@dataclass(slots=True)
class Command:
    """One command on L2: the ``kind``'s store method, called with ``args``.

    ``owner`` is the cache it is done for, which only tracing reads (None: no cache in
    particular). The Redis keys it touches are read off its arguments by their names (so a
    command builds nothing more on the hot path): ``key``, ``keys`` and ``items``' keys are its
    entries, ``generation_key`` and ``tag_keys`` the others.
    """

    kind: Kind
    endpoint: Endpoint
    args: tuple[Any, ...]
    owner: Tiers | None = None

    def perform(self, store: Any) -> Any:
        """Do it on ``store``: the result, or from an async store the awaitable of it."""
        return getattr(store, self.kind.method)(*self.args)

    def arg(self, name: str) -> Any:
        """Return the argument called ``name`` (see ``Kind.params``)."""
        return self.args[self.kind.params.index(name)]

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the entries it is about (spans name one by its digest)."""
        for name, value in zip(self.kind.params, self.args, strict=True):
            if name == "key":
                return (value,)
            if name == "keys":
                return tuple(value)
            if name == "items":
                return tuple(item[0] for item in value)
        return ()

    def names(self) -> tuple[str, ...]:
        """Return every Redis key it touches: its entries', the generation's, its tags'."""
        named = dict(zip(self.kind.params, self.args, strict=True))
        generation = named.get("generation_key")
        return (*self.keys, *(() if generation is None else (generation,)), *named.get("tag_keys", ()))


READ = Kind("read", ("key", "generation_key"), "read", _found)
READ_TAGGED = Kind("read_tagged", ("key", "generation_key", "tag_keys"), "read", _found)
READ_MANY = Kind("read_many", ("keys", "generation_key"), "read_many", _found_many)
CLAIM_TOKENS = Kind("claim_tokens", ("keys", "token", "ttl_ms"), "claim_tags")
WRITE = Kind("write", ("key", "payload", "ttl_ms", "token"), "write", _stored)
SWAP = Kind("swap", ("key", "expected", "payload", "ttl_ms", "announce"), "swap", _stored)
WRITE_MANY_IF_UNCHANGED = Kind("write_many_if_unchanged", ("items",), "write_many", _stored_many)
WRITE_MANY = Kind("write_many", ("items", "announce", "generation_key"), "write_many")
INVALIDATE = Kind("invalidate", ("keys", "tombstone", "ttl_ms", "announce"), "invalidate")
RAISE_GENERATION = Kind("raise_generation", ("generation_key", "floor", "step", "announce"), "clear")
PING = Kind("ping", (), "ping")
ACQUIRE_LOCK = Kind("acquire_lock", ("key", "token", "ttl_ms"), "lock", _acquired)
RELEASE_LOCK = Kind("release_lock", ("key", "token"), "unlock")
#: Every kind of command, for the test that holds the stores to them.
KINDS = (
    READ,
    READ_TAGGED,
    READ_MANY,
    CLAIM_TOKENS,
    WRITE,
    SWAP,
    WRITE_MANY_IF_UNCHANGED,
    WRITE_MANY,
    INVALIDATE,
    RAISE_GENERATION,
    PING,
    ACQUIRE_LOCK,
    RELEASE_LOCK,
)


def read(endpoint: Endpoint, key: str, generation_key: str | None, *, owner: Tiers | None = None) -> Command:
    """Fetch ``key`` (and the generation, when ``generation_key`` is set): sent (gen, payload)."""
    return Command(READ, endpoint, (key, generation_key), owner)


def read_tagged(
    endpoint: Endpoint,
    key: str,
    generation_key: str | None,
    tag_keys: tuple[str, ...],
    *,
    owner: Tiers | None = None,
) -> Command:
    """Fetch ``key`` and its tags' tokens (``tag_keys``) in one round trip.

    Sent ``(generation or None, payload, [token or None per tag key])``.
    """
    return Command(READ_TAGGED, endpoint, (key, generation_key, tag_keys), owner)


def read_many(
    endpoint: Endpoint, keys: tuple[str, ...], generation_key: str | None, *, owner: Tiers | None = None
) -> Command:
    """Fetch ``keys`` in one round trip: sent (generation or None, [payload or None, ...])."""
    return Command(READ_MANY, endpoint, (keys, generation_key), owner)


def claim_tokens(
    endpoint: Endpoint, keys: tuple[str, ...], token: bytes, ttl_ms: int, *, owner: Tiers | None = None
) -> Command:
    """Give each of ``keys`` (tags Redis holds no token for) ``token`` unless one came meanwhile.

    Sent the token each holds now, ours or the one that came first.
    """
    return Command(CLAIM_TOKENS, endpoint, (keys, token, ttl_ms), owner)


def write(
    endpoint: Endpoint, key: str, payload: bytes, ttl_ms: int, token: bytes, *, owner: Tiers | None = None
) -> Command:
    """Store ``payload`` under ``key`` for ``ttl_ms`` if the key's token is still ``token``.

    Sent whether Redis took it (see ``_l2.envelope``: a value read or computed before an
    invalidation is refused).
    """
    return Command(WRITE, endpoint, (key, payload, ttl_ms, token), owner)


def swap(
    endpoint: Endpoint,
    key: str,
    expected: bytes | None,
    payload: bytes,
    ttl_ms: int,
    *,
    announce: Announce = None,
    owner: Tiers | None = None,
) -> Command:
    """Store ``payload`` under ``key`` only if it still holds ``expected`` (None: nothing).

    Then announce. Sent whether it did (False: another writer changed the key since it was read).
    """
    return Command(SWAP, endpoint, (key, expected, payload, ttl_ms, announce), owner)


def write_many_if_unchanged(
    endpoint: Endpoint, items: tuple[tuple[str, bytes, int, bytes], ...], *, owner: Tiers | None = None
) -> Command:
    """``write`` for each ``(key, payload, ttl_ms, token)``, in one round trip: sent which were taken."""
    return Command(WRITE_MANY_IF_UNCHANGED, endpoint, (items,), owner)


def write_many(
    endpoint: Endpoint,
    items: tuple[tuple[str, bytes, int], ...],
    announce: Announce = None,
    generation_key: str | None = None,
    *,
    owner: Tiers | None = None,
) -> Command:
    """Store ``(key, payload, ttl_ms)`` items in one round trip, whatever they held.

    Sent the generation (read from ``generation_key``) as it was once they had landed, if asked,
    and ``[why]`` if Redis refused to publish the announcement.
    """
    return Command(WRITE_MANY, endpoint, (items, announce, generation_key), owner)


def invalidate(
    endpoint: Endpoint,
    keys: tuple[str, ...],
    tombstone: bytes | None,
    ttl_ms: int,
    announce: Announce = None,
    *,
    owner: Tiers | None = None,
) -> Command:
    """Leave ``tombstone`` under ``keys`` for ``ttl_ms`` (None: delete them), then announce."""
    return Command(INVALIDATE, endpoint, (keys, tombstone, ttl_ms, announce), owner)


def raise_generation(
    endpoint: Endpoint,
    generation_key: str,
    floor: int,
    step: int,
    announce: Announce = None,
    *,
    owner: Tiers | None = None,
) -> Command:
    """Set the generation to max(Redis's, ``floor``) + ``step``; sent it and whether it changed."""
    return Command(RAISE_GENERATION, endpoint, (generation_key, floor, step, announce), owner)


def ping(endpoint: Endpoint, *, owner: Tiers | None = None) -> Command:
    """Check that the endpoint answers."""
    return Command(PING, endpoint, (), owner)


def acquire_lock(
    endpoint: Endpoint, key: str, token: bytes, ttl_ms: int, *, owner: Tiers | None = None
) -> Command:
    """Take ``key`` for ``ttl_ms`` unless another process holds it; sent whether we got it."""
    return Command(ACQUIRE_LOCK, endpoint, (key, token, ttl_ms), owner)


def release_lock(endpoint: Endpoint, key: str, token: bytes, *, owner: Tiers | None = None) -> Command:
    """Give ``key`` back if it still holds our ``token``."""
    return Command(RELEASE_LOCK, endpoint, (key, token), owner)


@dataclass(slots=True)
class Join:
    """Join the single flight for ``key`` among a cache's ``flights``.

    Sent None to lead it, or how another run settled. (Threads and each event loop have
    flights of their own.)
    """

    key: Hashable
    flights: FlightTables


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


Op = Command | Join | Land | Compute | Await | Outcome | Sleep | Spawn
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
    if tiers.remote.knows_generation(endpoint):
        return True
    ok, reply = yield from l2_op(tiers, endpoint, read_many(endpoint, (), tiers.generation_key, owner=tiers))
    if ok:
        tiers.remote.learn_generation(endpoint, reply[0])
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
        sealed_in = tiers.remote.known_generation()
        items = seal()
        if not items:
            return False
        op = write_many(endpoint, items, announce, tiers.generation_key, owner=tiers)
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
        if tiers.remote.learn_generation(endpoint, raw) <= sealed_in:
            return True
    return False
