"""The L2 commands the tiers send, for sync callers: GENERATED, do not edit.

Made from ``async_commands.py`` by ``scripts/unasync.py`` (``nox -s unasync``); edit that file,
then run it. The test suite fails while the two differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, cast

import redis

from tiercache._l2 import store_parts as parts
from tiercache._l2.coherence import Announce
from tiercache._l2.envelope import ABSENT, fresh_since_absent
from tiercache._l2.errors import RemoteError, RemoteRejected
from tiercache._l2.replies import OversizedReply, from_bounded_reads
from tiercache._l2.scripts import RAISE_GENERATION, RELEASE_LOCK, SWAP_IF_EQUAL, WRITE_IF_UNCHANGED
from tiercache._l2.store_parts import Owner
from tiercache._l2.wire import ways_for

__all__ = ["SyncStore"]


class SyncStore:
    """The L2 calls the tiers make, one per ``Kind`` of ``_core/ops.py``, sent as they come."""

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
        to the pool, where the next close finds it (an async store's, or the end of its event
        loop: see ``AsyncStore.close_with_loop``).
        """
        if getattr(self.client, "connection_pool", None) is not None:
            self.drop_idle_connections()  # (the idle ones, as after an outage)
            return
        with contextlib.suppress(Exception):  # (a dead socket may fail to close: it is closed)
            self.client.close()  # a cluster client: it reconnects when used again

    def drop_idle_connections(self) -> None:
        """Drop pooled connections made before the breaker last opened (the endpoint calls this).

        Idle connections only: one in use belongs to another caller's command; if it is dead,
        that command fails and redis-py drops it.
        """
        self.openings_seen = self.endpoint.openings
        pool = getattr(self.client, "connection_pool", None)
        # Closing a dead socket may fail too; that must not fail the operation it precedes.
        with contextlib.suppress(Exception):
            if pool is not None:
                pool.disconnect(inuse_connections=False)

    def read_one(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""
        if self.guard.until and self.guard.active():
            return parts.pair(self.read_bounded(parts.names_of(key, generation_key)), generation_key)
        # The hot path of every L2 hit: try/except costs nothing here, a context manager would.
        try:
            if generation_key is None:
                payload: Any = self._send("GET", key)  # (on a cluster, routed by key)
                return None, payload
            both: Any = (
                self._mget([generation_key, key])
                if self.endpoint.cluster
                else self._send("MGET", generation_key, key)
            )
            return both[0], both[1]
        except OversizedReply:
            self.guard.arm()
            return parts.pair(self.read_bounded(parts.names_of(key, generation_key)), generation_key)
        except Exception as exc:  # as in TRANSLATED: any client failure is an L2 failure
            raise parts.failed_read(self.endpoint, exc, parts.names_of(key, generation_key)) from exc

    #: (AsyncStore coalesces its reads around ``read_one``; the sync store sends each at once.)
    read = read_one

    def read_bounded(self, names: Sequence[str], other_type: bytes | None = None) -> list[bytes | None]:
        """Read ``names`` by length first (READ_BOUNDED): a string past the bound as ``Oversized``.

        Arm the guard if there is one. ``other_type``: what a key of another type reads as.
        """
        with parts.TRANSLATED:
            replies = parts.bounded(self.client, names).execute(raise_on_error=False)
            return parts.noted(self.guard, from_bounded_reads(replies, other_type))

    def read_many_bounded(self, names: Sequence[str]) -> list[bytes | None]:
        """MGET ``names``; through READ_BOUNDED while guarded, or if one is past the bound."""
        if not names:
            return []
        if parts.guard_on(self.guard):
            return self.read_bounded(names)
        try:
            return cast("list[bytes | None]", self._mget(names))
        except OversizedReply:
            self.guard.arm()
            return self.read_bounded(names)
        except Exception as exc:  # as in TRANSLATED
            raise parts.failed_read(self.endpoint, exc, names) from exc

    def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return ``(generation, payloads)`` for ``keys`` in one MGET."""
        names = (generation_key, *keys) if generation_key is not None else keys
        found = self.read_many_bounded(names)
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
        guarded = parts.guard_on(self.guard)
        with parts.TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            parts.queue_claims(pipeline, keys, token, ttl_ms, guarded=guarded)
            try:
                replies: list[Any] | None = pipeline.execute(raise_on_error=False)
            except OversizedReply:  # (the claims were made: what each key holds is read again)
                replies = None
            # (A cluster's pipeline answers each command on its own: the error is among the replies.)
            if replies is not None and not parts.any_oversized(replies):
                return parts.noted(self.guard, parts.claimed(replies, guarded=guarded))
        self.guard.arm()
        return self.read_bounded(keys, other_type=b"")

    def write_one(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token``.

        Return False if an invalidation came between: the key's token changed. Where the writer
        found nothing, SET NX GET is the whole check (a value written meanwhile by a writer who
        also found nothing is as good as ours, and stays); else a Lua script compares tokens.
        """
        try:  # the hot path of every miss, as read_one()
            if token == ABSENT and self._nx_get:
                found = self._set_nx_get(key, payload, ttl_ms)
                return found is None or fresh_since_absent(found)
            return bool(self._write_if_unchanged(keys=[key], args=[token, payload, ttl_ms]))
        except redis.ResponseError as exc:
            again = parts.redo_token(exc) if token == ABSENT and self._nx_get else None
            if again is None:
                raise parts.translate(exc) from exc
            self._nx_get = again != ABSENT  # Redis < 7.0: NX with GET is 7.0's; the script does it
            return self.write_one(key, payload, ttl_ms, again)
        except Exception as exc:
            raise parts.translate(exc) from exc

    #: (AsyncStore coalesces its writes around ``write_one``; the sync store sends each at once.)
    write = write_one

    def swap(
        self, key: str, expected: bytes | None, payload: bytes, ttl_ms: int, announce: Announce = None
    ) -> bool:
        """Store ``payload`` under ``key`` only if it holds ``expected`` (None: nothing); then announce.

        Return whether it did: False when another writer changed the key since it was read.
        """
        with parts.TRANSLATED:
            args = parts.swap_args(expected, payload, ttl_ms)
            swapped = bool(self._swap_if_equal(keys=[key], args=args))
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
        with parts.TRANSLATED:
            pipeline = self._pipeline()
            plan = parts.queue_write_many(self.endpoint, pipeline, items, announce, generation_key)
            replies = pipeline.execute(raise_on_error=False)
            generation, unheard = parts.read_write_many(self.endpoint, plan, replies)
            if generation_key is not None and cluster:
                generation = self.client.get(generation_key)
            if announce is not None and cluster:
                _, unheard = parts.attempt("PUBLISH", (), lambda: self._publish(announce, items[0][0]))
            return cast("bytes | None", generation), unheard

    def write_many_if_unchanged(self, items: tuple[tuple[str, bytes, int, bytes], ...]) -> list[bool]:
        """Do ``write()`` for each ``(key, payload, ttl_ms, token)``, in one pipelined round trip.

        Return whether each was taken. (On a cluster, one pipeline per node, sent together.)
        """
        return [outcome is True for outcome in self.conditional_writes(items)]

    def conditional_writes(
        self, items: tuple[tuple[str, bytes, int, bytes], ...]
    ) -> list[bool | RemoteError]:
        """Return, per ``write_many_if_unchanged`` item, whether Redis took it, or why not."""
        with parts.TRANSLATED:
            pipeline = self.client.pipeline(transaction=False)
            for key, payload, ttl_ms, token in items:
                parts.queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=self._nx_get)
            replies = pipeline.execute(raise_on_error=False)
            redo = parts.to_redo(items, replies)
            if redo:  # (rare: planted keys, or an old Redis, once)
                self._nx_get = self._nx_get and all(token != ABSENT for _, token in redo)
                pipeline = self.client.pipeline(transaction=False)
                for index, token in redo:
                    key, payload, ttl_ms, _ = items[index]
                    parts.queue_conditional_write(pipeline, key, payload, ttl_ms, token, nx_get=False)
                for (index, _), reply in zip(redo, pipeline.execute(raise_on_error=False), strict=True):
                    replies[index] = reply
        return parts.conditional_outcomes(items, replies)

    def ping(self) -> bool:
        """Return True if the endpoint answers PING."""
        with parts.TRANSLATED:
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
        with parts.TRANSLATED:
            if self.endpoint.cluster:  # (no order between a cluster pipeline's nodes: in steps)
                left, why = self._leave_tombstones(keys, tombstone, ttl_ms) if tombstone else (keys, [])
            else:
                plan = parts.Invalidation(self.endpoint, keys, tombstone, announce)
                pipeline = plan.queue(self._pipeline(), ttl_ms)
                left, why, kept, unheard = plan.read(pipeline.execute(raise_on_error=False))
            if left:
                _, kept = parts.attempt("DEL", left, lambda: self.client.delete(*left))
                kept = why + kept if kept else []
            # Announced after the keys are gone: on a cluster always here; on one server only
            # again when a refused tombstone was replaced by a DEL after the first announcement.
            if announce is not None and (self.endpoint.cluster or left):
                _, unheard = parts.attempt("PUBLISH", (), lambda: self._publish(announce, keys[0]))
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))

    def _leave_tombstones(
        self, keys: Sequence[str], tombstone: bytes, ttl_ms: int
    ) -> tuple[Sequence[str], list[str]]:
        """Return the keys Redis refused a tombstone, and why."""
        if len(keys) == 1 and not self.endpoint.confirm_ms:
            _, why = parts.attempt(
                "the tombstone's SET", keys, lambda: self.client.set(keys[0], tombstone, px=ttl_ms)
            )
            return (keys if why else ()), why
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, tombstone, px=ttl_ms)
        confirm = parts.confirmed(self.endpoint, pipeline)
        replies = pipeline.execute(raise_on_error=False)
        if confirm:
            parts.check_confirmed(self.endpoint, "an invalidation", replies)
        return parts.refused_in(keys, replies)

    def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``, then announce.

        Return it, and whether Redis held another one.

        Raise RemoteRejected, after announcing, if Redis refused either.
        """
        with parts.TRANSLATED:
            if self.endpoint.confirm_ms:  # the script and WAIT on one connection: WAIT covers its writes
                pipeline = self.client.pipeline(transaction=False)
                pipeline.eval(RAISE_GENERATION, 1, generation_key, floor, step)
                parts.confirmed(self.endpoint, pipeline)
                replies = pipeline.execute(raise_on_error=False)
                replies = parts.check_confirmed(self.endpoint, "a clear", replies)
                reply, kept = parts.answered("the generation's SET", replies[0])
            else:
                reply, kept = parts.attempt(
                    "the generation's SET",
                    (),
                    lambda: self._raise_generation(keys=[generation_key], args=[floor, step]),
                )
            _, unheard = (
                parts.attempt("PUBLISH", (), lambda: self._publish(announce, generation_key))
                if announce
                else (None, [])
            )
        if kept or unheard:
            raise RemoteRejected("; ".join(kept + unheard), kept_in_redis=bool(kept))
        return parts.generation_reply(reply)

    def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we do."""
        with parts.TRANSLATED:
            return bool(self.client.set(key, token, nx=True, px=ttl_ms))

    def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if we still hold it (``token``)."""
        with parts.TRANSLATED:
            self._release(keys=[key], args=[token])
