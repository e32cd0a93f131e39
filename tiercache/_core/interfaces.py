"""What the core asks of the parts around it: L1, and a call's arguments.

``_l1.lru.LocalCache`` is the one L1 (the flows reach it as ``tiers.l1``). L2 is reached
through commands (``ops.Command``), each a method of ``_l2.stores``'s two stores, one per
kind of caller; a unit test holds the stores to the commands.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from tiercache._l1.lru import Entry

__all__ = ["Arguments", "LocalTier"]


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
