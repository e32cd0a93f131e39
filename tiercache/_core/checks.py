"""The argument checks and environment parsing both front ends share, each written once.

Every error names its owner (``tiered_cache()``, ``tiercache.configure()``, a settings class)
and the argument at fault, so a caller can tell which of several settings was wrong.
"""

from __future__ import annotations

import datetime
import math
import random
from typing import Final

__all__ = [
    "DEFAULT_COMPRESS_MIN_BYTES",
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_REDIS_URL",
    "MAX_SECONDS",
    "Duration",
    "as_seconds",
    "check_bool",
    "check_fraction",
    "check_int",
    "check_namespace",
    "check_seconds",
    "check_size",
    "milliseconds",
    "parse_flag",
    "parse_number",
    "shortening",
]

#: Where L2 lives unless configured otherwise.
DEFAULT_REDIS_URL: Final = "redis://localhost:6379/0"
#: Values whose encoding is larger stay in L1 only (configure(), the adapter settings).
DEFAULT_MAX_VALUE_BYTES: Final = 8 * 1024 * 1024
#: Bodies at least this long are compressed by default. Measured (docs/benchmarks.md): below
#: about 1 KB a JSON-like value shrinks by a few hundred bytes at most, while inflating costs a
#: fixed 3-4 µs, some 5% of a loopback hit; from 1 KB on it saves 60% and more of the bytes.
DEFAULT_COMPRESS_MIN_BYTES: Final = 1024
#: The longest lifetime there is (about 317 years): longer than anyone means, and well within
#: what Redis's PX and an entry's 64-bit deadline in milliseconds can hold.
MAX_SECONDS: Final = 10**10

#: Seconds, or a ``datetime.timedelta`` (as cashews and dogpile take them): every duration option.
Duration = float | datetime.timedelta

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def check_namespace(namespace: object, owner: str) -> str:
    """Return ``namespace`` if it can prefix Redis keys; else raise naming ``owner``."""
    if not isinstance(namespace, str):
        raise TypeError(f"{owner}: namespace must be a str, not {type(namespace).__name__}")
    if not namespace or any(ch.isspace() for ch in namespace):
        raise ValueError(f"{owner}: namespace must be non-empty and without whitespace, not {namespace!r}")
    return namespace


def as_seconds(value: object) -> object:
    """Return a ``datetime.timedelta`` as its seconds (as cashews and dogpile take TTLs); else ``value``."""
    return value.total_seconds() if isinstance(value, datetime.timedelta) else value


def check_seconds(value: object, name: str, owner: str, *, optional: bool = False) -> float | None:
    """Return ``value`` (seconds, or a timedelta) as positive seconds (or None where allowed)."""
    given, value = value, as_seconds(value)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        allowed = "a number of seconds (or a timedelta)" + (" or None" if optional else "")
        raise TypeError(f"{owner}: {name} must be {allowed}, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        hint = " (use None to turn this tier off)" if optional else ""
        raise ValueError(f"{owner}: {name} must be a finite number > 0, not {given!r}{hint}")
    if value > MAX_SECONDS:
        raise ValueError(
            f"{owner}: {name} must be at most {MAX_SECONDS:,} seconds (about 317 years), not {value!r}"
        )
    return float(value)


def milliseconds(seconds: float) -> int:
    """Return a lifetime as Redis's PX takes it: whole milliseconds, at least one.

    Rounded, 0.4 ms would be PX 0, which Redis refuses: the old value would stay where it was.
    """
    return max(1, math.ceil(seconds * 1000))


def check_fraction(value: object, name: str, owner: str, *, zero: bool = True) -> float:
    """Return ``value`` as a fraction, ``0 <= x < 1`` (``0 < x < 1`` without ``zero``); else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a fraction (0 <= x < 1), not {type(value).__name__}")
    if not 0 <= value < 1 or (not zero and value == 0):
        low = "0 <=" if zero else "0 <"
        raise ValueError(f"{owner}: {name} must be a fraction ({low} x < 1), not {value!r}")
    return float(value)


# Our own: drawing from the global one would move the application's seeded random sequence.
_RANDOM = random.Random()


def shortening(jitter: float) -> float:
    """Return what to multiply an entry's TTLs by for ``ttl_jitter``: 1 - up to ``jitter``, at random.

    Shortened, never lengthened: a TTL stays the longest a value is served. One draw serves
    every tier of an entry, so an L1 copy does not outlive its L2 one because of it.
    """
    return 1.0 - _RANDOM.random() * jitter if jitter else 1.0


def check_size(value: object, name: str, owner: str) -> int:
    """Return ``value`` as a positive whole number of bytes; else raise naming ``owner``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be a whole number of bytes, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be at least 1, not {value}")
    return value


def check_optional_size(value: object, name: str, owner: str) -> int | None:
    """Return ``value`` as a positive whole number of bytes, or None (off); else raise."""
    return None if value is None else check_size(value, name, owner)


def parse_optional_size(raw: str, variable: str, name: str, owner: str) -> int | None:
    """Return an environment variable's text as a size, or None for ``off``/``none``."""
    if raw.strip().lower() in {"off", "none"}:
        return None
    return check_size(parse_number(raw, variable, owner), name, owner)


def check_int(value: object, name: str, owner: str, low: int, high: int) -> int:
    """Return ``value`` if it is an int from ``low`` to ``high``; else raise naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be between {low} and {high}, not {value}")
    return value


def check_bool(value: object, name: str, owner: str) -> bool:
    """Return ``value`` if it is a bool; else raise naming ``owner``."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, not {type(value).__name__}")
    return value


def parse_flag(raw: str, variable: str, owner: str) -> bool:
    """Return the truth an environment variable's text spells (1/0, true/false, yes/no, on/off)."""
    lowered = raw.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(f"{owner}: {variable}={raw!r} is not one of 1/0, true/false, yes/no, on/off")


def parse_number(raw: str, variable: str, owner: str) -> float:
    """Return an environment variable's text as a number; else raise naming the variable."""
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{owner}: {variable}={raw!r} is not a number") from None
