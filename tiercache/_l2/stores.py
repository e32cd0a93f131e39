"""The two stores the endpoint makes: the only redis-py calls of the tiers.

``SyncStore`` is generated from ``AsyncCommands`` (see ``async_commands``); ``AsyncStore`` is
``AsyncCommands`` with its reads and writes coalesced per turn of the event loop. Anything the
client raises leaves a store as a ``RemoteError`` (see ``errors``). Announcements go out as
``execute_command("PUBLISH", ...)``: redis-py's asyncio RedisCluster has no ``publish()`` before 8.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import Any, Final

from tiercache._l2.async_commands import AsyncCommands
from tiercache._l2.errors import RemoteError, RemoteUnavailable
from tiercache._l2.store_parts import Owner, missing_permissions, read_bounded_with
from tiercache._l2.sync_store import SyncStore

__all__ = ["AsyncStore", "Owner", "Stores", "SyncStore", "missing_permissions", "read_bounded_with"]


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


class AsyncStore(AsyncCommands):
    """The L2 calls the tiers make, for coroutines on one event loop.

    Reads coalesce: one that finds no other read in flight goes out at once (no added latency
    for a lone caller); reads that arrive while one is in flight join a batch, sent as a single
    MGET on the next turn of the loop. A hundred concurrent look-ups cost two round trips and,
    if Redis stalls, one timeout each, not a hundred connections. Writes coalesce the same way.
    """

    def __init__(self, client: Any, endpoint: Owner) -> None:
        super().__init__(client, endpoint)
        self._closer: AsyncGenerator[None, None] | None = None
        self._in_flight = 0
        self._batch: _ReadBatch | None = None
        self._writing = 0
        self._write_batch: _WriteBatch | None = None
        self._senders: set[asyncio.Future[Any]] = set()
        # The last batch of each kind started: the next one waits for it (see _send).
        self._reads_sent: asyncio.Future[None] | None = None
        self._writes_sent: asyncio.Future[None] | None = None

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

    def _start(self, sending: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
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
                self._reads_sent = self._start(self._send_reads(batch, after=self._reads_sent))
            result: tuple[bytes | None, bytes | None] = await batch.add(key, generation_key)
            return result
        self._in_flight += 1
        try:
            return await self.read_one(key, generation_key)
        finally:
            self._in_flight -= 1

    async def _send_reads(self, batch: _ReadBatch, after: asyncio.Future[None] | None) -> None:
        self._in_flight += 1
        try:
            # One batch at a time (joiners keep coming until this one's turn): a burst queues here,
            # bounded by its callers, instead of holding every connection of the pool at once.
            await _turn(after)
            if self._batch is batch:
                self._batch = None  # reads from now on start the next batch
            values = await self.read_many_bounded(batch.names)
        except RemoteError as exc:
            batch.fail(exc)
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            batch.fail(RemoteUnavailable("the read was cancelled"))
            raise
        else:
            batch.resolve(values)
        finally:
            self._in_flight -= 1

    async def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` under ``key`` for ``ttl_ms`` if its token is still ``token`` (see write_one).

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
            return await self.write_one(key, payload, ttl_ms, token)
        finally:
            self._writing -= 1

    async def _send_writes(self, batch: _WriteBatch, after: asyncio.Future[None] | None) -> None:
        self._writing += 1
        try:
            await _turn(after)  # (one batch at a time, as reads)
            if self._write_batch is batch:
                self._write_batch = None  # writes from now on start the next batch
            outcomes = await self.conditional_writes(tuple(batch.items))
        except RemoteError as exc:
            batch.fail(exc)
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            batch.fail(RemoteUnavailable("the write was cancelled"))
            raise
        else:
            batch.resolve(outcomes)
        finally:
            self._writing -= 1


class Stores:
    """An endpoint's stores: one for threads, one per event loop (or one shared by every loop).

    The sync store's client is thread-safe and pooled. An asyncio connection belongs to the loop
    that opened it and is never used from another; ``per_loop`` False: the application's own
    async client, which it keeps to one loop. Made when first asked for, by ``owner``.
    """

    def __init__(self, make: Callable[[], Any], amake: Callable[[], Any], *, per_loop: bool) -> None:
        self._make = make
        self._amake = amake
        self._per_loop = per_loop
        self._lock = threading.Lock()
        #: The store for threads, once one asked for it.
        self.sync_store: SyncStore | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncStore] = (
            weakref.WeakKeyDictionary()
        )
        self._shared: AsyncStore | None = None
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_store: AsyncStore | None = None

    def sync(self, owner: Owner) -> SyncStore:
        """Return the store for threads."""
        store = self.sync_store
        if store is None:
            with self._lock:
                if self.sync_store is None:
                    self.sync_store = SyncStore(self._make(), owner)
                store = self.sync_store
        return store

    def running(self, owner: Owner) -> AsyncStore:
        """Return the store for coroutines on the running event loop."""
        if not self._per_loop:
            if self._shared is None:
                self._shared = AsyncStore(self._amake(), owner)
            return self._shared
        loop = asyncio.get_running_loop()
        if loop is self._last_loop and self._last_store is not None:
            return self._last_store  # the common case, without a weakref lookup
        store = self._async.get(loop)
        if store is None:
            store = self._async[loop] = AsyncStore(self._amake(), owner)
            store.close_with_loop(lambda: self._forget(loop, store))
        self._last_loop, self._last_store = loop, store
        return store

    def made_for_running_loop(self) -> AsyncStore | None:
        """Return the running loop's store if it has its own, else None (nothing of ours to close)."""
        return self._async.get(asyncio.get_running_loop()) if self._per_loop else None

    def _forget(self, loop: asyncio.AbstractEventLoop, store: AsyncStore) -> None:
        # Only that store: the loop may have a newer one by the time an old one closes.
        if self._async.get(loop) is store:
            del self._async[loop]
        if self._last_store is store:
            self._last_loop, self._last_store = None, None
