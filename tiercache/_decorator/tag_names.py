"""Tag names: what ``tags=`` may be, the digests tags are known by, and who hears of them.

The leaf of tagging (``tags`` holds the invalidation): a function's cache asks it which tags a
call carries, and keeps a listener that drops its entries when another process invalidates one.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, TypeGuard

from tiercache._l1.lru import LocalCache
from tiercache._l2.envelope import MAX_TAGS, TOKEN_SIZE, new_token
from tiercache._l2.layout import TAG_SEGMENT, hex_digest
from tiercache._l2.signing import Signer

__all__ = [
    "TAG_FLOOR",
    "TOKENS",
    "TagListener",
    "TagNotes",
    "TagSpec",
    "TokenMemory",
    "checked_names",
    "digest_of",
    "tag_key",
]

#: Seconds a tag's token lives at least. An entry outliving its tags' keys is a miss, so this
#: only bounds how often a long-lived entry is recomputed; each writer lengthens it to its own
#: entries' lifetime when it claims a token.
TAG_FLOOR: Final = 86400.0


def digest_of(tag: str, secret: bytes | None = None) -> str:
    """Return the 32 hex characters a tag is known by in Redis and in announcements.

    Keyed by ``secret`` (the process's oldest signing key) when there is one, as argument
    digests are: unkeyed, ``user:742113`` was found among a million ids in a second.
    """
    return hex_digest(tag.encode("utf-8"), key=secret or b"", person=b"tiercache-tag")


def tag_key(namespace: str, digest: str) -> str:
    """Return the Redis key of the tag with ``digest`` in ``namespace``."""
    return f"{namespace}:{TAG_SEGMENT}:{digest}"


class TokenMemory:
    """The tag tokens this process read lately, and those it then saw an invalidation replace.

    Tokens are random and never come back: one that an invalidation replaced and that Redis
    holds again was planted back (with the entries saved under it, one 8-byte SET revived 90 of
    100 revoked entries). A process that read the token before the invalidation knows it.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        # tag key -> the token read last, and when it was first read (monotonic seconds)
        self._last: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._replaced: OrderedDict[str, deque[bytes]] = OrderedDict()  # tag key -> tokens gone
        self._lock = threading.Lock()

    def read(self, key: str, token: bytes) -> None:
        """Remember ``token`` as what the tag at ``key`` held when read."""
        with self._lock:
            known = self._last.get(key)
            if known is None or known[0] != token:
                self._last[key] = (token, time.monotonic())
            self._last.move_to_end(key)
            if len(self._last) > self._size:
                self._last.popitem(last=False)

    def replaced(self, key: str, *, first_read_before: float | None = None) -> None:
        """Retire the token read last at ``key``: an invalidation replaced it for good.

        ``first_read_before``: only if it was first read before then. An announcement comes a
        moment after the token changed in Redis; a token first read since is the new one.
        """
        with self._lock:
            known = self._last.get(key)
            if known is None or (first_read_before is not None and known[1] > first_read_before):
                return
            del self._last[key]
            gone = self._replaced.setdefault(key, deque(maxlen=8))
            gone.append(known[0])
            self._replaced.move_to_end(key)
            if len(self._replaced) > self._size:
                self._replaced.popitem(last=False)

    def planted_back(self, key: str, token: bytes) -> bool:
        """Whether ``token`` is one an invalidation replaced at ``key``."""
        with self._lock:
            return token in self._replaced.get(key, ())

    def genuine(self, token: object, *, at: str) -> TypeGuard[bytes]:
        """Whether ``token``, read at tag key ``at``, can be its token: one, and not planted back."""
        return isinstance(token, bytes) and len(token) == TOKEN_SIZE and not self.planted_back(at, token)


#: An announcement that a tag changed retires the token read last only if it was first read at
#: least this many seconds before (see TokenMemory.replaced): the bound on an announcement's way.
ANNOUNCED_WITHIN: Final = 1.0
#: This process's memory of tag tokens (tags are shared by every function of a namespace).
TOKENS: Final = TokenMemory()


def checked_names(tags: object, where: str) -> tuple[str, ...]:
    """Return ``tags`` as a tuple of tag names; else raise, the message starting with ``where``."""
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"{where} must be a list of tag names (str), not {type(tags).__name__}")
    names = tuple(tags)
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where} must hold non-empty str tag names, not {name!r}")
    if len(set(names)) > MAX_TAGS:
        raise ValueError(f"{where} holds {len(set(names))} tags; an entry carries {MAX_TAGS} at most")
    return names


def _parameters(function: Callable[..., object]) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return ()


class TagSpec:
    """What ``tags=`` says: fixed names, or a function of the call's arguments returning them."""

    __slots__ = ("_digests", "_function", "_label", "_names", "_secret")

    def __init__(self, tags: Callable[..., Iterable[str]] | tuple[str, ...], label: str) -> None:
        self._label = label
        self._function = tags if callable(tags) else None
        self._names: tuple[str, ...] = () if callable(tags) else tags
        self._secret: bytes | None = None
        self._digests = tuple(sorted({digest_of(name) for name in self._names}))

    def key_with(self, secret: bytes | None) -> None:
        """Key the tags' digests with ``secret`` (the settings' oldest signing key), or not."""
        if secret != self._secret:
            self._secret = secret
            self._digests = tuple(sorted({digest_of(name, secret) for name in self._names}))

    @classmethod
    def checked(cls, tags: object, owner: str) -> Callable[..., Iterable[str]] | tuple[str, ...] | None:
        """Return ``tags=`` as given if it is one; else raise naming ``owner`` (the decorator)."""
        if tags is None:
            return None
        if callable(tags):
            if "result" in _parameters(tags):
                raise TypeError(
                    f"{owner}: tags is called with the function's arguments, before it runs: a tag "
                    "that depends on the result could only be read after the run, when an "
                    "invalidation during the run can no longer be told apart (derive it from the "
                    "arguments instead)"
                )
            return tags
        return checked_names(tags, f"{owner}: tags")

    def digests(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> tuple[str, ...]:
        """Return the digests of the tags of a call with these arguments, sorted (its tag block's order)."""
        if self._function is None:
            return self._digests
        names = self._function(*args, **(kwargs or {}))
        function = getattr(self._function, "__name__", "function")
        where = f"{self._label}: tags={function}() returned a value that"
        return tuple(sorted({digest_of(name, self._secret) for name in checked_names(names, where)}))

    def may_carry(self, digests: Sequence[str]) -> bool:
        """Whether entries of this function may carry any of ``digests``."""
        return self._function is not None or any(d in self._digests for d in digests)


class TagNotes:
    """Which L1 keys were noted under each tag digest, so that an invalidation finds them.

    A note made while an invalidation takes the notes away lands either in what it takes
    (dropped now) or in what is left (dropped by its second look): both happen under one lock.
    Past a bound the notes keep only the keys L1 holds, and ``lose_track`` runs before the lock
    is let go, so no invalidation can look between the pruning and the voiding of the leases
    of calls under way whose notes were let go.
    """

    __slots__ = ("_by_tag", "_count", "_local", "_lock")

    def __init__(self, local: LocalCache) -> None:
        self._by_tag: dict[str, set[Hashable]] = {}
        self._count = 0  # notes made since the last pruning (keys L1 let go stay noted till then)
        self._lock = threading.Lock()
        self._local = local  # (what it holds is what pruning keeps)

    def __len__(self) -> int:
        return sum(map(len, self._by_tag.values()))

    def after_fork(self) -> None:
        """Replace the lock a thread of the parent may have held when it forked."""
        self._lock = threading.Lock()

    def note(self, tags: Sequence[str], l1_key: Hashable, lose_track: Callable[[], None]) -> None:
        """Note ``l1_key`` under each of ``tags``; past the bound, prune and call ``lose_track``."""
        with self._lock:
            notes = self._by_tag
            for tag in tags:
                keys = notes.get(tag)
                if keys is None:
                    keys = notes[tag] = set()
                if l1_key not in keys:
                    keys.add(l1_key)
                    self._count += 1
            if self._count > 2 * self._local.max_entries + 1024:
                held = self._local.data
                self._by_tag = {d: kept for d, keys in notes.items() if (kept := keys & held.keys())}
                self._count = sum(map(len, self._by_tag.values()))
                lose_track()

    def noted(self, tag: str, l1_key: Hashable) -> bool:
        """Whether ``l1_key`` is noted under ``tag``."""
        return l1_key in self._by_tag.get(tag, ())

    def take(self, tags: Sequence[str]) -> set[Hashable]:
        """Return the keys noted under any of ``tags``, forgetting those notes."""
        keys: set[Hashable] = set()
        with self._lock:
            for tag in tags:
                keys |= self._by_tag.pop(tag, set())
        return keys


class TagListener:
    """A tagged function's ear on its namespace's channel: announcements there name tag digests."""

    def __init__(self, namespace: str, drop: Callable[[Sequence[str]], None], signer: Signer | None) -> None:
        self.key_prefix = f"{namespace}:tag"  # what tag announcements name as their cache
        self.namespace = namespace
        # Its own: a listener hears every tag announcement, this process's too (a second drop
        # of what the invalidation dropped already), so no origin can be shared by mistake, as
        # one inherited through fork() would be.
        self.origin = new_token()
        self.signer = signer
        self._drop = drop

    def drop_local(self, keys: Sequence[Hashable] | None, *, keep_stale: bool = False) -> None:
        """Do nothing: the function follows the channel itself, and a lost one flushes it."""

    def drop_announced(self, digests: Sequence[str]) -> None:
        """Drop what the function keeps under those tags (invalidated in another process)."""
        first_read_before = time.monotonic() - ANNOUNCED_WITHIN
        for digest in digests:
            TOKENS.replaced(tag_key(self.namespace, digest), first_read_before=first_read_before)
        self._drop(digests)

    def set_deaf(self, deaf: bool) -> None:
        """Do nothing: the function shortens its own L1 lifetimes while deaf."""
