"""One call on its way through the slow path: its keys, its lease, what L2 answered it.

The flows carry it from the L1 miss to the write; the function's cache and its parts (tags,
keys) read and fill it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from tiercache._core.stats import FAST
from tiercache._l1.lru import MISSING
from tiercache._l2.envelope import ABSENT, FOREIGN_TOKEN

__all__ = ["Call"]


class Call:
    """One call on its way through the slow path."""

    __slots__ = (
        "args",
        "canonical",
        "flags",
        "found",
        "generation",
        "key_values",
        "kwargs",
        "l1_key",
        "lease",
        "read_at",
        "redis_key",
        "started_ns",
        "tag_keys",
        "tag_tokens",
        "tags",
        "token",
    )

    def __init__(
        self,
        l1_key: Hashable,
        key_values: tuple[Any, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        *,
        fast: bool = False,
        canonical: bytes | None = None,
    ) -> None:
        self.started_ns = time.perf_counter_ns()
        self.l1_key = l1_key
        self.key_values = key_values
        self.args = args
        self.kwargs = kwargs
        self.flags = FAST if fast else 0  # FAST: it came through the fast path; LOOKED_UP: it asked L2
        self.canonical = canonical
        self.found: Any = MISSING  # what L2 answered: (value, seconds it stays fresh)
        self.lease = 0  # the L1 lease taken before anything slow (see LocalCache)
        self.token = ABSENT  # the key's token in L2 when we read it, and when (monotonic)
        self.read_at = 0.0
        self.redis_key = ""  # once known (the L2 read), for the write
        self.generation = 0  # the generation our read was made in (a value computed from it is of it)
        self.tags: tuple[str, ...] = ()  # a tagged function's: the digests of this call's tags
        self.tag_keys: tuple[str, ...] | None = None  # ... their Redis keys, once asked for
        # ... and the tokens Redis held for them when we read (None: unknown, or one missing)
        self.tag_tokens: list[bytes | None] | None = None

    @property
    def found_something(self) -> bool:
        """Whether Redis held anything under the key when read: an entry, a tombstone, not ours."""
        return self.token != ABSENT

    def read_refused(self) -> None:
        """Note that Redis refused the read (a key of another type): our write replaces it."""
        self.token = FOREIGN_TOKEN
