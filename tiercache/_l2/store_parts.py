"""What the sync and async stores share: error translation, and the commands' halves that do no I/O.

Queuing a pipeline's commands and reading its replies back is the same for both stores; only
sending differs (see ``async_commands``, from which the sync store is generated). Anything the
client raises leaves a store as a ``RemoteError`` (see ``errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import redis

from tiercache._l2.coherence import Announce
from tiercache._l2.envelope import ABSENT, FOREIGN_TOKEN, fresh_since_absent
from tiercache._l2.errors import RemoteError, RemoteRejected, RemoteSaturated, RemoteUnavailable, brief
from tiercache._l2.oversized import Guard, Oversized
from tiercache._l2.pool import NO_CONNECTION
from tiercache._l2.replies import OversizedReply, from_bounded_reads, queue_bounded_reads
from tiercache._l2.scripts import WRITE_IF_UNCHANGED


class Checks(Protocol):
    """What a store tells its endpoint's background checks (see deployment_checks)."""

    def unconfirmed(self, what: str, reply: Any, within_ms: int) -> None:
        """Say (once) that no replica acknowledged ``what`` in time (``reply``: WAIT's answer)."""

    def suspect(self, names: Sequence[str]) -> None:
        """Say that a read of ``names`` timed out (a string past the bound may be why)."""


class Owner(Protocol):
    """What a store reads of the endpoint that made it."""

    #: Whether it is a Redis Cluster (multi-key reads are split by slot).
    cluster: bool
    #: How many times its breaker opened (connections from before the last one may be dead).
    openings: int
    #: Milliseconds an invalidation or a set waits for a replica to acknowledge it (0: none);
    #: a Sentinel deployment's failover would otherwise lose what the replica had not received.
    confirm_ms: int
    #: Whether reads ask each key's length first (see oversized.Guard).
    guard: Guard

    @property
    def checks(self) -> Checks:
        """Where unacknowledged writes and timed-out reads are told."""


def translate(exc: BaseException) -> RemoteError:
    if isinstance(exc, redis.ResponseError):
        return RemoteRejected(_without_arguments(str(exc)))
    if isinstance(exc, OversizedReply):  # (Redis answered; what it holds is not ours: see replies)
        return RemoteRejected(str(exc))
    if _saturated(exc):
        return RemoteSaturated(brief(exc))
    return RemoteUnavailable(brief(exc))


#: How redis-py annotates the error of a pipelined command: it quotes the command, values and all.
_PIPELINE_ERROR: Final = ") of pipeline caused error: "


def _without_arguments(message: str) -> str:
    """Return Redis's error without the command redis-py quotes before it (our values' bytes)."""
    quoted, found, reason = message.rpartition(_PIPELINE_ERROR)
    if not found:
        return message
    command = quoted.partition("(")[2].partition(" ")[0]
    return f"{command or 'a command'} in a pipeline: {reason}"


def _saturated(exc: BaseException) -> bool:
    # redis-py's own pool limit (a client the application built), or our blocking pool's wait
    # for a free connection running out: both come before any command is sent.
    return isinstance(exc, redis.exceptions.MaxConnectionsError) or (
        isinstance(exc, redis.ConnectionError) and str(exc) == NO_CONNECTION
    )


class _Translated:
    """``with TRANSLATED:`` turns a client failure into a RemoteError (stateless, reusable)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # Anything the client raises is an L2 failure to us, not only RedisError and OSError: a
        # connection closed under a command surfaces as ValueError, and must not reach a caller
        # either. (Interruptions, BaseException, pass through.)
        if isinstance(exc, Exception) and not isinstance(exc, RemoteError):
            raise translate(exc) from exc


TRANSLATED = _Translated()

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


def missing_permissions(client: Any, namespace: str, channel: str) -> list[str] | None:
    """Return the commands the server's ACL denies ``client``'s user on ``namespace``, or None.

    None when the server cannot say (no ACL DRYRUN: Redis < 7, a cluster, a user who may not run it).
    """
    names = {"key": f"{namespace}:access-check", "channel": channel}
    denied = []
    try:
        user = client.execute_command("ACL", "WHOAMI")
        for name, command in _NEEDED:
            words = [word.format(**names) for word in command]
            if client.execute_command("ACL", "DRYRUN", user, *words) not in (b"OK", "OK"):
                denied.append(name)
    except Exception:  # the server cannot say: the first refusal will be logged instead
        return None
    return denied


def _refused(command: str, count: int, reasons: Sequence[str]) -> list[str]:
    """Return the one line that says Redis refused ``command`` (on ``count`` keys), and why."""
    on = f" of {count} key(s)" if count else ""
    return [f"{command}{on} refused: {'; '.join(reason.rstrip('.') for reason in reasons)}"]


def attempt(command: str, keys: Sequence[str], run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``run``; return its result and ``[what Redis refused]`` if it answered with an error.

    Anything else (no answer, a dropped connection) propagates: that is an outage, not a refusal.
    """
    try:
        return run(), []
    except redis.ResponseError as exc:
        return None, _refused(command, len(keys), [str(exc)])


async def aattempt(
    command: str, keys: Sequence[str], run: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[str]]:
    """Await ``run``; return its result and ``[what Redis refused]``, as ``attempt`` does."""
    try:
        return await run(), []
    except redis.ResponseError as exc:
        return None, _refused(command, len(keys), [str(exc)])


def answered(command: str, reply: Any) -> tuple[Any, list[str]]:
    """Return a pipelined command's reply, and ``[what Redis refused]`` if it answered an error."""
    if isinstance(reply, redis.ResponseError):
        return None, _refused(command, 0, [str(reply)])
    return reply, []


def refused_in(keys: Sequence[str], results: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Return the keys whose pipelined SET Redis refused, and why (each reason once)."""
    refused = [(key, r) for key, r in zip(keys, results, strict=True) if isinstance(r, redis.ResponseError)]
    if not refused:
        return [], []
    reasons = sorted({str(error) for _, error in refused})
    return [key for key, _ in refused], _refused("the tombstone's SET", len(refused), reasons)


def confirmed(owner: Owner, pipeline: Any) -> bool:
    """Queue WAIT for one replica at the end of ``pipeline`` when ``owner`` asks for it; return whether."""
    if owner.confirm_ms:
        pipeline.execute_command("WAIT", 1, owner.confirm_ms)
        return True
    return False


def check_confirmed(owner: Owner, what: str, replies: list[Any]) -> list[Any]:
    """Take WAIT's reply off the end of ``replies`` (see confirmed); say if no replica had it."""
    reply = replies.pop()
    if isinstance(reply, Exception) or not reply:
        owner.checks.unconfirmed(what, reply, owner.confirm_ms)
    return replies


@dataclass(slots=True)
class WritePlan:
    """What write_many queued on its pipeline besides the SETs, to read their replies back."""

    confirm: bool
    generation: bool  # GET of the generation key, after the SETs (one server)
    publish: bool  # PUBLISH, after them (one server: the same connection keeps the order)


def queue_write_many(
    owner: Owner,
    pipeline: Any,
    items: tuple[tuple[str, bytes, int], ...],
    announce: Announce,
    generation_key: str | None,
) -> WritePlan:
    """Queue a set's whole round trip: the SETs, WAIT, the generation's GET and the announcement.

    On a cluster the pipeline sends each node its share at once, with no order between nodes:
    the generation is read, and the announcement published, after it has landed (see the stores).
    """
    for key, payload, ttl_ms in items:
        pipeline.set(key, payload, px=ttl_ms)
    plan = WritePlan(confirmed(owner, pipeline), False, False)
    if generation_key is not None and not owner.cluster:
        pipeline.get(generation_key)
        plan.generation = True
    if announce is not None and not owner.cluster:
        pipeline.execute_command("PUBLISH", *announce)
        plan.publish = True
    return plan


def read_write_many(owner: Owner, plan: WritePlan, replies: list[Any]) -> tuple[Any, list[str]]:
    """Return (the generation read, ``[why]`` Redis refused the announcement) from the replies.

    A refused SET raises (as an unpipelined one would); the announcement then went out all the
    same, which costs the other processes an L1 entry, never a wrong value.
    """
    unheard = answered("PUBLISH", replies.pop())[1] if plan.publish else []
    generation = replies.pop() if plan.generation else None
    if plan.confirm:
        check_confirmed(owner, "a set", replies)
    failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if failed is not None:
        raise failed
    return generation, unheard


@dataclass(slots=True)
class Invalidation:
    """An invalidation's whole round trip on one server: tombstones (or DEL), WAIT, PUBLISH.

    One connection keeps the order: the announcement goes out once the keys are dropped (and,
    with WAIT, once a replica has them).
    """

    owner: Owner
    keys: Sequence[str]
    tombstone: bytes | None
    announce: Announce
    confirm: bool = False

    def queue(self, pipeline: Any, ttl_ms: int) -> Any:
        """Queue the commands on ``pipeline``; return it."""
        if self.tombstone is None:
            pipeline.delete(*self.keys)
        else:
            for key in self.keys:
                pipeline.set(key, self.tombstone, px=ttl_ms)
        self.confirm = confirmed(self.owner, pipeline)
        if self.announce is not None:
            pipeline.execute_command("PUBLISH", *self.announce)
        return pipeline

    def read(self, replies: list[Any]) -> tuple[Sequence[str], list[str], list[str], list[str]]:
        """Return (keys whose tombstone Redis refused, why, what it refused to drop, to publish)."""
        unheard = answered("PUBLISH", replies.pop())[1] if self.announce is not None else []
        if self.confirm:
            check_confirmed(self.owner, "an invalidation", replies)
        if self.tombstone is not None:
            left, why = refused_in(self.keys, replies)
            return left, why, [], unheard
        return (), [], answered("DEL", replies[0])[1], unheard


def generation_reply(reply: Any) -> tuple[int, bool]:
    new, changed = reply
    return int(new), bool(changed)


def queue_conditional_write(
    pipeline: Any, key: str, payload: bytes, ttl_ms: int, token: bytes, *, nx_get: bool
) -> None:
    """Queue ``write()``'s command on ``pipeline``: SET NX GET where the writer read nothing."""
    if token == ABSENT and nx_get:
        pipeline.set(key, payload, px=ttl_ms, nx=True, get=True)
    else:  # EVAL, not EVALSHA: a pipeline cannot load a missing script on the way
        pipeline.eval(WRITE_IF_UNCHANGED, 1, key, token, payload, ttl_ms)


def bounded(client: Any, names: Sequence[str]) -> Any:
    """Return a pipeline reading ``names`` through READ_BOUNDED, to execute (see replies)."""
    pipeline = client.pipeline(transaction=False)
    queue_bounded_reads(pipeline, names)
    return pipeline


def read_bounded_with(
    client: Any, names: Sequence[str], guard: Guard, other_type: bytes | None = None
) -> list[bytes | None]:
    """Read ``names`` through READ_BOUNDED on a sync ``client``; raise what the client raises.

    A string past the bound reads as ``Oversized``, and arms ``guard``; a key of another type
    reads as ``other_type``.
    """
    replies = bounded(client, names).execute(raise_on_error=False)
    return noted(guard, from_bounded_reads(replies, other_type))


def swap_args(expected: bytes | None, payload: bytes, ttl_ms: int) -> list[Any]:
    """Return SWAP_IF_EQUAL's arguments; for a string past the bound, its length and first bytes."""
    if isinstance(expected, Oversized):
        return [expected, payload, ttl_ms, expected.size]
    return [expected or b"", payload, ttl_ms]


def failed_read(owner: Owner, exc: Exception, names: Sequence[str]) -> RemoteError:
    """Return the RemoteError a failed read of ``names`` raises; a timeout makes them suspects."""
    if isinstance(exc, redis.TimeoutError):
        owner.checks.suspect(names)
    return translate(exc)


def names_of(key: str, generation_key: str | None) -> list[str]:
    """Return what ``read()`` reads: ``key``, after ``generation_key`` if given."""
    return [key] if generation_key is None else [generation_key, key]


def pair(found: list[bytes | None], generation_key: str | None) -> tuple[bytes | None, bytes | None]:
    """Return ``(generation, payload)`` from what ``names_of`` named."""
    return (None, found[0]) if generation_key is None else (found[0], found[1])


def noted(guard: Guard, found: list[bytes | None]) -> list[bytes | None]:
    """Return ``found``; arm ``guard`` again if a string past the bound is among it."""
    if any(isinstance(value, Oversized) for value in found):
        guard.arm()
    return found


def any_oversized(replies: Sequence[Any]) -> bool:
    """Whether a reply of a pipeline was a string past the bound (see replies)."""
    return any(isinstance(reply, OversizedReply) for reply in replies)


def queue_claims(pipeline: Any, keys: Sequence[str], token: bytes, ttl_ms: int, *, guarded: bool) -> None:
    """Queue, per key, SET NX of ``token`` then GET: each key's two commands stay in order.

    ``guarded``: READ_BOUNDED instead of GET (see oversized.Guard).
    """
    for key in keys:
        pipeline.set(key, token, px=ttl_ms, nx=True)
        if guarded:
            queue_bounded_reads(pipeline, (key,))
        else:
            pipeline.get(key)


def guard_on(guard: Guard) -> bool:
    """Whether ``guard`` is on (its clock is read only while it is set)."""
    return bool(guard.until) and guard.active()


def claimed(replies: Sequence[Any], *, guarded: bool) -> list[bytes | None]:
    """Return what each claimed key holds, from ``queue_claims``'s replies.

    A key of another type (planted) answers GET with an error: it reads as b"", not a token,
    which the claimant replaces (see flow._claim_tags), where raising would fail every call.
    A SET NX answering with an error is a Redis that refused the write: raised.
    """
    for reply in replies[0::2]:
        if isinstance(reply, Exception):
            raise reply
    if guarded:
        return from_bounded_reads(list(replies[1::2]), other_type=b"")
    return [b"" if isinstance(reply, Exception) else reply for reply in replies[1::2]]


def to_redo(
    items: Sequence[tuple[str, bytes, int, bytes]], replies: Sequence[Any]
) -> list[tuple[int, bytes]]:
    """Return the SET NX GET writes to send again through the script, each with the token to compare.

    A key of another type where MGET said nothing was is planted, not ours: it is overwritten as
    the single-call write overwrites anything not ours (its read fails: FOREIGN_TOKEN). A syntax
    error is a Redis older than 7.0 (NX with GET is 7.0's): the script does the same check.
    """
    redo = []
    for index, ((_, _, _, token), reply) in enumerate(zip(items, replies, strict=True)):
        if token == ABSENT and isinstance(reply, redis.ResponseError):
            again = redo_token(reply)
            if again is not None:
                redo.append((index, again))
    return redo


def redo_token(error: redis.ResponseError) -> bytes | None:
    """Return the token to send a refused SET NX GET again with, through the script (None: give up).

    WRONGTYPE: a key of another type, which MGET reads as nothing, is planted, not ours; it is
    overwritten as any bytes not ours are. A syntax error: a Redis older than 7.0.
    """
    if "WRONGTYPE" in str(error):
        return FOREIGN_TOKEN
    if "syntax" in str(error).lower():
        return ABSENT
    return None


def conditional_outcomes(
    items: Sequence[tuple[str, bytes, int, bytes]], replies: Sequence[Any]
) -> list[bool | RemoteError]:
    """Return, per queued write, whether Redis took it, or the error it answered instead."""
    outcomes: list[bool | RemoteError] = []
    for (_, _, _, token), reply in zip(items, replies, strict=True):
        if isinstance(reply, Exception):
            outcomes.append(translate(reply))
        elif token == ABSENT and not isinstance(reply, int):  # SET NX GET: what it found there
            outcomes.append(reply is None or fresh_since_absent(reply))
        else:
            outcomes.append(bool(reply))
    return outcomes
