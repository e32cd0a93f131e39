"""The commands the tiers send to Redis, as sync and async twins; the only redis-py calls.

Anything the client raises leaves here as a ``RemoteError`` (see ``errors``). Announcements go
out as ``execute_command("PUBLISH", ...)``: redis-py's asyncio RedisCluster has no ``publish()``
before 8.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from tiercache._l2.coherence import Announce
from tiercache._l2.envelope import (
    ABSENT,
    FOREIGN_TOKEN,
    fresh_since_absent,
)
from tiercache._l2.errors import RemoteError, RemoteRejected, RemoteSaturated, RemoteUnavailable, brief
from tiercache._l2.oversized import Guard, Oversized
from tiercache._l2.pool import NO_CONNECTION
from tiercache._l2.replies import OversizedReply, from_bounded_reads, queue_bounded_reads
from tiercache._l2.scripts import RAISE_GENERATION, RELEASE_LOCK, SWAP_IF_EQUAL, WRITE_IF_UNCHANGED
from tiercache._l2.wire import ways_for


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

    def unconfirmed(self, what: str, reply: Any) -> None:
        """Say (once) that no replica acknowledged ``what`` in time (``reply``: WAIT's answer)."""

    def suspect(self, names: Sequence[str]) -> None:
        """Say that a read of ``names`` timed out (a string past the bound may be why)."""


__all__ = ["AsyncStore", "Owner", "SyncStore", "missing_permissions", "read_bounded_with"]

logger = logging.getLogger("tiercache")


def _translate(exc: BaseException) -> RemoteError:
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
            raise _translate(exc) from exc


_TRANSLATED = _Translated()

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


def _answered(command: str, reply: Any) -> tuple[Any, list[str]]:
    """Return a pipelined command's reply, and ``[what Redis refused]`` if it answered an error."""
    if isinstance(reply, redis.ResponseError):
        return None, _refused(command, 0, [str(reply)])
    return reply, []


def _refused_in(keys: Sequence[str], results: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Return the keys whose pipelined SET Redis refused, and why (each reason once)."""
    refused = [(key, r) for key, r in zip(keys, results, strict=True) if isinstance(r, redis.ResponseError)]
    if not refused:
        return [], []
    reasons = sorted({str(error) for _, error in refused})
    return [key for key, _ in refused], _refused("the tombstone's SET", len(refused), reasons)


def _confirmed(owner: Owner, pipeline: Any) -> bool:
    """Queue WAIT for one replica at the end of ``pipeline`` when ``owner`` asks for it; return whether."""
    if owner.confirm_ms:
        pipeline.execute_command("WAIT", 1, owner.confirm_ms)
        return True
    return False


def _check_confirmed(owner: Owner, what: str, replies: list[Any]) -> list[Any]:
    """Take WAIT's reply off the end of ``replies`` (see _confirmed); say if no replica had it."""
    reply = replies.pop()
    if isinstance(reply, Exception) or not reply:
        owner.unconfirmed(what, reply)
    return replies


@dataclass(slots=True)
class _WritePlan:
    """What write_many queued on its pipeline besides the SETs, to read their replies back."""

    confirm: bool
    generation: bool  # GET of the generation key, after the SETs (one server)
    publish: bool  # PUBLISH, after them (one server: the same connection keeps the order)


def _queue_write_many(
    owner: Owner,
    pipeline: Any,
    items: tuple[tuple[str, bytes, int], ...],
    announce: Announce,
    generation_key: str | None,
) -> _WritePlan:
    """Queue a set's whole round trip: the SETs, WAIT, the generation's GET and the announcement.

    On a cluster the pipeline sends each node its share at once, with no order between nodes:
    the generation is read, and the announcement published, after it has landed (see the stores).
    """
    for key, payload, ttl_ms in items:
        pipeline.set(key, payload, px=ttl_ms)
    plan = _WritePlan(_confirmed(owner, pipeline), False, False)
    if generation_key is not None and not owner.cluster:
        pipeline.get(generation_key)
        plan.generation = True
    if announce is not None and not owner.cluster:
        pipeline.execute_command("PUBLISH", *announce)
        plan.publish = True
    return plan


def _read_write_many(owner: Owner, plan: _WritePlan, replies: list[Any]) -> tuple[Any, list[str]]:
    """Return (the generation read, ``[why]`` Redis refused the announcement) from the replies.

    A refused SET raises (as an unpipelined one would); the announcement then went out all the
    same, which costs the other processes an L1 entry, never a wrong value.
    """
    unheard = _answered("PUBLISH", replies.pop())[1] if plan.publish else []
    generation = replies.pop() if plan.generation else None
    if plan.confirm:
        _check_confirmed(owner, "a set", replies)
    failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if failed is not None:
        raise failed
    return generation, unheard


@dataclass(slots=True)
class _Invalidation:
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
        self.confirm = _confirmed(self.owner, pipeline)
        if self.announce is not None:
            pipeline.execute_command("PUBLISH", *self.announce)
        return pipeline

    def read(self, replies: list[Any]) -> tuple[Sequence[str], list[str], list[str], list[str]]:
        """Return (keys whose tombstone Redis refused, why, what it refused to drop, to publish)."""
        unheard = _answered("PUBLISH", replies.pop())[1] if self.announce is not None else []
        if self.confirm:
            _check_confirmed(self.owner, "an invalidation", replies)
        if self.tombstone is not None:
            left, why = _refused_in(self.keys, replies)
            return left, why, [], unheard
        return (), [], _answered("DEL", replies[0])[1], unheard


def _generation_reply(reply: Any) -> tuple[int, bool]:
    new, changed = reply
    return int(new), bool(changed)


def _queue_conditional_write(
    pipeline: Any, key: str, payload: bytes, ttl_ms: int, token: bytes, *, nx_get: bool
) -> None:
    """Queue ``write()``'s command on ``pipeline``: SET NX GET where the writer read nothing."""
    if token == ABSENT and nx_get:
        pipeline.set(key, payload, px=ttl_ms, nx=True, get=True)
    else:  # EVAL, not EVALSHA: a pipeline cannot load a missing script on the way
        pipeline.eval(WRITE_IF_UNCHANGED, 1, key, token, payload, ttl_ms)


def _bounded(client: Any, names: Sequence[str]) -> Any:
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
    replies = _bounded(client, names).execute(raise_on_error=False)
    return _noted(guard, from_bounded_reads(replies, other_type))


def _swap_args(expected: bytes | None, payload: bytes, ttl_ms: int) -> list[Any]:
    """Return SWAP_IF_EQUAL's arguments; for a string past the bound, its length and first bytes."""
    if isinstance(expected, Oversized):
        return [expected, payload, ttl_ms, expected.size]
    return [expected or b"", payload, ttl_ms]


def _failed_read(owner: Owner, exc: Exception, names: Sequence[str]) -> RemoteError:
    """Return the RemoteError a failed read of ``names`` raises; a timeout makes them suspects."""
    if isinstance(exc, redis.TimeoutError):
        owner.suspect(names)
    return _translate(exc)


def _names_of(key: str, generation_key: str | None) -> list[str]:
    """Return what ``read()`` reads: ``key``, after ``generation_key`` if given."""
    return [key] if generation_key is None else [generation_key, key]


def _pair(found: list[bytes | None], generation_key: str | None) -> tuple[bytes | None, bytes | None]:
    """Return ``(generation, payload)`` from what ``_names_of`` named."""
    return (None, found[0]) if generation_key is None else (found[0], found[1])


def _noted(guard: Guard, found: list[bytes | None]) -> list[bytes | None]:
    """Return ``found``; arm ``guard`` again if a string past the bound is among it."""
    if any(isinstance(value, Oversized) for value in found):
        guard.arm()
    return found


def _any_oversized(replies: Sequence[Any]) -> bool:
    """Whether a reply of a pipeline was a string past the bound (see replies)."""
    return any(isinstance(reply, OversizedReply) for reply in replies)


def _queue_claims(pipeline: Any, keys: Sequence[str], token: bytes, ttl_ms: int, *, guarded: bool) -> None:
    """Queue, per key, SET NX of ``token`` then GET: each key's two commands stay in order.

    ``guarded``: READ_BOUNDED instead of GET (see oversized.Guard).
    """
    for key in keys:
        pipeline.set(key, token, px=ttl_ms, nx=True)
        if guarded:
            queue_bounded_reads(pipeline, (key,))
        else:
            pipeline.get(key)


def _guarded(guard: Guard) -> bool:
    """Whether ``guard`` is on (its clock is read only while it is set)."""
    return bool(guard.until) and guard.active()


def _claimed(replies: Sequence[Any], *, guarded: bool) -> list[bytes | None]:
    """Return what each claimed key holds, from ``_queue_claims``'s replies.

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


def _to_redo(
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
            again = _redo_token(reply)
            if again is not None:
                redo.append((index, again))
    return redo


def _redo_token(error: redis.ResponseError) -> bytes | None:
    """Return the token to send a refused SET NX GET again with, through the script (None: give up).

    WRONGTYPE: a key of another type, which MGET reads as nothing, is planted, not ours; it is
    overwritten as any bytes not ours are. A syntax error: a Redis older than 7.0.
    """
    if "WRONGTYPE" in str(error):
        return FOREIGN_TOKEN
    if "syntax" in str(error).lower():
        return ABSENT
    return None


def _conditional_replies(
    items: Sequence[tuple[str, bytes, int, bytes]], replies: Sequence[Any]
) -> list[bool]:
    """Return, per queued write, whether Redis took it (a refused command took nothing)."""
    return [outcome is True for outcome in _conditional_outcomes(items, replies)]


def _conditional_outcomes(
    items: Sequence[tuple[str, bytes, int, bytes]], replies: Sequence[Any]
) -> list[bool | RemoteError]:
    """Return, per queued write, whether Redis took it, or the error it answered instead."""
    outcomes: list[bool | RemoteError] = []
    for (_, _, _, token), reply in zip(items, replies, strict=True):
        if isinstance(reply, Exception):
            outcomes.append(_translate(reply))
        elif token == ABSENT and not isinstance(reply, int):  # SET NX GET: what it found there
            outcomes.append(reply is None or fresh_since_absent(reply))
        else:
            outcomes.append(bool(reply))
    return outcomes


class SyncStore:
    """The L2 calls the tiers make, for sync callers."""

    def __init__(self, client: Any, endpoint: Owner) -> None:
        self.client = client
        self.endpoint = endpoint
        # The breaker openings this store's pool has caught up with (see Endpoint.openings).
        self.openings_seen = endpoint.openings
        self.guard = endpoint.guard  # (read on every read: one attribute away)
        self._release = client.register_script(RELEASE_LOCK)
        self._write_if_unchanged = client.register_script(WRITE_IF_UNCHANGED)
        self._swap_if_equal = client.register_script(SWAP_IF_EQUAL)
        self._nx_get = True  # until a Redis older than 7.0 says otherwise
        self._raise_generation = client.register_script(RAISE_GENERATION)
        # A cluster's MGET must keep to one slot; its non-atomic twin groups keys by slot and
        # sends one MGET per node, pipelined. (Our reads never needed atomicity.) On one server,
        # every L2 hit's reads, a miss's write, a set's and an invalidation's pipeline go out on
        # the pool's connections directly (see wire).
        ways = ways_for(client, cluster=endpoint.cluster)
        self._send, self._pipeline, self._set_nx_get = ways.send, ways.pipeline, ways.set_nx_get
        self._mget = client.mget_nonatomic if endpoint.cluster else self._mget_one_server

    def _mget_one_server(self, names: Sequence[str]) -> Any:
        return self._send("MGET", *names)

    def _publish(self, announce: tuple[str, bytes], near: str) -> Any:
        """Publish ``announce``; on a cluster through the primary of ``near``, the key just written.

        (A cluster passes it on to every node; the node redis-py would pick may be one that is down.)
        """
        if self.endpoint.cluster:
            node = self.client.get_node_from_key(near)
            return self.client.execute_command("PUBLISH", *announce, target_nodes=node)
        return self.client.execute_command("PUBLISH", *announce)

    def close_connections(self) -> None:
        """Close the idle connections now; the store stays usable (it connects again when used).

        Connections in use belong to calls in flight: they finish, and the connection goes back
        to the pool, where the next close finds it.
        """
        if getattr(self.client, "connection_pool", None) is not None:
            self.drop_idle_connections()  # (the idle ones, as after an outage)
            return
        with contextlib.suppress(Exception):  # (a dead socket may fail to close: it is closed)
            self.client.close()  # a cluster client: it reconnects when used again

    def drop_idle_connections(self) -> None:
        """Drop pooled connections made before the breaker last opened (the endpoint calls this).

        Idle connections only: one in use belongs to another thread's command; if it is dead,
        that command fails and redis-py drops it.
        """
        self.openings_seen = self.endpoint.openings
        pool = getattr(self.client, "connection_pool", None)
        # Closing a dead socket may fail too; that must not fail the operation it precedes.
        with contextlib.suppress(Exception):
            if pool is not None:
                pool.disconnect(inuse_connections=False)

    def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""
        if self.guard.until and self.guard.active():
            return _pair(self.read_bounded(_names_of(key, generation_key)), generation_key)
        # The hot path of every L2 hit: try/except costs nothing here, a context manager would.
        try:
            if generation_key is None:
                payload: Any = self._send("GET", key)  # (a cluster's execute_command routes it by key)
                return None, payload
            both: Any = (
                self._mget([generation_key, key])
                if self.endpoint.cluster
                else self._send("MGET", generation_key, key)
            )
            return both[0], both[1]
        except OversizedReply:
            self.guard.arm()
            return _pair(self.read_bounded(_names_of(key, generation_key)), generation_key)
        except Exception as exc:  # as in _Translated: any client failure is an L2 failure
            raise _failed_read(self.endpoint, exc, _names_of(key, generation_key)) from exc

    def read_bounded(self, names: Sequence[str], other_type: bytes | None = None) -> list[bytes | None]:
        """Read ``names`` by length first (READ_BOUNDED): a string past the bound as ``Oversized``.

        Arm the guard if there is one. ``other_type``: what a key of another type reads as.
        """
        with _TRANSLATED:
            return read_bounded_with(self.client, names, self.guard, other_type)

    def _mget_bounded(self, names: Sequence[str]) -> list[bytes | None]:
        """MGET ``names``; through READ_BOUNDED while guarded, or if one is past the bound."""
        if not names:
            return []
        if _guarded(self.guard):
            return self.read_bounded(names)
        try:
            return cast("list[bytes | None]", self._mget(names))
        except OversizedReply:
            self.guard.arm()
            return self.read_bounded(names)
        except Exception as exc:  # as in _Translated
            raise _failed_read(self.endpoint, exc, names) from exc

    def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return ``(generation, payloads)`` for ``keys`` in one MGET."""
        names = (generation_key, *keys) if generation_key is not None else keys
        found = self._mget_bounded(names)
        return (found[0], found[1:]) if generation_key is not None else (None, found)

    def read_tagged(
        self, key: str, generation_key: str | None, tag_keys: tuple[str, ...]
    ) -> tuple[bytes | None, bytes | None, list[bytes | None]]:
        """Return ``(generation, payload, tokens of tag_keys)`` in one MGET (on a cluster, one per node)."""
        generation, found = self.read_many((key, *tag_keys), generation_key)
        return generation, found[0], found[1:]

    def claim_tokens(self, keys: tuple[str, ...], token: bytes, ttl_ms: int) -> list[bytes | None]:
        """Set each of ``keys`` to ``token`` for ``ttl_ms`` unless it exists; return what each holds.

        SET NX, then GET, in one pipeline (on a cluster, grouped by node; each key's two
        commands stay in order): whoever came first, every claimant learns the same token.
        """
        guarded = _guarded(self.guard)
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            _queue_claims(pipeline, keys, token, ttl_ms, guarded=guarded)
            try:
                replies: list[Any] | None = pipeline.execute(raise_on_error=False)
            except OversizedReply:  # (the claims were made: what each key holds is read again)
                replies = None
            # (A cluster's pipeline answers each command on its own: the error is among the replies.)
            if replies is not None and not _any_oversized(replies):
                return _noted(self.guard, _claimed(replies, guarded=guarded))
        self.guard.arm()
        return self.read_bounded(keys, other_type=b"")

    def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token``.

        Return False if an invalidation came between: the key's token changed. Where the writer
        found nothing, SET NX GET is the whole check (a value written meanwhile by a writer who
        also found nothing is as good as ours, and stays); else a Lua script compares tokens.
        """
        try:  # the hot path of every miss, as read()
            if token == ABSENT and self._nx_get:
                found = self._set_nx_get(key, payload, ttl_ms)
                return found is None or fresh_since_absent(found)
            return bool(self._write_if_unchanged(keys=[key], args=[token, payload, ttl_ms]))
        except redis.ResponseError as exc:
            again = _redo_token(exc) if token == ABSENT and self._nx_get else None
            if again is None:
                raise _translate(exc) from exc
            self._nx_get = again != ABSENT  # Redis < 7.0: NX with GET is 7.0's; the script does it
            return self.write(key, payload, ttl_ms, again)
        except Exception as exc:
            raise _translate(exc) from exc

    def swap(
        self, key: str, expected: bytes | None, payload: bytes, ttl_ms: int, announce: Announce = None
    ) -> bool:
        """Store ``payload`` under ``key`` only if it holds ``expected`` (None: nothing); then announce.

        Return whether it did: False when another writer changed the key since it was read.
        """
        with _TRANSLATED:
            swapped = bool(self._swap_if_equal(keys=[key], args=_swap_args(expected, payload, ttl_ms)))
            if swapped and announce is not None:
                self._publish(announce, key)
            return swapped

    def write_many(
        self,
        items: tuple[tuple[str, bytes, int], ...],
        announce: Announce = None,
        generation_key: str | None = None,
    ) -> tuple[bytes | None, list[str]]:
        """Store ``(key, payload, ttl_ms)`` items in one pipelined round trip (then announce).

        Return the generation read after the writes landed (with ``generation_key``: in the same
        pipeline on one server, one connection keeping the order; after it on a cluster, whose
        pipeline sends each node its share at once), and ``[why]`` if Redis refused to publish
        the announcement (the writes stand). A refused write raises RemoteRejected.
        """
        cluster = self.endpoint.cluster
        with _TRANSLATED:
            pipeline = self._pipeline()
            plan = _queue_write_many(self.endpoint, pipeline, items, announce, generation_key)
            replies = pipeline.execute(raise_on_error=False)
            generation, unheard = _read_write_many(self.endpoint, plan, replies)
            if generation_key is not None and cluster:
                generation = self.client.get(generation_key)
            if announce is not None and cluster:
                _, unheard = _attempt("PUBLISH", (), lambda: self._publish(announce, items[0][0]))
            return cast("bytes | None", generation), unheard

    def write_many_if_unchanged(self, items: tuple[tuple[str, bytes, int, bytes], ...]) -> list[bool]:
        """Do ``write()`` for each ``(key, payload, ttl_ms, token)``, in one pipelined round trip.

        Return whether each was taken. (On a cluster, one pipeline per node, sent together.)
        """
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            for key, payload, ttl_ms, token in items:
                _queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=self._nx_get)
            replies = pipeline.execute(raise_on_error=False)
            redo = _to_redo(items, replies)
            if redo:  # (rare: planted keys, or an old Redis, once)
                self._nx_get = self._nx_get and all(token != ABSENT for _, token in redo)
                pipeline = self.client.pipeline(transaction=False)
                for index, token in redo:
                    key, payload, ttl_ms, _ = items[index]
                    _queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=False)
                for (index, _), reply in zip(redo, pipeline.execute(raise_on_error=False), strict=True):
                    replies[index] = reply
        return _conditional_replies(items, replies)

    def ping(self) -> bool:
        """Return True if the endpoint answers PING."""
        with _TRANSLATED:
            return bool(self.client.ping())

    def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """Leave ``tombstone`` under each of ``keys`` for ``ttl_ms`` (None: delete them), then announce.

        A refused tombstone (a full Redis refuses SET, not DEL) is replaced by a DEL. Raise
        RemoteRejected, after announcing, if Redis refused to drop any key or to publish.
        """
        kept: list[str] = []
        unheard: list[str] = []
        with _TRANSLATED:
            if self.endpoint.cluster:  # (no order between a cluster pipeline's nodes: in steps)
                left, why = self._leave_tombstones(keys, tombstone, ttl_ms) if tombstone else (keys, [])
            else:
                plan = _Invalidation(self.endpoint, keys, tombstone, announce)
                pipeline = plan.queue(self._pipeline(), ttl_ms)
                left, why, kept, unheard = plan.read(pipeline.execute(raise_on_error=False))
            if left:
                _, kept = _attempt("DEL", left, lambda: self.client.delete(*left))
                kept = why + kept if kept else []
            # Announced after the keys are gone: on a cluster always here; on one server only
            # again when a refused tombstone was replaced by a DEL after the first announcement.
            if announce is not None and (self.endpoint.cluster or left):
                _, unheard = _attempt("PUBLISH", (), lambda: self._publish(announce, keys[0]))
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))

    def _leave_tombstones(
        self, keys: Sequence[str], tombstone: bytes, ttl_ms: int
    ) -> tuple[Sequence[str], list[str]]:
        """Return the keys Redis refused a tombstone, and why."""
        if len(keys) == 1 and not self.endpoint.confirm_ms:
            _, why = _attempt(
                "the tombstone's SET", keys, lambda: self.client.set(keys[0], tombstone, px=ttl_ms)
            )
            return (keys if why else ()), why
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, tombstone, px=ttl_ms)
        confirm = _confirmed(self.endpoint, pipeline)
        replies = pipeline.execute(raise_on_error=False)
        if confirm:
            _check_confirmed(self.endpoint, "an invalidation", replies)
        return _refused_in(keys, replies)

    def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``, then announce.

        Return it, and whether Redis held another one.

        Raise RemoteRejected, after announcing, if Redis refused either.
        """
        with _TRANSLATED:
            if self.endpoint.confirm_ms:  # the script and WAIT on one connection: WAIT covers its writes
                pipeline = self.client.pipeline(transaction=False)
                pipeline.eval(RAISE_GENERATION, 1, generation_key, floor, step)
                _confirmed(self.endpoint, pipeline)
                replies = _check_confirmed(self.endpoint, "a clear", pipeline.execute(raise_on_error=False))
                reply, kept = _answered("the generation's SET", replies[0])
            else:
                reply, kept = _attempt(
                    "the generation's SET",
                    (),
                    lambda: self._raise_generation(keys=[generation_key], args=[floor, step]),
                )
            _, unheard = (
                _attempt("PUBLISH", (), lambda: self._publish(announce, generation_key))
                if announce
                else (None, [])
            )
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))
        return _generation_reply(reply)

    def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we do."""
        with _TRANSLATED:
            return bool(self.client.set(key, token, nx=True, px=ttl_ms))

    def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if we still hold it (``token``)."""
        with _TRANSLATED:
            self._release(keys=[key], args=[token])


#: Reads, or conditional writes, that one coalesced command carries at most: a burst of 20,000
#: calls becomes some eighty MGETs (and pipelines), one at a time, each well within the timeout.
COALESCED: Final = 256


class _WriteBatch:
    """Conditional writes that arrived while another was in flight, to be sent as one pipeline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.items: list[tuple[str, bytes, int, bytes]] = []
        self._waiters: list[asyncio.Future[bool]] = []

    def add(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> asyncio.Future[bool]:
        """Return a future for whether Redis takes this write, answered with the batch."""
        future: asyncio.Future[bool] = self._loop.create_future()
        self.items.append((key, payload, ttl_ms, token))
        self._waiters.append(future)
        return future

    def resolve(self, outcomes: Sequence[bool | RemoteError]) -> None:
        for future, outcome in zip(self._waiters, outcomes, strict=True):
            if future.done():  # a waiter may have been cancelled
                continue
            if isinstance(outcome, bool):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

    def fail(self, error: BaseException) -> None:
        for future in self._waiters:
            if not future.done():
                future.set_exception(error)


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


async def _turn(after: asyncio.Future[None] | None) -> None:
    """Wait until the batch sent before has been answered (however it ended)."""
    if after is not None and not after.done():
        await asyncio.wait((after,))


class AsyncStore:
    """The L2 calls the tiers make, for coroutines on one event loop.

    Reads coalesce: one that finds no other read in flight goes out at once (no added latency
    for a lone caller); reads that arrive while one is in flight join a batch, sent as a single
    MGET on the next turn of the loop. A hundred concurrent look-ups cost two round trips and,
    if Redis stalls, one timeout each, not a hundred connections.
    """

    def __init__(self, client: Any, endpoint: Owner) -> None:
        self.client = client
        self.endpoint = endpoint
        # The breaker openings this store's pool has caught up with (see Endpoint.openings).
        self.openings_seen = endpoint.openings
        self.guard = endpoint.guard  # (read on every read: one attribute away)
        self._release = client.register_script(RELEASE_LOCK)
        self._write_if_unchanged = client.register_script(WRITE_IF_UNCHANGED)
        self._swap_if_equal = client.register_script(SWAP_IF_EQUAL)
        self._nx_get = True  # until a Redis older than 7.0 says otherwise
        self._raise_generation = client.register_script(RAISE_GENERATION)
        ways = ways_for(client, cluster=endpoint.cluster)  # as in SyncStore
        self._execute: Callable[..., Awaitable[Any]] = ways.send
        self._pipeline, self._set_nx_get = ways.pipeline, ways.set_nx_get
        self._mget = client.mget_nonatomic if endpoint.cluster else self._mget_one_server
        self._closer: AsyncGenerator[None, None] | None = None
        self._in_flight = 0
        self._batch: _ReadBatch | None = None
        self._writing = 0
        self._write_batch: _WriteBatch | None = None
        self._senders: set[asyncio.Future[Any]] = set()
        # The last batch of each kind started: the next one waits for it (see _send).
        self._reads_sent: asyncio.Future[None] | None = None
        self._writes_sent: asyncio.Future[None] | None = None

    def _publish(self, announce: tuple[str, bytes], near: str) -> Awaitable[Any]:
        """See ``SyncStore._publish``."""
        if self.endpoint.cluster:
            node = self.client.get_node_from_key(near)
            return cast(
                "Awaitable[Any]", self.client.execute_command("PUBLISH", *announce, target_nodes=node)
            )
        return cast("Awaitable[Any]", self.client.execute_command("PUBLISH", *announce))

    def _mget_one_server(self, names: Sequence[str]) -> Awaitable[Any]:
        return self._execute("MGET", *names)

    async def drop_idle_connections(self) -> None:
        """Drop pooled connections made before the breaker last opened (see SyncStore's)."""
        self.openings_seen = self.endpoint.openings
        pool = getattr(self.client, "connection_pool", None)
        with contextlib.suppress(Exception):  # as in SyncStore's
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

    async def close_connections(self) -> None:
        """Close the idle connections now (see SyncStore's); the loop's end closes the rest."""
        if getattr(self.client, "connection_pool", None) is not None:
            await self.drop_idle_connections()
            return
        with contextlib.suppress(Exception):  # (a dead socket may fail to close: it is closed)
            await self.client.aclose()  # a cluster client: it reconnects when used again

    def _start(self, sending: Awaitable[None]) -> asyncio.Future[None]:
        # Sent on the next turn of the loop, when every read (or write) made ready now has joined.
        sender = asyncio.ensure_future(sending)
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)
        return sender

    async def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""
        if self._in_flight:
            batch = self._batch
            if batch is None or len(batch.names) >= COALESCED:
                batch = self._batch = _ReadBatch(asyncio.get_running_loop())
                self._reads_sent = self._start(self._send(batch, after=self._reads_sent))
            result: tuple[bytes | None, bytes | None] = await batch.add(key, generation_key)
            return result
        self._in_flight += 1
        try:
            if self.guard.until and self.guard.active():
                return _pair(await self.read_bounded(_names_of(key, generation_key)), generation_key)
            if generation_key is None:
                payload: Any = await self._execute("GET", key)  # (on a cluster, routed by key)
                return None, payload
            both: Any = await self._mget([generation_key, key])
            return both[0], both[1]
        except OversizedReply:
            self.guard.arm()
            return _pair(await self.read_bounded(_names_of(key, generation_key)), generation_key)
        except Exception as exc:  # as in _Translated: any client failure is an L2 failure
            raise _failed_read(self.endpoint, exc, _names_of(key, generation_key)) from exc
        finally:
            self._in_flight -= 1

    async def read_bounded(self, names: Sequence[str], other_type: bytes | None = None) -> list[bytes | None]:
        """See ``SyncStore.read_bounded``."""
        with _TRANSLATED:
            replies = await _bounded(self.client, names).execute(raise_on_error=False)
            return _noted(self.guard, from_bounded_reads(replies, other_type))

    async def _mget_bounded(self, names: Sequence[str]) -> list[bytes | None]:
        """See ``SyncStore._mget_bounded``."""
        if not names:
            return []
        if _guarded(self.guard):
            return await self.read_bounded(names)
        try:
            return cast("list[bytes | None]", await self._mget(names))
        except OversizedReply:
            self.guard.arm()
            return await self.read_bounded(names)
        except Exception as exc:  # as in _Translated
            raise _failed_read(self.endpoint, exc, names) from exc

    async def _send(self, batch: _ReadBatch, after: asyncio.Future[None] | None) -> None:
        self._in_flight += 1
        try:
            # One batch at a time (joiners keep coming until this one's turn): a burst queues here,
            # bounded by its callers, instead of holding every connection of the pool at once.
            await _turn(after)
            if self._batch is batch:
                self._batch = None  # reads from now on start the next batch
            values = await self._mget_bounded(batch.names)
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
        names = (generation_key, *keys) if generation_key is not None else keys
        found = await self._mget_bounded(names)
        return (found[0], found[1:]) if generation_key is not None else (None, found)

    async def read_tagged(
        self, key: str, generation_key: str | None, tag_keys: tuple[str, ...]
    ) -> tuple[bytes | None, bytes | None, list[bytes | None]]:
        """See ``SyncStore.read_tagged``."""
        generation, found = await self.read_many((key, *tag_keys), generation_key)
        return generation, found[0], found[1:]

    async def claim_tokens(self, keys: tuple[str, ...], token: bytes, ttl_ms: int) -> list[bytes | None]:
        """See ``SyncStore.claim_tokens``."""
        guarded = _guarded(self.guard)
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            _queue_claims(pipeline, keys, token, ttl_ms, guarded=guarded)
            try:
                replies: list[Any] | None = await pipeline.execute(raise_on_error=False)
            except OversizedReply:  # as in SyncStore's
                replies = None
            if replies is not None and not _any_oversized(replies):
                return _noted(self.guard, _claimed(replies, guarded=guarded))
        self.guard.arm()
        return await self.read_bounded(keys, other_type=b"")

    async def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token`` (see SyncStore).

        Writes coalesce as reads do: one made while another is in flight joins a pipeline sent
        on the next turn of the loop, so a burst of misses costs a few round trips and never
        waits out the pool (which skipped most of a burst's writes, and opened the breaker).
        """
        if self._writing:
            batch = self._write_batch
            if batch is None or len(batch.items) >= COALESCED:
                batch = self._write_batch = _WriteBatch(asyncio.get_running_loop())
                self._writes_sent = self._start(self._send_writes(batch, after=self._writes_sent))
            return await batch.add(key, payload, ttl_ms, token)
        self._writing += 1
        try:
            return await self._write_one(key, payload, ttl_ms, token)
        finally:
            self._writing -= 1

    async def _write_one(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        try:  # the hot path of every miss, as read()
            if token == ABSENT and self._nx_get:
                found = await self._set_nx_get(key, payload, ttl_ms)
                return found is None or fresh_since_absent(found)
            return bool(await self._write_if_unchanged(keys=[key], args=[token, payload, ttl_ms]))
        except redis.ResponseError as exc:
            again = _redo_token(exc) if token == ABSENT and self._nx_get else None
            if again is None:
                raise _translate(exc) from exc
            self._nx_get = again != ABSENT  # as in SyncStore.write()
            return await self._write_one(key, payload, ttl_ms, again)
        except Exception as exc:
            raise _translate(exc) from exc

    async def _send_writes(self, batch: _WriteBatch, after: asyncio.Future[None] | None) -> None:
        self._writing += 1
        try:
            await _turn(after)  # (one batch at a time, as reads)
            if self._write_batch is batch:
                self._write_batch = None  # writes from now on start the next batch
            outcomes = await self._conditional_writes(tuple(batch.items))
        except RemoteError as exc:
            batch.fail(exc)
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            batch.fail(RemoteUnavailable("the write was cancelled"))
            raise
        else:
            batch.resolve(outcomes)
        finally:
            self._writing -= 1

    async def swap(
        self, key: str, expected: bytes | None, payload: bytes, ttl_ms: int, announce: Announce = None
    ) -> bool:
        """See ``SyncStore.swap``."""
        with _TRANSLATED:
            swapped = bool(await self._swap_if_equal(keys=[key], args=_swap_args(expected, payload, ttl_ms)))
            if swapped and announce is not None:
                await self._publish(announce, key)
            return swapped

    async def write_many(
        self,
        items: tuple[tuple[str, bytes, int], ...],
        announce: Announce = None,
        generation_key: str | None = None,
    ) -> tuple[bytes | None, list[str]]:
        """See ``SyncStore.write_many``."""
        cluster = self.endpoint.cluster
        with _TRANSLATED:
            pipeline = self._pipeline()
            plan = _queue_write_many(self.endpoint, pipeline, items, announce, generation_key)
            replies = await pipeline.execute(raise_on_error=False)
            generation, unheard = _read_write_many(self.endpoint, plan, replies)
            if generation_key is not None and cluster:
                generation = await self.client.get(generation_key)
            if announce is not None and cluster:
                _, unheard = await _aattempt("PUBLISH", (), lambda: self._publish(announce, items[0][0]))
            return cast("bytes | None", generation), unheard

    async def write_many_if_unchanged(self, items: tuple[tuple[str, bytes, int, bytes], ...]) -> list[bool]:
        """Do ``write()`` for each ``(key, payload, ttl_ms, token)``, in one round trip (see SyncStore)."""
        return [outcome is True for outcome in await self._conditional_writes(items)]

    async def _conditional_writes(
        self, items: tuple[tuple[str, bytes, int, bytes], ...]
    ) -> list[bool | RemoteError]:
        with _TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            for key, payload, ttl_ms, token in items:
                _queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=self._nx_get)
            replies = await pipeline.execute(raise_on_error=False)
            redo = _to_redo(items, replies)
            if redo:  # (as in SyncStore)
                self._nx_get = self._nx_get and all(token != ABSENT for _, token in redo)
                pipeline = self.client.pipeline(transaction=False)
                for index, token in redo:
                    key, payload, ttl_ms, _ = items[index]
                    _queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=False)
                for (index, _), reply in zip(redo, await pipeline.execute(raise_on_error=False), strict=True):
                    replies[index] = reply
        return _conditional_outcomes(items, replies)

    async def ping(self) -> bool:
        """Return True if the endpoint answers PING."""
        with _TRANSLATED:
            return bool(await self.client.ping())

    async def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """Leave ``tombstone`` under each of ``keys`` for ``ttl_ms`` (None: delete them), then announce.

        A refused tombstone (a full Redis refuses SET, not DEL) is replaced by a DEL. Raise
        RemoteRejected, after announcing, if Redis refused to drop any key or to publish.
        """
        kept: list[str] = []
        unheard: list[str] = []
        with _TRANSLATED:
            if self.endpoint.cluster:  # (as in SyncStore)
                left, why = await self._leave_tombstones(keys, tombstone, ttl_ms) if tombstone else (keys, [])
            else:
                plan = _Invalidation(self.endpoint, keys, tombstone, announce)
                pipeline = plan.queue(self._pipeline(), ttl_ms)
                left, why, kept, unheard = plan.read(await pipeline.execute(raise_on_error=False))
            if left:
                _, kept = await _aattempt("DEL", left, lambda: self.client.delete(*left))
                kept = why + kept if kept else []
            if announce is not None and (self.endpoint.cluster or left):  # (as in SyncStore)
                _, unheard = await _aattempt("PUBLISH", (), lambda: self._publish(announce, keys[0]))
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))

    async def _leave_tombstones(
        self, keys: Sequence[str], tombstone: bytes, ttl_ms: int
    ) -> tuple[Sequence[str], list[str]]:
        """Return the keys Redis refused a tombstone, and why."""
        if len(keys) == 1 and not self.endpoint.confirm_ms:
            _, why = await _aattempt(
                "the tombstone's SET", keys, lambda: self.client.set(keys[0], tombstone, px=ttl_ms)
            )
            return (keys if why else ()), why
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, tombstone, px=ttl_ms)
        confirm = _confirmed(self.endpoint, pipeline)
        replies = await pipeline.execute(raise_on_error=False)
        if confirm:
            _check_confirmed(self.endpoint, "an invalidation", replies)
        return _refused_in(keys, replies)

    async def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``, then announce.

        Return it, and whether Redis held another one.

        Raise RemoteRejected, after announcing, if Redis refused either.
        """
        with _TRANSLATED:
            if self.endpoint.confirm_ms:  # as in SyncStore.raise_generation()
                pipeline = self.client.pipeline(transaction=False)
                pipeline.eval(RAISE_GENERATION, 1, generation_key, floor, step)
                _confirmed(self.endpoint, pipeline)
                replies = _check_confirmed(
                    self.endpoint, "a clear", await pipeline.execute(raise_on_error=False)
                )
                reply, kept = _answered("the generation's SET", replies[0])
            else:
                reply, kept = await _aattempt(
                    "the generation's SET",
                    (),
                    lambda: self._raise_generation(keys=[generation_key], args=[floor, step]),
                )
            _, unheard = (
                await _aattempt("PUBLISH", (), lambda: self._publish(announce, generation_key))
                if announce
                else (None, [])
            )
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))
        return _generation_reply(reply)

    async def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we do."""
        with _TRANSLATED:
            return bool(await self.client.set(key, token, nx=True, px=ttl_ms))

    async def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if we still hold it (``token``)."""
        with _TRANSLATED:
            await self._release(keys=[key], args=[token])
