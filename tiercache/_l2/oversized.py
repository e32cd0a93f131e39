"""How long a string reply from Redis may be, and what one past that reads as (see replies).

No Redis client here: the core reads these.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from tiercache._l2.envelope import TOKEN_OFFSET, TOKEN_SIZE

__all__ = ["BOUND", "FLOOR", "GUARD_SECONDS", "OVERSIZED_PREFIX", "Guard", "Oversized", "ReplyBound"]

#: The least bound, whatever the caches ask (key names, announcements, script replies).
FLOOR: Final = 1 << 20
#: How much of a string past the bound is read back: its token and one byte (see envelope.token_of),
#: so a conditional write can still replace what it holds. Shorter than any envelope, longer
#: than any generation, and no tag token's length: nothing takes it for one.
OVERSIZED_PREFIX: Final = TOKEN_OFFSET + TOKEN_SIZE + 1


class ReplyBound:
    """The longest string reply this process takes: the largest any of its caches may need."""

    def __init__(self, least: int) -> None:
        self.bytes = least
        self._lock = threading.Lock()

    def allow(self, length: int) -> None:
        """Let replies of ``length`` bytes through from now on (the bound only grows)."""
        with self._lock:
            self.bytes = max(self.bytes, length)


#: The one bound of this process (caches raise it to their ``max_value_bytes``).
BOUND: Final = ReplyBound(FLOOR)


class Oversized(bytes):
    """What a string past the bound reads as: its first OVERSIZED_PREFIX bytes, and its ``size``.

    Shorter than any envelope, so no cache opens it as a value; its token is the one Redis's
    conditional write compares; it is no generation and no tag token.
    """

    size: int

    def __new__(cls, prefix: bytes, size: int) -> Oversized:
        made = super().__new__(cls, prefix)
        made.size = size
        return made


#: How long an endpoint reads by length first after a string past the bound was found there.
GUARD_SECONDS: Final = 60.0


class Guard:
    """Whether an endpoint's reads ask each key's length before its value (see replies).

    Refusing a reply as it arrives bounds our memory, not Redis's work: Redis copies the whole
    string into its output buffer first (256 MB: a tenth of a second and more, for every read),
    and concurrent reads of such keys time out behind each other, open the breaker, and never
    get as far as repairing them. Once one is found, reads go through READ_BOUNDED, which never
    copies one, for GUARD_SECONDS after the last found: the repairs land, and the hot path pays
    nothing while nobody plants.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: When guarding ends (0.0: not guarding; read on every L2 read, so a plain attribute).
        self.until = 0.0

    def arm(self) -> None:
        """Guard from now on, for GUARD_SECONDS."""
        self.until = self._clock() + GUARD_SECONDS

    def active(self) -> bool:
        """Whether reads are guarded now (checked only while ``until`` is set)."""
        if self._clock() < self.until:
            return True
        self.until = 0.0
        return False
