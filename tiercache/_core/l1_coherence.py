"""One cache's L1 as other processes see it: what it announces, what it hears, what it drops.

A cache follows its namespace's channel (see ``_l2.coherence``): its changes are announced
there by digest, and the changes others announce drop its L1 entries. This part keeps the
digest → L1 key notes those drops need, and the drops themselves, whoever asks for them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

from tiercache._l1.lru import LocalCache
from tiercache._l2.coherence import DEAF_L1_SECONDS, announcement, channel_for
from tiercache._l2.layout import DIGEST_LENGTH

if TYPE_CHECKING:
    from tiercache._l2.endpoint import Endpoint
    from tiercache._l2.signing import Signer

__all__ = ["L1Coherence"]


def _tail(redis_key: str) -> str:
    return redis_key[-DIGEST_LENGTH:]


class L1Coherence:
    """The member a cache's L1 joins its channel's bus with (see ``_l2.coherence.Member``)."""

    def __init__(
        self,
        label: str,
        local: LocalCache,
        signer: Callable[[], Signer | None],
        log_once: Callable[..., None],
    ) -> None:
        self.label = label
        self.local = local
        self._signer = signer
        self._log_once = log_once
        #: Return the digest other processes know a Redis key's entry by (its name's tail; an
        #: adapter's, whose key names are the user's own, a keyed hash of it).
        self.digest_for: Callable[[str], str] = _tail
        #: Whether this cache follows its channel at all (``coherent=``).
        self.coherent = True
        #: Where our changes are announced (None: they are not, and L1 follows its TTL alone).
        self.channel: str | None = None
        #: Who we are in announcements: ours are already applied here.
        self.origin = os.urandom(8)
        #: The cache's key prefix: what announcements name it by.
        self.key_prefix = ""
        #: Cut loose the runs under way of these L1 keys (None: all): a decorated function's
        #: single flights, which calls made after a drop must not join.
        self.detach: Callable[[Sequence[Hashable] | None], None] = lambda keys: None
        self._by_digest: dict[str, Hashable] = {}  # see note_digest()

    @property
    def signer(self) -> Signer | None:
        """What signs this cache's announcements and verifies others' (None: nothing is signed)."""
        return self._signer()

    @property
    def hears_others(self) -> bool:
        """Whether this L1 follows other processes' invalidations right now."""
        return self.channel is not None and self.local.cap == math.inf

    def after_fork(self) -> None:
        """Become another process to the others: the child's changes are not the parent's."""
        self.origin = os.urandom(8)

    def follow(self, endpoint: Endpoint | None, namespace: str) -> None:
        """Announce our changes on ``namespace``'s channel and follow everyone else's there."""
        if endpoint is not None:
            endpoint.checks.check_access(namespace, channel_for(namespace))
        if not self.coherent or endpoint is None:
            self.channel = None
            self.set_deaf(False)  # nothing to hear: L1 follows ttl_l1, as documented
            return
        if endpoint.bus is None:
            self.channel = None
            self.set_deaf(False)
            self._log_once(
                "incoherent",
                "%s: no sync Redis client to listen with; its L1 follows ttl_l1 only",
                self.label,
                level=logging.INFO,
            )
            return
        self.channel = channel_for(namespace)
        endpoint.bus.join(self.channel, self)

    def announce(self, redis_keys: Sequence[str] | None) -> tuple[str, bytes] | None:
        """Return what to publish after changing ``redis_keys`` (None: all), or None if nothing.

        Announcements name digests, never arguments (see ``_l2.announcement``).
        """
        if self.channel is None:
            return None
        digests = None if redis_keys is None else [self.digest_for(key) for key in redis_keys]
        return self.channel, announcement(self, self.channel, digests)

    def note_digest(self, digest: str, l1_key: Hashable) -> None:
        """Remember which L1 key ``digest`` stands for, so announcements can name it.

        Every L1 write, and every read that may lead to one, of a cache that follows a channel
        is noted. Past a bound the notes keep only the keys L1 holds; calls under way then lose
        their note, so their L1 writes are refused (their leases voided), never left unheard.
        """
        notes = self._by_digest
        notes[digest] = l1_key
        if len(notes) > 2 * self.local.max_entries + 1024:
            held = self.local.data
            self._by_digest = {d: key for d, key in list(notes.items()) if key in held}
            self.lose_track()

    def lose_track(self) -> None:
        """Refuse what calls under way would write to L1, and cut their runs loose.

        Their notes were let go: an invalidation would not find them, so calls made after one
        must not join them either.
        """
        self.local.void_leases()
        self.detach(None)

    def drop_announced(self, digests: Sequence[str]) -> None:
        """Drop the L1 entries another process invalidated, known here by their digests.

        A digest not noted here names nothing in L1. Without an L1, though, runs that just
        ended linger briefly for late callers, and their notes may be gone: drop them all.
        """
        notes = self._by_digest
        keys = [notes[digest] for digest in digests if digest in notes]
        if len(keys) < len(digests) and self.local.max_entries == 0:
            self.drop_local(None)
        elif keys:
            self.drop_local(keys)

    def drop_local(self, keys: Sequence[Hashable] | None, *, keep_stale: bool = False) -> None:
        """Drop ``keys`` (None: every entry) from L1, and cut their runs loose: they were invalidated.

        Writes of values read or computed before now are refused from now on (L1 leases).
        ``keep_stale`` (after a lost subscription, when nothing is known to have changed) keeps
        entries as stale ones instead: never served as fresh, still there for fail-safe.
        """
        if keys is None and keep_stale:
            self.local.expire_all()
        elif keys is None:
            self.local.clear()
        else:
            for key in keys:
                self.local.delete(key)
        self.detach(keys)

    def drop_since(self, key: Hashable, lease: int) -> int | None:
        """Drop ``key`` as ``drop_local`` does; return a lease for our own write of it after the drop.

        None when the key was dropped since ``lease`` (another process changed it meanwhile):
        see LocalCache.delete_since.
        """
        own = self.local.delete_since(key, lease)
        self.detach((key,))
        return own

    def set_deaf(self, deaf: bool) -> None:
        """Bound L1 lifetimes while other processes' invalidations cannot be heard (or lift it)."""
        self.local.set_cap(DEAF_L1_SECONDS if deaf else math.inf)
