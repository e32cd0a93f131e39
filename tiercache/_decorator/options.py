"""``tiered_cache``'s options: each one's name, default and check, defined here and only here.

The decorator's overloads repeat the names with their types (for type checkers); everything
else (the function cache, ``cache_parameters()``) reads an ``Options`` whole.
"""

from __future__ import annotations

import copy as copy_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiercache import _fields as fields
from tiercache._core.checks import check_fraction, check_namespace, check_seconds
from tiercache._decorator.policies import Seconds
from tiercache._decorator.tag_names import TagSpec
from tiercache._fields import Check, Kind, setting
from tiercache._l1.lru import Clock
from tiercache._l2.layout import RESERVED_LABELS

__all__ = ["DEFAULT_LOCK_SECONDS", "OWNER", "POSITIONAL", "Options"]

OWNER: Final = "tiered_cache()"
#: ``lock=True``: how long the computing process holds a cold key, and others wait for it.
DEFAULT_LOCK_SECONDS: Final = 2.0
#: The options that may also be given by position, in order.
POSITIONAL: Final = ("ttl_l1", "ttl_l2")


def _ttl(value: Any, name: str, owner: str) -> Seconds:
    # Seconds, None, or a function of the result returning either (checked when it answers).
    return value if callable(value) else check_seconds(value, name, owner, optional=True)


def _callable(what: str) -> Check:
    def check(value: Any, name: str, owner: str) -> Any:
        if value is not None and not callable(value):
            raise TypeError(f"{owner}: {name} must be {what}, not {type(value).__name__}")
        return value

    return check


def _lock(lock: Any, name: str, owner: str) -> float | None:
    if lock is False or lock is None:
        return None
    return check_seconds(DEFAULT_LOCK_SECONDS if lock is True else lock, name, owner)


def _max_entries(max_entries: Any, name: str, owner: str) -> int:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int):
        raise TypeError(f"{owner}: {name} must be an int, not {type(max_entries).__name__}")
    if max_entries < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, not {max_entries} (use ttl_l1=None for no L1)")
    return max_entries


def _ignore(ignore: Any, name: str, owner: str) -> frozenset[str]:
    names = (ignore,) if isinstance(ignore, str) else ignore
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(
            f"{owner}: {name} must be a parameter name or names, not {type(ignore).__name__}"
        ) from None
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"{owner}: {name} must hold parameter names, not {item!r}")
    return frozenset(names)


def _version(version: Any, name: str, owner: str) -> str | None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise TypeError(f"{owner}: {name} must be a str or an int, not {type(version).__name__}")
    return None if version is None else str(version)


def _name(value: Any, name: str, owner: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or any(c.isspace() for c in value)):
        raise ValueError(f"{owner}: {name} must be a non-empty str without whitespace, not {value!r}")
    first = value.partition(":")[0] if value is not None else None
    if first in RESERVED_LABELS:
        raise ValueError(
            f"{owner}: name {value!r} is reserved: the keys of a namespace's {RESERVED_LABELS[first]} "
            f"start with <namespace>:{first}:, and a function of that name would share them"
        )
    return value


def _copy(copy: Any, name: str, owner: str) -> Callable[[Any], Any] | None:
    if copy is True:
        return copy_module.deepcopy
    if copy is False or copy is None:
        return None
    if callable(copy):
        return copy  # type: ignore[no-any-return]
    raise TypeError(
        f"{owner}: {name} must be a bool or a function returning a copy, not {type(copy).__name__}"
    )


TTL: Final = Kind(_ttl)
OPTIONAL_SECONDS: Final = Kind(lambda value, name, owner: check_seconds(value, name, owner, optional=True))
# ttl_jitter may be 0 (off); refresh_ahead is off as None, so 0 would be a mistake.
REFRESH_FRACTION: Final = Kind(
    lambda value, name, owner: None if value is None else check_fraction(value, name, owner, zero=False)
)
OPTIONAL_NAMESPACE: Final = Kind(
    lambda value, name, owner: None if value is None else check_namespace(value, owner)
)


@dataclass(frozen=True)
class Options:
    """The checked options of one ``@tiered_cache`` (see its docstring for what each means)."""

    ttl_l1: Seconds = setting(600, TTL)
    ttl_l2: Seconds = setting(86400, TTL)
    stale_ttl: float | None = setting(None, OPTIONAL_SECONDS)
    #: Keep a result only if this says so (``tiercache.NOT_NONE``: every result but None).
    cache_if: Callable[[Any], object] | None = setting(
        None,
        Kind(_callable("a function of the result returning whether to keep it (or tiercache.NOT_NONE)")),
    )
    #: Take up to this fraction off each TTL, at random, so entries written together expire apart.
    ttl_jitter: float = setting(0.0, fields.FRACTION)
    #: Refresh an entry in the background when a hit finds it in this last fraction of its life.
    refresh_ahead: float | None = setting(None, REFRESH_FRACTION)
    #: Seconds a caller waits for the function before it gets the stale value instead.
    timeout: float | None = setting(None, OPTIONAL_SECONDS)
    #: Seconds a caller waits for the function at most: then TimeoutError (the run goes on).
    hard_timeout: float | None = setting(None, OPTIONAL_SECONDS)
    #: Tag names, or a function of the call's arguments returning them (see tiercache.invalidate_tags).
    tags: tuple[str, ...] | Callable[..., Any] | None = setting(
        None, Kind(lambda value, name, owner: TagSpec.checked(value, owner))
    )
    #: Seconds a cold key's lock is held (``lock=True``: DEFAULT_LOCK_SECONDS); None: no lock.
    lock: float | None = setting(None, Kind(_lock))
    max_entries: int = setting(1000, Kind(_max_entries))
    max_bytes: int | None = setting(None, fields.OPTIONAL_SIZE)
    l1_policy: str = setting("lru", fields.POLICY)
    namespace: str | None = setting(None, OPTIONAL_NAMESPACE)
    key: Callable[..., Any] | None = setting(None, Kind(_callable("a callable")), shown=False)
    ignore: frozenset[str] = setting(frozenset(), Kind(_ignore))
    version: str | None = setting(None, Kind(_version))
    name: str | None = setting(None, Kind(_name))
    enabled: bool = setting(True, fields.FLAG)
    coherent: bool = setting(True, fields.FLAG)
    redis_url: str | None = setting(None, fields.OPTIONAL_URL, shown=False)
    #: Keys newest first; None: the process setting.
    signing_key: tuple[bytes, ...] | None = setting(
        None, fields.OPTIONAL_SIGNING_KEYS, secret=True, shown=False
    )
    max_value_bytes: int | None = setting(None, fields.OPTIONAL_SIZE, shown=False)
    #: What hands each caller its own copy (``copy=True``: ``copy.deepcopy``); None: no copies.
    copy: Callable[[Any], Any] | None = setting(None, Kind(_copy))
    clock: Clock | None = setting(None, Kind(_callable("a callable returning seconds")), shown=False)

    @classmethod
    def checked(cls, given: Mapping[str, Any]) -> Options:
        """Return the options ``given`` names, checked; each error names the option at fault."""
        return cls(**fields.checked(cls, given, OWNER))._checked_together()

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
        shown = fields.shown(self)
        shown["name"] = name
        shown["ignore"] = sorted(self.ignore)
        return shown
