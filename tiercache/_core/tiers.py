"""One cache's two tiers: its L1, its L2 endpoint and generation, its stats, its pending repairs.

Shared by the decorator's per-function caches and the adapters: the flows decide, and ask this
object where L2 is, whether a payload is ours and current, and what to record.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final

from tiercache._core.checks import DEFAULT_MAX_VALUE_BYTES, milliseconds
from tiercache._core.clocks import Clocks
from tiercache._core.interfaces import LocalTier
from tiercache._core.owed import Owed
from tiercache._core.stats import CacheStats, StatsRecorder
from tiercache._errors import InvalidationError
from tiercache._l1.lru import MISSING, LocalCache
from tiercache._l2.codec import DecodeError, UnencodableError, decode_value, encode_pickled, encode_value
from tiercache._l2.coherence import DEAF_L1_SECONDS, announcement, channel_for
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
from tiercache._l2.errors import RemoteError, RemotePartlyDown, RemoteSaturated, RemoteUnavailable, printable
from tiercache._l2.layout import DIGEST_LENGTH
from tiercache._l2.oversized import BOUND, Oversized
from tiercache._l2.signing import MAC_SIZE, Signer

if TYPE_CHECKING:
    from tiercache._l2.endpoint import Endpoint

__all__ = [
    "DEADLINE_SLACK",
    "GENERATION_RECHECK",
    "TOMBSTONE_FLOOR",
    "Tiers",
    "live_tiers",
]

logger = logging.getLogger("tiercache")


#: How long reads trust the generation they last read before fetching it again with the next
#: look-up (sets read it in their own round trip: see write_in_generation).
GENERATION_RECHECK: Final = 0.5
# The envelope around a value (header, timestamp, MAC): a payload longer than max_value_bytes
# plus this is refused before decoding.
_ENVELOPE_ROOM: Final = 512
# Replies as long as a default cache's payloads are taken (set_payload_rules raises it further).
BOUND.allow(DEFAULT_MAX_VALUE_BYTES + _ENVELOPE_ROOM)
#: What no payload starts with (ours start with the magic bytes): the payload start of a cache
#: whose generation is at the ceiling.
_NO_PAYLOAD_START: Final = b"\x00"
#: Seconds a tombstone stays at least (else as long as the entries): a write whose writer read
#: the key longer ago than its tombstone lives could miss an invalidation, so it is not sent.
TOMBSTONE_FLOOR: Final = 300.0
#: Seconds past its deadline (plus ``stale_ttl``) a payload is still believed: clocks of the
#: writing and the reading host may differ by this much. Later, it is expired or replayed.
DEADLINE_SLACK: Final = 1.0


def _untag(body: memoryview, tags: bytes) -> memoryview | None:
    """Return the body after its tag block if that block is ``tags``, else None (a tag moved on)."""
    if not tags or body[: len(tags)] != tags:
        return None
    return body[len(tags) :]


class Tiers:
    """The state behind one cache's L1 and L2, and the answers the flows need from it."""

    #: Redis key of this cache's generation (set by subclasses, which know their namespace).
    generation_key: str

    def __init__(
        self,
        label: str,
        local: LocalCache,
        *,
        ttl_l2: float | None,
        stale_ttl: float,
        tombstones: bool = True,
    ) -> None:
        self.label = label
        self.local = local  # all of it: the tiers keep its bounds, drops and leases
        self.l1: LocalTier = local  # what flows may ask of it
        self.clocks = Clocks.following(local.clock)
        self.stats = StatsRecorder(label)
        self.ttl_l2 = ttl_l2
        self.stale_ttl = stale_ttl
        # An entry stays in Redis for its stale period too; its envelope says when it went stale.
        self.l2_ttl_ms = milliseconds((ttl_l2 or 0.0) + stale_ttl)
        # Invalidations leave tombstones (see _l2.envelope) where values are computed and written
        # conditionally; None: plain deletes (the adapters, whose values are set, not computed).
        self.tombstone_ms = max(self.l2_ttl_ms, round(TOMBSTONE_FLOOR * 1000)) if tombstones else None
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        # The highest generation seen on the endpoint, and when to read it again.
        self._generation: int | None = None
        self._payload_start = b""  # what value payloads of that generation start with
        self._generation_endpoint: Endpoint | None = None
        self._generation_raw: bytes | int | None = None  # as Redis last sent the one followed
        self._generation_due = 0.0
        #: Invalidations that could not reach L2 yet, replayed once it is back (in the
        #: background) or before the next L2 operation, whichever comes first.
        self.owed = Owed()
        #: Whether this cache has an L1 at all (an L1-less one skips its leases and look-ups).
        self.has_l1 = local.max_entries > 0
        self.signer: Signer | None = None
        #: Whether values msgpack cannot carry are pickled (signing caches only: see codec).
        self.pickles = False
        #: Whether a value pickle cannot carry either raises pickle's error (Django's contract).
        self.refuse_unpicklable = False
        self.max_value_bytes = DEFAULT_MAX_VALUE_BYTES
        self.compress_min_bytes: int | None = None
        #: Whether entries carry tag blocks (a function with ``tags=``; see ``_l2.envelope``).
        self.tagged = False
        # Cross-process coherence (see _l2.coherence): where our changes are announced (None: they
        # are not, and this L1 follows its TTL alone), and who we are in those announcements.
        self.coherent = True
        self.channel: str | None = None
        self.origin = os.urandom(8)
        self.key_prefix = ""
        self._endpoint: Endpoint | None = None  # set by subclasses, as they resolve where L2 is
        _live.add(self)
        self._by_digest: dict[str, Hashable] = {}  # see note_digest()
        # Sets under way, by L1 key: how many, and whether two ever overlapped (see begin_set).
        self._sets: dict[Hashable, list[int]] = {}

    def enabled(self) -> bool:
        """Whether caching is on at all."""
        return True

    def endpoint(self) -> Endpoint | None:
        """Return the L2 endpoint in use now, or None when this cache keeps to L1."""
        raise NotImplementedError

    def endpoint_in_use(self) -> Endpoint | None:
        """Return the endpoint this cache last used, without resolving settings again (closing)."""
        return self._endpoint

    def after_fork(self) -> None:
        """Replace locks a thread of the parent may have held when it forked."""
        self.origin = os.urandom(8)  # the child is another process to the others
        self._lock = threading.Lock()
        self.local.after_fork()
        self.stats.after_fork()
        self.owed.after_fork()

    # -- coherence ------------------------------------------------------------------------

    def follow(self, endpoint: Endpoint | None, namespace: str) -> None:
        """Announce our changes on ``namespace``'s channel and follow everyone else's there."""
        if endpoint is not None:
            endpoint.check_access(namespace, channel_for(namespace))
        if not self.coherent or endpoint is None:
            self.channel = None
            self.set_deaf(False)  # nothing to hear: L1 follows ttl_l1, as documented
            return
        if endpoint.bus is None:
            self.channel = None
            self.set_deaf(False)
            self.log_once(
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

    def digest_for(self, redis_key: str) -> str:
        """Return the digest other processes know ``redis_key``'s entry by (its key name's tail)."""
        return redis_key[-DIGEST_LENGTH:]

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
        """Refuse what calls under way would write to L1: their notes were let go (see note_digest)."""
        self.local.void_leases()

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
        """Drop ``keys`` (None: every entry) from L1: invalidated here or in another process.

        Writes of values read or computed before now are refused from now on (L1 leases).
        ``keep_stale`` (after a lost subscription, when nothing is known to have changed) keeps
        entries as stale ones instead: never served as fresh, still there for fail-safe.
        """
        if keys is None and keep_stale:
            self.local.expire_all()
            self._generation_due = 0.0
        elif keys is None:
            self.local.clear()
            self._generation_due = 0.0  # a clear elsewhere is a new generation: read it next time
        else:
            for key in keys:
                self.local.delete(key)

    def set_deaf(self, deaf: bool) -> None:
        """Bound L1 lifetimes while other processes' invalidations cannot be heard (or lift it)."""
        self.local.set_cap(DEAF_L1_SECONDS if deaf else math.inf)

    @property
    def hears_others(self) -> bool:
        """Whether this L1 follows other processes' invalidations right now."""
        return self.channel is not None and self.local.cap == math.inf

    # -- generations and payloads ---------------------------------------------------------

    def knows_generation(self, endpoint: Endpoint) -> bool:
        """Return whether a generation of ``endpoint`` is known here (however long ago it was read)."""
        return self._generation_endpoint is endpoint and self._generation is not None

    def generation_key_if_due(self, endpoint: Endpoint) -> str | None:
        """Return the generation key when the generation should be read with the next look-up."""
        if self._generation_endpoint is not endpoint or self.clocks.monotonic() >= self._generation_due:
            return self.generation_key
        return None

    def learn_generation(self, endpoint: Endpoint, raw: bytes | int | None) -> int:
        """Take in the generation ``endpoint`` holds (raw from Redis, or as a script returned it).

        Generations only go up: one lower than the highest seen here is not followed. It may be
        a read that crossed a clear, or a Redis that went back (a restart, a failover, an old
        value planted back): Redis is told ours again, which changes nothing in the first case.
        Return the generation read.
        """
        if raw == self._generation_raw and endpoint is self._generation_endpoint:
            return self._generation or 0  # what every read brings back, mostly: nothing changed
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
        known = self._generation if self._generation_endpoint is endpoint else None
        if known is not None and generation < known:
            self.owed.floor()
        else:
            self._set_generation(generation)
            self._generation_raw = raw  # (only a generation followed: one that went back is repaired)
        self._generation_endpoint = endpoint
        self._generation_due = self.clocks.monotonic() + GENERATION_RECHECK
        return generation

    def forget_generation(self) -> None:
        """Forget the generation seen: the generation's key changed (a new namespace, say)."""
        self._generation = self._generation_endpoint = self._generation_raw = None
        self._generation_due = 0.0

    def known_generation(self) -> int:
        """Return the highest generation seen (0 before any)."""
        return self._generation or 0

    def _set_generation(self, generation: int) -> None:
        self._generation = generation
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
        if self._generation is not None:
            self._set_generation(self._generation)

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

        ``asked``: the generation key the read named (``generation_key_if_due()``), if any; the
        generation it brought back is then learned. Return that generation (None if not asked),
        the key's token (what a later conditional write compares) and ``(value, seconds fresh)``
        or MISSING.
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
        if envelope.generation != self._generation or self._generation_endpoint is not endpoint:
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
        if self._generation_endpoint is not endpoint or self._generation is None:
            return None
        if generation is None:
            generation = self._generation
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

    # -- sets of one key at once -----------------------------------------------------------

    def begin_set(self, key: Hashable) -> None:
        """Note that a set of ``key`` (its L1 key) begins writing Redis; ``end_set`` must follow.

        Which of two sets' writes Redis took last is not known here, so neither may decide what
        L1 keeps: sets that overlapped leave the key out of L1, and the next read asks Redis.
        """
        with self._lock:
            under_way = self._sets.get(key)
            if under_way is None:
                self._sets[key] = [1, 0]
            else:
                under_way[0] += 1
                under_way[1] = 1  # overlapped

    def end_set(self, key: Hashable, keep: Callable[[], object]) -> None:
        """End a set of ``key`` begun by ``begin_set``: ``keep()`` its value in L1, unless sets overlapped."""
        with self._lock:
            under_way = self._sets[key]
            under_way[0] -= 1
            if not under_way[0]:
                del self._sets[key]
            if under_way[1]:
                self.local.delete(key)
            else:
                keep()

    def refusal(self, action: str, endpoint: Endpoint, error: RemoteError) -> InvalidationError:
        """Return the error for an invalidation Redis refused, saying what may still serve the old value."""
        cleared = action.endswith("clear()")
        old, expires = ("the old values", "they expire") if cleared else ("the old value", "it expires")
        l1_bound = f"up to {self.local.ttl:g} s" if math.isfinite(self.local.ttl) else "their TTL"
        others = f"other processes' L1s may keep {old} for {l1_bound}"
        if getattr(error, "kept_in_redis", True):
            l2_bound = f"up to {self.l2_ttl_ms / 1000:g} s" if self.ttl_l2 is not None else "its TTL"
            remains = f"{old} may stay in Redis until {expires} ({l2_bound}), and {others}"
        else:
            remains = f"Redis dropped {old}, but refused the announcement: {others}"
        return InvalidationError(self.label, action, endpoint.name, str(error), remains)

    # -- outcomes -------------------------------------------------------------------------

    def remote_failed(self, endpoint: Endpoint, exc: RemoteError) -> None:
        """Count a failed L2 operation and tell the endpoint's breaker if Redis is unreachable.

        A pool saturated by our own burst is counted apart and never opens the breaker.
        """
        if isinstance(exc, RemoteSaturated):
            self.stats.count("l2_saturated")
            self.log_once(
                "saturated",
                "%s: every connection to L2 at %s stayed busy; calls skip L2 until one frees "
                "(raise configure(max_connections=...) if this is the normal load)",
                self.label,
                endpoint.name,
            )
            return
        self.stats.count("l2_errors")
        if isinstance(exc, RemotePartlyDown):  # one primary of a cluster: its keys skip L2, not all
            self.log_once(
                "partly-down", "%s: L2 at %s: %s; its keys skip L2 meanwhile", self.label, endpoint.name, exc
            )
            return
        if isinstance(exc, RemoteUnavailable):
            endpoint.breaker.failure(exc)  # the breaker logs the outage, once
            return
        endpoint.breaker.success()  # Redis answered, if only to refuse this one command
        self.log_once(
            f"rejected:{exc}", "%s: L2 at %s refused an operation: %s", self.label, endpoint.name, exc
        )

    def log_once(self, tag: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        """Log ``message`` the first time ``tag`` is seen for this cache."""
        if tag not in self._logged:
            self._logged.add(tag)
            logger.log(level, message, *args)

    def snapshot(self, *, reset: bool = False) -> CacheStats:
        """Return this cache's stats (and zero them with ``reset``)."""
        endpoint = self.endpoint()
        breaker = endpoint.breaker if endpoint is not None else None
        return self.stats.snapshot(
            degraded=breaker is not None and breaker.is_open,
            degraded_seconds=breaker.degraded_seconds() if breaker is not None else 0.0,
            l1_size=len(self.local),
            pending_invalidations=len(self.owed),
            coherent=self.hears_others,
            reset=reset,
        )


_live: weakref.WeakSet[Tiers] = weakref.WeakSet()


def live_tiers() -> list[Tiers]:
    """Return every cache of this process still referenced: functions and adapters."""
    return list(_live)
