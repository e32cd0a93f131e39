"""One decorated function's keys: its calls' L1 keys, their canonical bytes, their Redis keys.

The encoding itself is pure (see ``keys``). What else a function's keys are made of comes from
the process settings (the namespace, ``max_key_bytes``, the signing keys that key the digests)
and from the function's identity (see ``identity``): its cache resolves those and hands them in
(``settle``). A key maker that finds the settings changed since asks the cache to resolve them
again before it makes a key; it holds that resolver weakly, as the cache owns the key maker.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Final

from tiercache._decorator import config as _config
from tiercache._decorator.identity import Closure, closure_tag
from tiercache._decorator.keys import (
    DEFAULT_MAX_KEY_BYTES,
    EXACT_TYPES,
    KEY_FORMAT,
    canonical_bytes,
    digest,
    shallow_key,
)

__all__ = ["REDIS_KEY_MEMO", "KeyMaker"]

#: Redis keys remembered per function (by L1 key), so repeated L1 misses skip the hashing.
REDIS_KEY_MEMO: Final = 1024


class KeyMaker:
    """Make the keys of one function's calls from their key values (the arguments that key them).

    Invariants: ``memo`` maps an L1 key to the Redis key of the same call, made from the parts
    settled last (``settle`` replaces it); equal L1 keys have equal canonical encodings, so the
    memo is a faithful stand-in for encoding and hashing again.
    """

    __slots__ = (
        "_resolve",
        "closure",
        "digest_prefix",
        "label",
        "max_bytes",
        "memo",
        "name",
        "names",
        "pending_closure",
        "prefix",
        "resolved",
        "secret",
    )

    def __init__(self, name: str, names: tuple[str, ...], resolve: Callable[[], None]) -> None:
        self.name = name  # the function's, for errors
        self.names = names  # the parameters whose values key a call
        self._resolve = weakref.WeakMethod(resolve)
        #: The settings version the parts below were settled at (see config.settings_version).
        self.resolved = -1
        self.max_bytes = DEFAULT_MAX_KEY_BYTES
        self.prefix = ""  # "namespace:label": every Redis key of the function begins with it
        self.digest_prefix = b""  # what a digest covers besides the call: format, label, closure
        self.secret: bytes | None = None  # with signing keys, digests are keyed too (see digest)
        self.memo: dict[Hashable, str] = {}
        #: How the function is named in Redis: its label, "~" and its closure's tag if it has one.
        self.label = name
        self.closure = Closure()
        #: A closure that could not be read yet (see identity): read at the first Redis key.
        self.pending_closure: Callable[[], Closure] | None = None

    def identify(self, label: str, closure: Closure | Callable[[], Closure]) -> None:
        """Name the function in Redis: ``label`` and, for a factory's function, its closure.

        A factory's functions share a label; their free variables (see identity) tell them
        apart: a tag in the key prefix, and the whole encoding in every digest. A closure that
        cannot be read yet (a callable) is read when the first Redis key is needed.
        """
        self.pending_closure = closure if callable(closure) else None
        self.closure = Closure() if callable(closure) else closure
        known = self.closure.encoding
        self.label = f"{label}~{closure_tag(known)}" if known else label
        prefix = f"{KEY_FORMAT}|{self.label}|{','.join(self.names)}|".encode()
        self.digest_prefix = prefix + known + b"|" if known else prefix

    def settle(self, prefix: str, max_bytes: int, secret: bytes | None) -> None:
        """Take the parts the process settings now give keys (the cache calls this as it resolves)."""
        self.prefix, self.max_bytes, self.secret = prefix, max_bytes, secret
        # A new memo, after the parts: a key another thread is making from the old parts goes
        # into the old memo (see remember), never into this one.
        self.memo = {}
        self.resolved = _config.settings_version

    def _refresh(self) -> None:
        resolve = self._resolve()
        if resolve is not None:  # (None: the cache is gone, and with it whoever asks)
            resolve()

    def l1_key(self, key_values: tuple[Any, ...]) -> tuple[Hashable, bytes | None]:
        """Return a call's L1 key as the generated fast path builds it, and its encoding.

        The canonical encoding is None when the key did not need one (all exact types, or flat
        containers of them: see shallow_key).
        """
        for value in key_values:
            if type(value) not in EXACT_TYPES:
                break
        else:  # (a call checks such a key's size: see check_raw)
            return (key_values[0] if len(key_values) == 1 else key_values), None
        shallow = shallow_key(key_values)
        if shallow is not None:
            return shallow, None
        return self.canonical_l1_key(key_values)

    def canonical_l1_key(self, key_values: tuple[Any, ...]) -> tuple[Hashable, bytes]:
        """Return the L1 key of a call whose key values are neither exact nor shallow, and its encoding.

        (The fast path calls this once it has found so itself: l1_key would look again.)
        """
        canonical = self.canonical(key_values)
        # Raw keys are scalars (one key value) or tuples (several): bytes and 1-tuples never
        # compare equal to those, so canonical keys cannot collide with raw ones.
        return ((canonical,) if len(key_values) == 1 else canonical), canonical

    def canonical(self, key_values: tuple[Any, ...]) -> bytes:
        """Return the canonical encoding of a call's key values (raises for unkeyable ones)."""
        if self.resolved != _config.settings_version:
            self._refresh()
        return canonical_bytes(key_values, self.names, self.name, self.max_bytes)

    def check_raw(self, key_values: tuple[Any, ...]) -> None:
        """Raise UnkeyableArgumentError if key values used as they are (str, bytes...) are too long.

        (A raw L1 key is never encoded, so its size is checked here, before anything is kept.)
        """
        if self.resolved != _config.settings_version:
            self._refresh()
        size = 0
        for value in key_values:
            if type(value) is str or type(value) is bytes:
                size += len(value)
            elif type(value) is not int and value is not None:
                self.canonical(key_values)  # a container (a shallow key): its encoding decides
                return
        if size > self.max_bytes:
            self.canonical(key_values)  # raises, naming the argument at fault

    def redis_key_for(self, key_values: tuple[Any, ...], canonical: bytes | None = None) -> str:
        """Return the Redis key of the call with these key values (``canonical``: their encoding)."""
        if self.resolved != _config.settings_version:
            self._refresh()
        return self.named(canonical if canonical is not None else self.canonical(key_values))

    def named(self, canonical: bytes) -> str:
        """Return the Redis key of the call whose key values encode as ``canonical``."""
        return f"{self.prefix}:{digest(canonical, self.digest_prefix, self.secret)}"

    def remember(self, l1_key: Hashable, canonical: bytes) -> str:
        """Return the Redis key of the call of ``l1_key`` (encoded: ``canonical``), memoized by it."""
        memo = self.memo  # (taken before the parts are read: see settle)
        key = self.named(canonical)
        if len(memo) >= REDIS_KEY_MEMO:
            memo.clear()
        memo[l1_key] = key
        return key
