"""What one cache knows of L2: the generation it follows there, and the payloads it seals and opens.

A payload is ours and current only against that generation (see ``_l2.envelope``), so the
two live together: learning a generation changes what a current payload starts with, and
the signing and tagging modes change it too. The flows hand every read's answer to
``take_read`` and ask ``seal_value`` for what to write; they never open an envelope, decode
a value or check a signature themselves.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tiercache._core.checks import DEFAULT_MAX_VALUE_BYTES
from tiercache._core.clocks import Clocks
from tiercache._core.owed import Owed
from tiercache._core.stats import StatsRecorder
from tiercache._l1.lru import MISSING
from tiercache._l2.codec import DecodeError, UnencodableError, decode_value, encode_pickled, encode_value
from tiercache._l2.compression import compress, inflate
from tiercache._l2.envelope import (
    ABSENT,
    MAX_GENERATION,
    carried,
    generation_from,
    new_token,
    open_current,
    open_envelope,
    prefix_of,
    seal,
    token_of,
)
from tiercache._l2.errors import printable
from tiercache._l2.oversized import BOUND, Oversized
from tiercache._l2.signing import MAC_SIZE, Signer

if TYPE_CHECKING:
    from tiercache._l2.endpoint import Endpoint

__all__ = ["DEADLINE_SLACK", "Remote"]

# The envelope around a value (header, timestamp, MAC): a payload longer than max_value_bytes
# plus this is refused before decoding.
_ENVELOPE_ROOM: Final = 512
# Replies as long as a default cache's payloads are taken (set_payload_rules raises it further).
BOUND.allow(DEFAULT_MAX_VALUE_BYTES + _ENVELOPE_ROOM)
#: What no payload starts with (ours start with the magic bytes): the payload start of a cache
#: whose generation is at the ceiling.
_NO_PAYLOAD_START: Final = b"\x00"
#: Seconds past its deadline (plus ``stale_ttl``) a payload is still believed: clocks of the
#: writing and the reading host may differ by this much. Later, it is expired or replayed.
DEADLINE_SLACK: Final = 1.0

#: ``log_once(tag, message, *args)``: log ``message`` the first time ``tag`` is seen for a cache.
LogOnce = Callable[..., None]


def _untag(body: memoryview, tags: bytes) -> memoryview | None:
    """Return the body after its tag block if that block is ``tags``, else None (a tag moved on)."""
    if not tags or body[: len(tags)] != tags:
        return None
    return body[len(tags) :]


class Remote:
    """One cache's view of L2: the generation it follows, and how its payloads are sealed and opened."""

    def __init__(
        self,
        label: str,
        stats: StatsRecorder,
        clocks: Clocks,
        owed: Owed,
        log_once: LogOnce,
        *,
        ttl_l2: float | None,
        stale_ttl: float,
        tagged: bool = False,
    ) -> None:
        self.label = label
        self.stats = stats
        self.clocks = clocks
        self.owed = owed  # (a generation that went back is owed our own again)
        self.log_once = log_once
        self.ttl_l2 = ttl_l2
        self.stale_ttl = stale_ttl
        #: Whether entries carry tag blocks (a function with ``tags=``; see ``_l2.envelope``).
        self.tagged = tagged
        #: The highest generation seen on the endpoint (None: none read yet).
        self.generation: int | None = None
        self._generation_endpoint: Endpoint | None = None
        self._generation_raw: bytes | int | None = None  # as Redis last sent the one followed
        self._payload_start = b""  # what value payloads of that generation start with
        self.signer: Signer | None = None
        #: Whether values msgpack cannot carry are pickled (signing caches only: see codec).
        self.pickles = False
        #: Whether a value pickle cannot carry either raises pickle's error (Django's contract).
        self.refuse_unpicklable = False
        self.max_value_bytes = DEFAULT_MAX_VALUE_BYTES
        self.compress_min_bytes: int | None = None

    def knows_generation(self, endpoint: Endpoint) -> bool:
        """Return whether a generation of ``endpoint`` is known here (however long ago it was read)."""
        return self._generation_endpoint is endpoint and self.generation is not None

    def learn_generation(self, endpoint: Endpoint, raw: bytes | int | None) -> int:
        """Take in the generation ``endpoint`` holds (raw from Redis, or as a script returned it).

        Generations only go up: one lower than the highest seen here is not followed. It may be
        a read that crossed a clear, or a Redis that went back (a restart, a failover, an old
        value planted back): Redis is told ours again, which changes nothing in the first case.
        Return the generation read.
        """
        if raw == self._generation_raw and endpoint is self._generation_endpoint:
            return self.generation or 0  # what every read brings back, mostly: nothing changed
        generation = raw if isinstance(raw, int) else generation_from(raw)
        if generation is None:
            self.stats.count("l2_corrupt")
            self.log_once(
                "generation", "%s: unreadable generation in L2, read as none; rewritten", self.label
            )
            generation = 0
            self.owed.floor()  # (rewritten with ours, as one gone back is: else read again and again)
        elif generation >= MAX_GENERATION:
            self.stats.count("l2_corrupt")
            self.log_once(
                "generation-ceiling",
                "%s: L2's generation is at its ceiling (planted there, or a clear pinned below it "
                "landed there): this cache keeps nothing in L2 until the key is flushed "
                "(tiercache flush) and its processes restart",
                self.label,
            )
        known = self.generation if self._generation_endpoint is endpoint else None
        if known is not None and generation < known:
            self.owed.floor()
        else:
            self._set_generation(generation)
            self._generation_raw = raw  # (only a generation followed: one that went back is repaired)
        self._generation_endpoint = endpoint
        return generation

    def forget_generation(self) -> None:
        """Forget the generation seen: the generation's key changed (a new namespace, say)."""
        self.generation = self._generation_endpoint = self._generation_raw = None

    def known_generation(self) -> int:
        """Return the highest generation seen (0 before any)."""
        return self.generation or 0

    def _set_generation(self, generation: int) -> None:
        self.generation = generation
        self._payload_start = (
            _NO_PAYLOAD_START  # (the ceiling: no payload is taken as current, see _open)
            if generation >= MAX_GENERATION
            else prefix_of(generation, signed=self.signer is not None, tagged=self.tagged)
        )

    def set_payload_rules(
        self, signer: Signer | None, max_value_bytes: int, compress_min_bytes: int | None = None
    ) -> None:
        """Set what L2 payloads carry and may be.

        Sign (and require signatures) with ``signer``, or neither; bound values at a size;
        compress encodings of ``compress_min_bytes`` and more (None: none).
        """
        self.signer = signer
        self.pickles = self.pickles and signer is not None  # (never without verified signatures)
        self.max_value_bytes = max_value_bytes
        BOUND.allow(max_value_bytes + _ENVELOPE_ROOM)  # (replies longer are refused as they arrive)
        self.compress_min_bytes = compress_min_bytes
        if self.generation is not None:
            self._set_generation(self.generation)

    def take_read(  # noqa: PLR0917 - a read's answer, in the parts the stores return
        self,
        endpoint: Endpoint,
        asked: str | None,
        generation: bytes | None,
        payload: bytes | None,
        key: str,
        tags: bytes | None = None,
    ) -> tuple[int | None, bytes, Any]:
        """Take in an L2 read's answer for ``key``, the one way every flow does.

        ``asked``: the generation key the read named, or None (the later keys of a batch read,
        whose first key learned it); the generation it brought back is then learned. Return that
        generation (None if not asked), the key's token (what a later conditional write
        compares) and ``(value, seconds fresh)`` or MISSING.
        """
        learned = self.learn_generation(endpoint, generation) if asked is not None else None
        return learned, token_of(payload), self.open_payload(endpoint, payload, key, tags)

    def open_payload(
        self, endpoint: Endpoint, payload: bytes | None, key: str, tags: bytes | None = None
    ) -> Any:
        """Return ``(value, seconds it stays fresh)`` from the L2 payload under ``key``, or MISSING.

        The seconds are negative for an entry past its TTL (kept for ``stale_ttl``). A payload
        that is not ours, damaged, from a newer format, too large, past its deadline and stale
        period, or (with signing) without a valid MAC is a miss (counted, logged once); the value
        written next overwrites it. A tombstone, or a value of another generation, is a miss.
        ``tags``: for a function with tags, the tag block its entry must start with (built from
        the tokens Redis holds now; empty when one of them is missing, which nothing matches).
        """
        if payload is None:
            return MISSING
        if len(payload) > self.max_value_bytes + _ENVELOPE_ROOM:
            self._reject(f"a payload of {len(payload)} bytes, over max_value_bytes")
            return MISSING
        try:
            current = (
                open_current(payload, self._payload_start) if self._generation_endpoint is endpoint else None
            )
            opened = (  # the common case in one step, any other by _open
                current
                if current is not None and self.signer is None and tags is None
                else self._open(endpoint, payload, key, current, tags)
            )
            if opened is None:
                return MISSING
            fresh_until_ms, body = opened
            fresh_for = fresh_until_ms / 1000 - self.clocks.wall()
            if fresh_for < -(self.stale_ttl + DEADLINE_SLACK):
                self._reject("a value past its deadline (expired, or planted back)")
                return MISSING
            value = decode_value(body, pickled=self.pickles)
        except DecodeError as exc:
            self._unreadable(payload, exc)
            return MISSING
        return value, fresh_for

    def _open(  # noqa: PLR0911 - one exit per kind of payload
        self,
        endpoint: Endpoint,
        payload: bytes,
        key: str,
        current: tuple[int, memoryview] | None,
        tags: bytes | None,
    ) -> tuple[int, bytes | memoryview] | None:
        """Return ``(fresh_until_ms, body)`` of a value we may trust, else None (a miss).

        ``current`` is what ``open_current`` made of it, if it is an uncompressed value of the
        current generation in our signing and tagging mode.
        """
        if current is not None:
            fresh_until_ms, body = current
            if self.signer is not None:
                if not self.signer.verify(key, payload):
                    self._reject("a value whose signature does not verify")
                    return None
                body = body[:-MAC_SIZE]
            untagged = body if tags is None else _untag(body, tags)
            return None if untagged is None else (fresh_until_ms, untagged)
        # Not the common case: find out what it is.
        envelope = open_envelope(payload)  # raises DecodeError if it is not ours at all
        if envelope.tombstone:
            return None  # invalidated
        if envelope.generation != self.generation or self._generation_endpoint is not endpoint:
            return None  # cleared since it was written
        if envelope.generation >= MAX_GENERATION:
            return None  # (none is sealed there: a planted one)
        if envelope.tagged != (tags is not None):
            return None  # written by the function with (or without) tags, before a deploy changed that
        if self.signer is not None:
            if not envelope.signed:
                self._reject("an unsigned value where signing is required")
                return None
            # What is stored is signed, compressed or not: nothing is inflated before it verifies.
            if not self.signer.verify(key, payload):
                self._reject("a value whose signature does not verify")
                return None
        # Without signing we check no signatures: a value signed by a process that does is as
        # good as any.
        kept = envelope.body if tags is None else _untag(envelope.body, tags)
        if kept is None:
            return None
        if envelope.compression:
            return envelope.fresh_until_ms, inflate(envelope.compression, kept, self.max_value_bytes)
        return envelope.fresh_until_ms, kept

    def unencodable(self, value: Any) -> bytes | None:
        """Return the body of a value msgpack cannot carry, or None to keep it in L1 alone.

        Pickled where the cache pickles (see codec.encode_pickled). With ``refuse_unpicklable``, a
        value no pickling backend could store raises pickle's error, as Django's backends do.
        """
        if self.pickles:
            return encode_pickled(value)
        if self.refuse_unpicklable:
            pickle.dumps(value)
        return None

    def _kept_local(self, refusal: UnencodableError) -> None:
        self.stats.count("unencodable")
        if refusal.reason:  # a supported type, but not this value of it
            self.log_once(
                f"unencodable:{refusal.type_name}:{refusal.reason[:24]}",
                "%s: a value is kept in L1 only: %s",
                self.label,
                refusal.reason,
            )
        else:
            self.log_once(
                f"unencodable:{refusal.type_name}",
                "%s: a %s value is kept in L1 only (register it with tiercache.register_type())",
                self.label,
                refusal.type_name,
            )

    def _unreadable(self, payload: bytes, error: DecodeError) -> None:
        if isinstance(payload, Oversized):  # (only its first bytes were read: see _l2.replies)
            self._reject(f"a payload of {payload.size} bytes, over max_value_bytes")
            return
        self.stats.count("l2_corrupt")
        self.log_once(
            "corrupt", "%s: unreadable L2 entry treated as a miss: %s", self.label, printable(str(error))
        )

    def _reject(self, what: str) -> None:
        self.stats.count("l2_rejected")
        self.log_once(f"rejected:{what[:24]}", "%s: L2 held %s; treated as a miss", self.label, what)

    def seal_value(
        self,
        endpoint: Endpoint,
        value: Any,
        key: str,
        *,
        read: bytes | None = ABSENT,
        ttl: float | None = None,
        generation: int | None = None,
        tags: bytes = b"",
    ) -> bytes | None:
        """Return the L2 payload for ``value`` under ``key``, or None when it can only live in L1.

        ``read``: the key's token when the value was read for, which the payload carries on (a
        write made conditional on it then tells an overtaking write or invalidation apart);
        ABSENT, a value nobody read for (the adapters' sets); None, a value set over whatever is
        there, with a new token (``cache_set``). It carries ``generation`` (default: the one
        known now; see ``_l2.envelope``) and stays fresh for ``ttl`` seconds, else for the
        cache's ``ttl_l2``; it is signed when the cache has signing keys, refused beyond
        ``max_value_bytes`` (measured before compression, as readers bound what they inflate by
        it), compressed from ``compress_min_bytes``.
        """
        if self._generation_endpoint is not endpoint or self.generation is None:
            return None
        if generation is None:
            generation = self.generation
        if generation >= MAX_GENERATION:
            return None  # (no value lives in the ceiling generation: see envelope.MAX_GENERATION)
        try:
            body = encode_value(value)
        except UnencodableError as exc:
            fallback = self.unencodable(value)  # (raises for a value the cache refuses outright)
            if fallback is None:
                self._kept_local(exc)
                return None
            body = fallback
        if len(body) > self.max_value_bytes:
            self.stats.count("oversized")
            self.log_once(
                "oversized",
                "%s: a value of %d bytes is kept in L1 only (max_value_bytes)",
                self.label,
                len(body),
            )
            return None
        fresh_for = ttl if ttl is not None else (self.ttl_l2 or 0.0)
        fresh_until_ms = round((self.clocks.wall() + fresh_for) * 1000)
        signed = self.signer is not None
        compression = 0
        if self.compress_min_bytes is not None and len(body) >= self.compress_min_bytes:
            compression, body = compress(body) or (0, body)
        token = new_token() if read is None else carried(read)
        payload = seal(
            body, generation, token, fresh_until_ms, signed=signed, compression=compression, tags=tags
        )
        return payload if self.signer is None else payload + self.signer.sign(key, payload)
