"""The bytes of an L2 entry around its value: generation, version token, deadline; tombstones.

Format 2, a fixed 28-byte header, then (a tagged function's) the tag block, then the msgpack
body (``codec``; compressed when the flags say so), then a MAC if signed::

    b"tc" | format (1) | flags (1) | generation (u64) | token (8 bytes) | fresh until (unix ms, i64)

The **generation** is the function's (or adapter's) clear counter: ``cache_clear()`` raises it,
and an entry written under another one is a miss. It only ever goes up (see ``_core.tiers``).

The **token** is the key's version: an invalidation writes a *tombstone* carrying fresh random
bytes, and every value written after it carries the same bytes on. A writer names the token it
read before it computed; Redis refuses the write if the key's token changed since (the
conditional write in ``stores``, which reads the token at the same offsets). That is the
memcache lease, held in Redis: a value computed before an invalidation never lands after it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from tiercache._l2.codec import DecodeError
from tiercache._l2.signing import MAC_SIZE

__all__ = [
    "ABSENT",
    "COMPRESSED",
    "FOREIGN_TOKEN",
    "FORMAT_VERSION",
    "NO_TOKEN",
    "ZLIB",
    "ZSTD",
    "Envelope",
    "carried",
    "fresh_since_absent",
    "generation_from",
    "new_token",
    "open_current",
    "open_envelope",
    "prefix_of",
    "seal",
    "tag_block",
    "token_of",
    "tombstone",
]

FORMAT_VERSION: Final = 2
MAGIC: Final = b"tc"
#: What every entry of this format starts with (the conditional write checks it too).
LEAD: Final = MAGIC + bytes([FORMAT_VERSION])
_HEADER: Final = struct.Struct(">2sBBQ8sq")
HEADER_SIZE: Final = _HEADER.size
_PREFIX: Final = struct.Struct(">2sBBQ")  # what a payload of the current generation starts with
TOKEN_OFFSET: Final = _PREFIX.size
TOKEN_SIZE: Final = 8
_STAMP: Final = struct.Struct(">q")
_STAMP_OFFSET: Final = TOKEN_OFFSET + TOKEN_SIZE

#: Flags: the payload ends with a MAC (see ``signing``); the entry is a tombstone (no value);
#: the body is a zstd frame or a zlib stream (see ``compression``), inflated before decoding;
#: the body starts with the tokens of the entry's tags (``tag_block``), for functions with tags.
SIGNED: Final = 1
TOMBSTONE: Final = 2
ZSTD: Final = 4
ZLIB: Final = 8
COMPRESSED: Final = ZSTD | ZLIB
TAGGED: Final = 16
#: Tags one entry may carry (the tag block's count is one byte).
MAX_TAGS: Final = 64

#: The token of values written where no invalidation had been.
NO_TOKEN: Final = bytes(TOKEN_SIZE)
#: What the token of an absent key reads as, and of bytes that are not ours (neither is ever
#: equal to a real token: wrong length).
ABSENT: Final = b""
FOREIGN_TOKEN: Final = b"?"
#: Generations are decimal text in Redis, counted in Lua's doubles: kept well inside 2**53.
#: A clear can take the generation up to this one and no further; it is the one generation
#: no value is sealed in or served from: a cache that reads it keeps nothing in L2. Someone
#: who can write Redis may pin the generation just below it (a clear then lands here), or at
#: it: either costs that function its L2 until the key is flushed and the processes restart,
#: never a revoked value. (Read as "malformed", it let readers keep the pinned generation and
#: write it back over every later clear.)
MAX_GENERATION: Final = 2**52
#: The longest decimal text read as a number: longer is not ours (read as no generation).
_GENERATION_DIGITS: Final = 20


class Envelope(NamedTuple):
    """What an L2 entry says besides its value, and the value's encoding (without a MAC)."""

    generation: int
    token: bytes
    fresh_until_ms: int
    body: memoryview
    signed: bool
    tombstone: bool
    #: ZSTD, ZLIB or 0 (not compressed).
    compression: int
    #: Whether the body starts with a tag block (see ``tag_block``).
    tagged: bool


def carried(token: bytes) -> bytes:
    """Return the token a value written after reading ``token`` carries on."""
    return token if len(token) == TOKEN_SIZE else NO_TOKEN


def fresh_since_absent(payload: bytes) -> bool:
    """Whether ``payload``, found where the key was absent before, is a value no invalidation preceded."""
    return token_of(payload) == NO_TOKEN and not payload[3] & TOMBSTONE


def new_token() -> bytes:
    """Return a fresh random token for an invalidation (never NO_TOKEN)."""
    while (token := os.urandom(TOKEN_SIZE)) == NO_TOKEN:
        continue
    return token


def token_of(payload: bytes | None) -> bytes:
    """Return the token of what Redis holds under a key, as the conditional write reads it."""
    if payload is None:
        return ABSENT
    if len(payload) >= _STAMP_OFFSET and payload.startswith(LEAD):
        return payload[TOKEN_OFFSET:_STAMP_OFFSET]
    return FOREIGN_TOKEN


def tag_block(tokens: Sequence[bytes]) -> bytes:
    """Return what a tagged entry's body starts with: its tags' tokens, as read before computing.

    A count, then each token (``TOKEN_SIZE`` bytes) in the order of the tags' digests. A reader
    builds the same bytes from the tokens Redis holds now: if they differ, a tag was
    invalidated since the value was read for, and the entry is a miss.
    """
    return bytes([len(tokens)]) + b"".join(tokens)


def prefix_of(generation: int, *, signed: bool = False, tagged: bool = False) -> bytes:
    """Return the bytes every current value payload of ``generation`` starts with.

    Magic, format, flags and generation come first, so one ``startswith`` tells a value of the
    current generation from anything else (an older generation, a newer format, another signing
    mode, a tombstone, someone else's bytes); only those need ``open_envelope``.
    """
    return _PREFIX.pack(
        MAGIC, FORMAT_VERSION, (SIGNED if signed else 0) | (TAGGED if tagged else 0), generation
    )


def seal(
    body: bytes,
    generation: int,
    token: bytes,
    fresh_until_ms: int,
    *,
    signed: bool = False,
    compression: int = 0,
    tags: bytes = b"",
) -> bytes:
    """Wrap an encoded value for L2 (with ``signed`` the flag is set and the caller appends the MAC).

    ``compression`` is the flag of the compressor ``body`` went through, if any; ``tags`` the
    entry's tag block (see ``tag_block``), which stays uncompressed before it.
    """
    flags = (SIGNED if signed else 0) | compression | (TAGGED if tags else 0)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, flags, generation, token, fresh_until_ms) + tags + body


def tombstone(token: bytes) -> bytes:
    """Return the entry an invalidation leaves: no value, a new token."""
    return _HEADER.pack(MAGIC, FORMAT_VERSION, TOMBSTONE, 0, token, 0)


def open_current(payload: bytes, start: bytes) -> tuple[int, memoryview] | None:
    """Return ``(fresh_until_ms, body)`` of a payload beginning with ``start``, else None.

    For a signed payload the body still ends with its MAC.
    """
    if not payload.startswith(start) or len(payload) < HEADER_SIZE:
        return None
    view = memoryview(payload)  # the body is decoded in place, not copied out first
    return _STAMP.unpack_from(payload, _STAMP_OFFSET)[0], view[HEADER_SIZE:]


def open_envelope(payload: bytes) -> Envelope:
    """Split an L2 payload into its parts; raise DecodeError if it is not ours or is damaged."""
    if len(payload) < HEADER_SIZE:
        raise DecodeError("payload shorter than the envelope header")
    magic, version, flags, generation, token, fresh_until_ms = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise DecodeError("payload does not start with the tiercache magic bytes")
    if version != FORMAT_VERSION:
        raise DecodeError(f"payload format version {version}, this process reads {FORMAT_VERSION}")
    signed = bool(flags & SIGNED)
    if signed and len(payload) < HEADER_SIZE + MAC_SIZE:
        raise DecodeError("signed payload too short to hold its MAC")
    view = memoryview(payload)
    body = view[HEADER_SIZE : len(payload) - MAC_SIZE if signed else None]
    compression = flags & COMPRESSED
    if compression == COMPRESSED:
        raise DecodeError("payload flagged as compressed twice over")
    dead, tagged = bool(flags & TOMBSTONE), bool(flags & TAGGED)
    return Envelope(generation, token, fresh_until_ms, body, signed, dead, compression, tagged)


def generation_from(raw: bytes | None) -> int | None:
    """Return the generation Redis holds (0 when it holds none), or None if it is malformed.

    Anyone who can write Redis can put anything there: only a short decimal number is one, and
    any number from MAX_GENERATION up reads as MAX_GENERATION (where clears stop).
    """
    if raw is None:
        return 0
    if not isinstance(raw, bytes) or not 0 < len(raw) <= _GENERATION_DIGITS or not raw.isdigit():
        return None
    return min(int(raw), MAX_GENERATION)
