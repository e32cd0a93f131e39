"""The two tiers as the flows see them: a handful of calls each, nothing of their insides.

``_l1.lru.LocalCache`` is the one L1 (the flows reach it as ``tiers.l1``); ``_l2.stores`` has
the two stores, one per kind of caller, with the same method names (the async one's return
awaitables). An op performs itself on either (see ``ops``); mypy holds the stores to these.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

from tiercache._core.flights import Flights
from tiercache._l1.lru import Entry
from tiercache._l2.coherence import Announce

__all__ = ["Arguments", "AsyncStore", "FlightHolder", "LocalTier", "Store"]


class FlightHolder(Protocol):
    """What the shells ask of a cache to run its single flights (a ``Join``)."""

    @property
    def label(self) -> str:
        """The cache's name, for a call that would wait on itself."""

    @property
    def thread_flights(self) -> Flights[threading.Event]:
        """The flights of sync callers (threads)."""

    def loop_flights(self) -> Flights[asyncio.Event]:
        """Return the flights of the running event loop's callers."""


class Arguments(Protocol):
    """A call's arguments, as a ``Compute`` runs the function with them."""

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments."""

    @property
    def kwargs(self) -> dict[str, Any] | None:
        """The keyword arguments (None: none)."""


class LocalTier(Protocol):
    """What the flows ask of L1."""

    def lease(self) -> int:
        """Return a lease for a ``set`` after a slow read: void once the key is dropped meanwhile."""

    def lookup(self, key: Hashable) -> tuple[Any, Entry | None]:
        """Return ``(value, None)`` for a live entry, else ``(MISSING, the entry if within grace)``."""

    def get(self, key: Hashable) -> Any:
        """Return the live value under ``key``, or MISSING."""

    def due(self, entry: Entry) -> bool:
        """Whether an entry ``lookup`` reported is due for a refresh (refresh-ahead), not stale."""

    def set(self, key: Hashable, value: Any, ttl: float | None = None, lease: int | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds unless ``lease`` is void; return whether it was."""

    def delete(self, key: Hashable) -> bool:
        """Drop ``key``; return whether it was there."""

    def discard(self, key: Hashable, entry: Entry) -> None:
        """Remove the expired ``entry`` of ``key`` if it is still the one there (voiding no lease)."""


class Store(Protocol):
    """The L2 commands a flow can have performed, for callers that block."""

    def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """Return ``(generation, payload)``; the generation only when ``generation_key`` is given."""

    def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return ``(generation, payloads)`` for ``keys`` in one round trip."""

    def read_tagged(
        self, key: str, generation_key: str | None, tag_keys: tuple[str, ...]
    ) -> tuple[bytes | None, bytes | None, list[bytes | None]]:
        """Return ``(generation, payload, tokens of tag_keys)`` in one round trip."""

    def claim_tokens(self, keys: tuple[str, ...], token: bytes, ttl_ms: int) -> list[bytes | None]:
        """Set each of ``keys`` to ``token`` for ``ttl_ms`` unless it exists; return what each holds."""

    def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """Store ``payload`` if the key's token is still ``token``; return whether it was."""

    def swap(
        self, key: str, expected: bytes | None, payload: bytes, ttl_ms: int, announce: Announce = None
    ) -> bool:
        """Store ``payload`` only if the key holds ``expected`` (None: nothing); return whether it did."""

    def write_many_if_unchanged(self, items: tuple[tuple[str, bytes, int, bytes], ...]) -> list[bool]:
        """Do ``write()`` for each ``(key, payload, ttl_ms, token)`` at once; say which were taken."""

    def write_many(
        self,
        items: tuple[tuple[str, bytes, int], ...],
        announce: Announce = None,
        generation_key: str | None = None,
    ) -> tuple[bytes | None, list[str]]:
        """Store ``(key, payload, ttl_ms)`` items in one round trip (then announce).

        Return the generation as it was once the items had landed (with ``generation_key``), and
        ``[why]`` if Redis refused the announcement (the items stand).
        """

    def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """Leave ``tombstone`` under ``keys`` for ``ttl_ms`` (None: delete them), then announce."""

    def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """Set the generation to max(Redis's, ``floor``) + ``step``; return it and whether it moved."""

    def ping(self) -> bool:
        """Return True if the endpoint answers."""

    def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Take the lock ``key`` for ``ttl_ms`` unless another holder has it; return whether we did."""

    def release_lock(self, key: str, token: bytes) -> None:
        """Release the lock ``key`` if it still holds ``token``."""


class AsyncStore(Protocol):
    """The same commands for coroutines (each awaited; see ``Store``)."""

    async def read(self, key: str, generation_key: str | None) -> tuple[bytes | None, bytes | None]:
        """See ``Store.read``."""

    async def read_many(
        self, keys: tuple[str, ...], generation_key: str | None
    ) -> tuple[bytes | None, list[bytes | None]]:
        """See ``Store.read_many``."""

    async def read_tagged(
        self, key: str, generation_key: str | None, tag_keys: tuple[str, ...]
    ) -> tuple[bytes | None, bytes | None, list[bytes | None]]:
        """See ``Store.read_tagged``."""

    async def claim_tokens(self, keys: tuple[str, ...], token: bytes, ttl_ms: int) -> list[bytes | None]:
        """See ``Store.claim_tokens``."""

    async def write(self, key: str, payload: bytes, ttl_ms: int, token: bytes) -> bool:
        """See ``Store.write``."""

    async def swap(
        self, key: str, expected: bytes | None, payload: bytes, ttl_ms: int, announce: Announce = None
    ) -> bool:
        """See ``Store.swap``."""

    async def write_many_if_unchanged(self, items: tuple[tuple[str, bytes, int, bytes], ...]) -> list[bool]:
        """Do ``write()`` for each ``(key, payload, ttl_ms, token)`` at once; say which were taken."""

    async def write_many(
        self,
        items: tuple[tuple[str, bytes, int], ...],
        announce: Announce = None,
        generation_key: str | None = None,
    ) -> tuple[bytes | None, list[str]]:
        """See ``Store.write_many``."""

    async def invalidate(
        self, keys: Sequence[str], tombstone: bytes | None, ttl_ms: int, announce: Announce = None
    ) -> None:
        """See ``Store.invalidate``."""

    async def raise_generation(
        self, generation_key: str, floor: int, step: int, announce: Announce = None
    ) -> tuple[int, bool]:
        """See ``Store.raise_generation``."""

    async def ping(self) -> bool:
        """See ``Store.ping``."""

    async def acquire_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """See ``Store.acquire_lock``."""

    async def release_lock(self, key: str, token: bytes) -> None:
        """See ``Store.release_lock``."""
