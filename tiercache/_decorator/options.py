"""``tiered_cache``'s options: each one's name, default and check, defined here and only here.

The decorator's overloads repeat the names with their types (for type checkers); everything
else (the function cache, ``cache_parameters()``) reads an ``Options`` whole.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tiercache._core.checks import check_bool, check_fraction, check_namespace, check_seconds, check_size
from tiercache._decorator.policies import Seconds
from tiercache._decorator.tag_names import TagSpec
from tiercache._l1.lru import L1_POLICIES, Clock
from tiercache._l2.layout import RESERVED_LABELS
from tiercache._l2.signing import signing_keys
from tiercache._l2.urls import check_url

__all__ = ["DEFAULT_LOCK_SECONDS", "OWNER", "POSITIONAL", "Options"]

OWNER: Final = "tiered_cache()"
#: ``lock=True``: how long the computing process holds a cold key, and others wait for it.
DEFAULT_LOCK_SECONDS: Final = 2.0
#: The options that may also be given by position, in order.
POSITIONAL: Final = ("ttl_l1", "ttl_l2")
#: ``field(metadata=HIDDEN)``: left out of ``cache_parameters()`` (a secret, or not an option's value).
HIDDEN: Final = {"shown": False}


@dataclass(frozen=True)
class Options:
    """The checked options of one ``@tiered_cache`` (see its docstring for what each means)."""

    ttl_l1: Seconds = 600
    ttl_l2: Seconds = 86400
    stale_ttl: float | None = None
    #: Keep a result only if this says so (``tiercache.NOT_NONE``: every result but None).
    cache_if: Callable[[Any], object] | None = None
    #: Take up to this fraction off each TTL, at random, so entries written together expire apart.
    ttl_jitter: float = 0.0
    #: Refresh an entry in the background when a hit finds it in this last fraction of its life.
    refresh_ahead: float | None = None
    #: Seconds a caller waits for the function before it gets the stale value instead.
    timeout: float | None = None
    #: Seconds a caller waits for the function at most: then TimeoutError (the run goes on).
    hard_timeout: float | None = None
    #: Tag names, or a function of the call's arguments returning them (see tiercache.invalidate_tags).
    tags: tuple[str, ...] | Callable[..., Any] | None = None
    #: Seconds a cold key's lock is held (``lock=True``: DEFAULT_LOCK_SECONDS); None: no lock.
    lock: float | None = None
    max_entries: int = 1000
    max_bytes: int | None = None
    l1_policy: str = "lru"
    namespace: str | None = None
    key: Callable[..., Any] | None = field(default=None, metadata=HIDDEN)
    ignore: frozenset[str] = frozenset()
    version: str | None = None
    name: str | None = None
    enabled: bool = True
    coherent: bool = True
    redis_url: str | None = field(default=None, metadata=HIDDEN)
    #: Keys newest first; None: the process setting.
    signing_key: tuple[bytes, ...] | None = field(default=None, metadata=HIDDEN, repr=False)
    max_value_bytes: int | None = field(default=None, metadata=HIDDEN)
    #: What hands each caller its own copy (``copy=True``: ``copy.deepcopy``); None: no copies.
    copy: Callable[[Any], Any] | None = None
    clock: Clock | None = field(default=None, metadata=HIDDEN)

    @classmethod
    def checked(cls, given: Mapping[str, Any]) -> Options:
        """Return the options ``given`` names, checked; each error names the option at fault."""
        unknown = set(given) - _NAMES
        if unknown:
            raise TypeError(f"{OWNER}: unknown option(s) {sorted(unknown)}; the options are {sorted(_NAMES)}")
        options = cls(**{name: _CHECKS[name](value) for name, value in given.items()})
        return options._checked_together()

    def _checked_together(self) -> Options:
        if self.timeout is not None and self.hard_timeout is not None and self.hard_timeout < self.timeout:
            raise ValueError(
                f"{OWNER}: hard_timeout ({self.hard_timeout:g}) is shorter than timeout ({self.timeout:g}); "
                "a caller would never get the stale value"
            )
        if self.ttl_l1 is None and self.ttl_l2 is None:
            raise ValueError(f"{OWNER}: ttl_l1 and ttl_l2 are both None, so nothing would be cached")
        if self.lock is not None and self.ttl_l2 is None:
            raise ValueError(
                f"{OWNER}: lock needs L2 (processes coordinate through Redis), but ttl_l2 is None"
            )
        if self.key is not None and self.ignore:
            raise ValueError(f"{OWNER}: pass key= or ignore=, not both (a key function sees every argument)")
        return self

    def shown(self, name: str) -> dict[str, Any]:
        """Return what ``cache_parameters()`` shows: every option but secrets and callables' internals."""
        shown = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("shown", True)
        }
        shown["name"] = name
        shown["ignore"] = sorted(self.ignore)
        return shown


def _optional_seconds(name: str) -> Callable[[Any], float | None]:
    return lambda value: check_seconds(value, name, OWNER, optional=True)


def _ttl(name: str) -> Callable[[Any], Seconds]:
    # Seconds, None, or a function of the result returning either (checked when it answers).
    return lambda value: value if callable(value) else check_seconds(value, name, OWNER, optional=True)


def _fraction(name: str, *, optional: bool) -> Callable[[Any], float | None]:
    # ttl_jitter may be 0 (off); refresh_ahead is off as None, so 0 would be a mistake.
    return lambda value: (
        None if value is None and optional else check_fraction(value, name, OWNER, zero=not optional)
    )


def _cache_if(predicate: Any) -> Callable[[Any], object] | None:
    if predicate is not None and not callable(predicate):
        raise TypeError(
            f"{OWNER}: cache_if must be a function of the result returning whether to keep it "
            f"(or tiercache.NOT_NONE), not {type(predicate).__name__}"
        )
    return predicate  # type: ignore[no-any-return]


def _optional_size(name: str) -> Callable[[Any], int | None]:
    return lambda value: None if value is None else check_size(value, name, OWNER)


def _flag(name: str) -> Callable[[Any], bool]:
    return lambda value: check_bool(value, name, OWNER)


def _lock(lock: Any) -> float | None:
    if lock is False or lock is None:
        return None
    return check_seconds(DEFAULT_LOCK_SECONDS if lock is True else lock, "lock", OWNER)


def _max_entries(max_entries: Any) -> int:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int):
        raise TypeError(f"{OWNER}: max_entries must be an int, not {type(max_entries).__name__}")
    if max_entries < 1:
        raise ValueError(f"{OWNER}: max_entries must be >= 1, not {max_entries} (use ttl_l1=None for no L1)")
    return max_entries


def _l1_policy(policy: Any) -> str:
    if policy not in L1_POLICIES:
        raise ValueError(f"{OWNER}: l1_policy must be one of {sorted(L1_POLICIES)}, not {policy!r}")
    return str(policy)


def _key(key: Any) -> Callable[..., Any] | None:
    if key is not None and not callable(key):
        raise TypeError(f"{OWNER}: key must be a callable, not {type(key).__name__}")
    return key  # type: ignore[no-any-return]


def _ignore(ignore: Any) -> frozenset[str]:
    names = (ignore,) if isinstance(ignore, str) else ignore
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(
            f"{OWNER}: ignore must be a parameter name or names, not {type(ignore).__name__}"
        ) from None
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"{OWNER}: ignore must hold parameter names, not {item!r}")
    return frozenset(names)


def _version(version: Any) -> str | None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise TypeError(f"{OWNER}: version must be a str or an int, not {type(version).__name__}")
    return None if version is None else str(version)


def _name(name: Any) -> str | None:
    if name is not None and (not isinstance(name, str) or not name or any(c.isspace() for c in name)):
        raise ValueError(f"{OWNER}: name must be a non-empty str without whitespace, not {name!r}")
    first = name.partition(":")[0] if name is not None else None
    if first in RESERVED_LABELS:
        raise ValueError(
            f"{OWNER}: name {name!r} is reserved: the keys of a namespace's {RESERVED_LABELS[first]} "
            f"start with <namespace>:{first}:, and a function of that name would share them"
        )
    return name


def _copy(copy: Any) -> Callable[[Any], Any] | None:
    if copy is True:
        return copy_module.deepcopy
    if copy is False or copy is None:
        return None
    if callable(copy):
        return copy  # type: ignore[no-any-return]
    raise TypeError(f"{OWNER}: copy must be a bool or a function returning a copy, not {type(copy).__name__}")


def _clock(clock: Any) -> Clock | None:
    if clock is not None and not callable(clock):
        raise TypeError(f"{OWNER}: clock must be a callable returning seconds, not {type(clock).__name__}")
    return clock  # type: ignore[no-any-return]


_CHECKS: Final[dict[str, Callable[[Any], Any]]] = {
    "ttl_l1": _ttl("ttl_l1"),
    "ttl_l2": _ttl("ttl_l2"),
    "stale_ttl": _optional_seconds("stale_ttl"),
    "cache_if": _cache_if,
    "ttl_jitter": _fraction("ttl_jitter", optional=False),
    "refresh_ahead": _fraction("refresh_ahead", optional=True),
    "timeout": _optional_seconds("timeout"),
    "hard_timeout": _optional_seconds("hard_timeout"),
    "lock": _lock,
    "tags": lambda tags: TagSpec.checked(tags, OWNER),
    "max_entries": _max_entries,
    "max_bytes": _optional_size("max_bytes"),
    "l1_policy": _l1_policy,
    "namespace": lambda namespace: None if namespace is None else check_namespace(namespace, OWNER),
    "key": _key,
    "ignore": _ignore,
    "version": _version,
    "name": _name,
    "enabled": _flag("enabled"),
    "coherent": _flag("coherent"),
    "redis_url": lambda url: None if url is None else check_url(url, OWNER),
    "signing_key": lambda key: None if key is None else signing_keys(key, OWNER),
    "max_value_bytes": _optional_size("max_value_bytes"),
    "copy": _copy,
    "clock": _clock,
}
_NAMES: Final = frozenset(_CHECKS)  # (a test holds them equal to Options' fields)
