"""Tamper-evident L2 values: an HMAC-SHA256 over the Redis key and the payload.

Whoever can write to Redis can plant bytes under our keys. The codec never runs what it reads,
so the worst a planted value can do is be wrong; with signing it cannot even be that: a value
whose MAC does not verify, under any of the configured keys, is a miss. The MAC covers the Redis
key (which names the namespace and the function), so a genuine value copied to another key does
not verify there either.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

__all__ = ["MAC_SIZE", "MIN_KEY_BYTES", "Signer", "signing_keys"]

MAC_SIZE: Final = 32
MIN_KEY_BYTES: Final = 16


def signing_keys(value: object, owner: str) -> tuple[bytes, ...]:
    """Return ``value`` (a key, or keys newest first) as bytes; raise naming ``owner`` if bad.

    A str with commas is a list of keys, newest first, so one environment variable or text
    setting can carry a rotation.
    """
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",")]
    keys = [value] if isinstance(value, (str, bytes)) else value
    if not isinstance(keys, Sequence) or not keys:
        raise TypeError(f"{owner}: signing_key must be a str or bytes key, or a non-empty list of them")
    found = []
    for key in keys:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"{owner}: signing keys must be str or bytes, not {type(key).__name__}")
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"{owner}: a signing key must be at least {MIN_KEY_BYTES} bytes long")
        found.append(raw)
    return tuple(found)


class Signer:
    """Sign with the newest key, verify with any: rotation without a window of misses."""

    __slots__ = ("_keys",)

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return f"Signer(<{len(self._keys)} key(s)>)"

    @property
    def naming_secret(self) -> bytes:
        """The key that keys Redis key digests: the oldest, so that adding a key renames nothing."""
        return self._keys[-1]

    def sign(self, context: str, payload: bytes) -> bytes:
        """Return the MAC of ``payload`` stored under Redis key ``context``."""
        return hmac.digest(self._keys[0], self._message(context, payload), hashlib.sha256)

    def verify(self, context: str, signed: bytes) -> bool:
        """Return whether ``signed`` (payload then MAC) carries a MAC made with one of the keys."""
        if len(signed) < MAC_SIZE:
            return False
        message = self._message(context, signed[:-MAC_SIZE])
        mac = signed[-MAC_SIZE:]
        # Every key is tried, matched or not, so timing says nothing about which one did.
        valid = [hmac.compare_digest(hmac.digest(key, message, hashlib.sha256), mac) for key in self._keys]
        return any(valid)

    @staticmethod
    def _message(context: str, payload: bytes) -> bytes:
        raw = context.encode("utf-8")
        return len(raw).to_bytes(4, "big") + raw + payload
