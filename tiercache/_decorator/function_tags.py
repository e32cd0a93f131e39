"""A tagged function's tags: which a call carries, the L1 keys noted under each, their tokens.

``tags`` invalidates tags; this part is what one function keeps of them so that an
invalidation, here or in another process, finds every L1 entry and run it must.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiercache._core.flights import FlightTables
from tiercache._core.l1_coherence import L1Coherence
from tiercache._decorator.call import Call
from tiercache._decorator.tag_names import TAG_FLOOR, TOKENS, TagListener, TagNotes, TagSpec, tag_key
from tiercache._l1.lru import LocalCache
from tiercache._l2.coherence import channel_for
from tiercache._l2.deployments import Endpoint
from tiercache._l2.envelope import tag_block
from tiercache._l2.signing import Signer

__all__ = ["FunctionTags"]


class FunctionTags:
    """The tags of one function with ``tags=``, and what it noted under them."""

    def __init__(
        self, spec: TagSpec, local: LocalCache, coherence: L1Coherence, flights: FlightTables, l2_ttl_ms: int
    ) -> None:
        #: What ``tags=`` says.
        self.spec = spec
        #: Which L1 keys were noted under each tag digest.
        self.notes = TagNotes(local)
        #: How long a tag's token claimed by this function lives in Redis, in ms.
        self.ttl_ms = max(l2_ttl_ms, round(TAG_FLOOR * 1000))
        self.namespace = ""
        self._local = local
        self._coherence = coherence
        self._flights = flights
        self._listener: TagListener | None = None

    def after_fork(self) -> None:
        """Replace the notes' lock a thread of the parent may have held when it forked."""
        self.notes.after_fork()

    def settle(
        self, namespace: str, secret: bytes | None, endpoint: Endpoint | None, signer: Signer | None
    ) -> None:
        """Follow the settings: tags are ``namespace``'s, their digests keyed by ``secret``.

        Tags are the namespace's, shared by every function: keyed by the process's key
        (configure(), TIERCACHE_SIGNING_KEY), which invalidate_tags() uses too; by its oldest, as
        key names are, so that adding a key renames nothing. With an ``endpoint`` whose bus
        this function follows, it listens for other processes' tag invalidations there.
        """
        self.namespace = namespace
        self.spec.key_with(secret)
        if self._coherence.coherent and endpoint is not None and endpoint.bus is not None:
            # (the bus holds its members weakly: this part keeps its listener)
            self._listener = TagListener(namespace, self.drop, signer)
            endpoint.bus.join(channel_for(namespace), self._listener)

    def note(self, call: Call) -> None:
        """Work out ``call``'s tags, and note its L1 key under each (before its L2 read).

        An invalidation of a tag then drops the key, voiding the call's lease: a value it read
        or computed before is kept out of L1. Past a bound the notes keep only the keys L1
        holds, and every lease taken before is voided (as ``note_digest`` does).
        """
        call.tags = self.spec.digests(call.args, call.kwargs)
        self.notes.note(call.tags, call.l1_key, self._coherence.lose_track)

    def drop(self, digests: Sequence[str]) -> None:
        """Drop the L1 entries, and cut loose the runs, noted under any of ``digests``."""
        keys = self.notes.take(digests)
        if keys:
            self._coherence.drop_local(list(keys))
        if not self._local.max_entries:  # runs that just ended linger for late callers: not under a note
            self._coherence.drop_local(None)

    def keep_findable(self, call: Call) -> None:
        """Cut the run ``call`` has just begun loose if its key was dropped since it was noted.

        A tag drop takes the notes it finds: one that came between this call's ``note()`` and
        its run took the note before the run existed, so the next ``invalidate_tags()`` would
        not find the run, and calls made after it returned would join a run that may have read
        the data before it changed. (An untagged key is dropped by name: always found.)
        """
        if self._local.max_entries and not self._local.valid(call.l1_key, call.lease):
            self._flights.detach((call.l1_key,))

    def keys_of(self, call: Call) -> tuple[str, ...]:
        """Return the Redis keys of ``call``'s tags, made once a call (read, tokens, claim)."""
        keys = call.tag_keys
        if keys is None:
            keys = call.tag_keys = tuple(tag_key(self.namespace, tag) for tag in call.tags)
        return keys

    def take(self, call: Call, tokens: Sequence[bytes | None]) -> bytes:
        """Keep the tokens a read found for ``call``'s tags; return the tag block its entry must carry.

        Empty (matching no entry) when one is missing, not a token, or one an invalidation this
        process saw replaced (planted back): no entry carries none, and the claim replaces it.
        """
        kept: list[bytes | None] = []
        for key, token in zip(self.keys_of(call), tokens, strict=True):
            if TOKENS.genuine(token, at=key):
                TOKENS.read(key, token)
                kept.append(token)
            else:
                kept.append(None)
        call.tag_tokens = kept
        return self.block_of(call) or b""

    @staticmethod
    def block_of(call: Call) -> bytes | None:
        """Return the tag block a value computed for ``call`` is written with (None: not known)."""
        tokens = call.tag_tokens
        if tokens is None or None in tokens:
            return None
        return tag_block(tokens)  # type: ignore[arg-type]
