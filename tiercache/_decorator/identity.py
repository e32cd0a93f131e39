"""What tells apart two functions one factory made: the values of their free variables.

``make_getter("users")`` and ``make_getter("orders")`` both return ``module.make_getter.<locals>.get``
with the same parameters; only the closure (``table``) differs. Its canonical encoding, read once
when the function is decorated, joins the function's identity, so the two never share Redis keys,
in one process or in many. A free variable without an encoding (a client, a lock) joins it by its
type alone; two live functions that differ only there are told apart by the registry, which
refuses the second (see registry.register). Pure: knows nothing of caches or Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import inspect
import logging
import os
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from tiercache._decorator.keys import encoding_of

__all__ = [
    "Closure",
    "NotAssignedYet",
    "UnnamedClosureError",
    "closure_identity",
    "closure_tag",
    "identity_of",
]

#: Functions held by free variables are followed this deep (their own free variables count too).
_MAX_NESTING: Final = 8
#: A closure's encoding longer than this joins digests as its own digest (a 2 MB constant would
#: otherwise be hashed again with every key).
INLINE_IDENTITY: Final = 1024
#: A captured number or datetime this close to now looks like a start time (see per_process).
_RECENT: Final = 30 * 86400.0
#: Process ids below this are too common as constants to be taken for one (Linux hands out
#: pids from 300 once they wrap; a container's first processes are 1, 7, 8...).
_LOWEST_PID: Final = 300
#: Objects without an encoding that never change what a function returns: two functions of one
#: factory that differ only there compute the same thing (each call of the factory makes a lock).
_NEUTRAL: Final = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Event,
    threading.Condition,
    threading.Semaphore,
    threading.Barrier,
    asyncio.Lock,
    asyncio.Event,
    asyncio.Condition,
    asyncio.Semaphore,
    logging.Logger,
    logging.LoggerAdapter,
)


class UnnamedClosureError(Exception):
    """A free variable has no stable encoding: functions sharing this code cannot be told apart."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class NotAssignedYet(UnnamedClosureError):
    """A free variable is assigned after the function (a helper defined below it): ask again later."""


@dataclass(frozen=True)
class Closure:
    """What a function's free variables make of its identity."""

    #: Their canonical encoding (b"": none, or none read); one without an encoding by its type.
    encoding: bytes = b""
    #: The free variables that joined by their value, and those that joined by their type only.
    joined: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()
    #: The opaque ones that can change what the function returns (a client, not a lock), with
    #: their objects: two live functions that differ there are refused (see registry.register).
    objects: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    #: "'variable' what" for each value that looks like this process's own (see per_process).
    per_process: tuple[str, ...] = ()


def identity_of(
    function: Callable[..., Any], label: str, *, shared: bool, named: bool
) -> Closure | Callable[[], Closure]:
    """Return what tells ``function`` apart from others its factory made (an empty Closure: nothing).

    Only Redis is shared (``shared``: the function has an L2): an L1-only function is told apart
    by being another object, and a function given a ``name=`` (``named``) is what that name says.
    Otherwise its free variables are read: now, or (a callable returned) at its first call if
    one is assigned after it, such as a helper defined below it.
    """
    if not shared or named:
        return Closure()
    if getattr(function, "__name__", None) == "<lambda>":
        raise TypeError(
            f"{label}: a lambda has no name of its own (every lambda of a module shares "
            "'<module>.<lambda>', so their Redis keys would collide); pass name=... or use a def"
        )
    try:
        return read_closure(function)
    except NotAssignedYet:
        return lambda: read_closure(function)  # read at the first call that needs a Redis key


def read_closure(function: Callable[..., Any]) -> Closure:
    """Return what ``function``'s free variables make of its identity.

    The function under other decorators (``__wrapped__``) is the one read: its closure holds
    what the factory captured. Raise NotAssignedYet if one is not assigned yet.
    """
    try:
        inner = inspect.unwrap(function)
    except ValueError:  # a __wrapped__ cycle: the outer function is all there is
        inner = function
    reading = _Reading()
    encoding = _closure_of(inner, 0, reading, {id(inner)})
    if len(encoding) > INLINE_IDENTITY:
        encoding = b"#" + hashlib.blake2b(encoding, digest_size=32).digest()
    return Closure(
        encoding,
        tuple(reading.joined),
        tuple(name for name, _ in reading.opaque),
        tuple((name, value) for name, value in reading.opaque if not isinstance(value, _NEUTRAL)),
        tuple(reading.per_process),
    )


def closure_identity(function: Callable[..., Any]) -> bytes:
    """Return the canonical encoding of ``function``'s free variables (b"" when it has none)."""
    return read_closure(function).encoding


class _Reading:
    """What reading one closure found, besides its encoding."""

    def __init__(self) -> None:
        self.joined: list[str] = []
        self.opaque: list[tuple[str, object]] = []
        self.per_process: list[str] = []


def closure_tag(identity: bytes) -> str:
    """Return the short hex tag that marks a closure's identity in labels and Redis keys."""
    return hashlib.blake2b(identity, digest_size=6).hexdigest()


def _closure_of(function: Any, depth: int, reading: _Reading, seen: set[int]) -> bytes:
    code = getattr(function, "__code__", None)
    cells = getattr(function, "__closure__", None)
    if code is None or not cells:
        return b""
    parts: list[bytes] = []
    for variable, cell in zip(code.co_freevars, cells, strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # assigned only later
            if variable == getattr(function, "__name__", None):
                continue  # a nested function calling itself by name: its own identity
            raise NotAssignedYet(variable, "it is not assigned yet") from None
        encoded = _value_of(variable, value, depth, reading, seen)
        parts.append(variable.encode() + b"=" + encoded)
    return b"\x00".join(parts)


def _value_of(variable: str, value: Any, depth: int, reading: _Reading, seen: set[int]) -> bytes:
    cache = getattr(value, "__tiercache__", None)
    if cache is not None:  # another cached function: its key label carries its own identity
        return b"c" + str(cache.keys.label).encode()
    if isinstance(value, types.FunctionType):
        name = f"{value.__module__}.{value.__qualname__}".encode()
        if id(value) in seen or depth >= _MAX_NESTING:
            return b"f" + name
        return b"f" + name + b"(" + _closure_of(value, depth + 1, reading, seen | {id(value)}) + b")"
    named = _builtin_name(value)
    if named is not None:
        return named.encode()
    encoded, _ = encoding_of(value, sys.maxsize)  # (any size: a long identity is digested)
    if encoded is None:  # a client, a lock: by its type; the registry tells such twins apart
        if depth == 0:
            reading.opaque.append((variable, value))
        return b"?" + f"{type(value).__module__}.{type(value).__qualname__}".encode()
    if depth == 0:
        reading.joined.append(variable)
        looks = per_process(value)
        if looks:
            reading.per_process.append(f"{variable!r} {looks}")
    return encoded


def per_process(value: Any, depth: int = 0) -> str:
    """Say what in ``value`` looks like this process's own (a start time, its pid, a random token).

    Such a value in a function's identity gives each process keys of its own: none shares
    another's entries, nor hears its invalidations. "" when nothing looks so.
    """
    if depth < 3 and isinstance(value, (dict, list, tuple)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return next(
            (f"[{at!r}] {found}" for at, item in items if (found := per_process(item, depth + 1))), ""
        )
    kind = _looks_like(value)
    return f"holds {value!r}, {kind}" if kind else ""


def _looks_like(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == os.getpid() and value >= _LOWEST_PID:
            return "this process's id"
        now = time.time()
        recent = any(abs(value / scale - now) < _RECENT for scale in (1, 1e3, 1e6, 1e9))
        return "a time of late" if recent else ""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return "a time of late" if abs(moment.timestamp() - time.time()) < _RECENT else ""
    if isinstance(value, uuid.UUID) and value.version == 4:
        return "a random UUID"
    return ""


def _builtin_name(value: Any) -> str | None:
    """Name a module, a builtin function, a method of a builtin type or a classmethod; else None."""
    if isinstance(value, types.ModuleType):
        return f"M{value.__name__}"
    if isinstance(value, (types.MethodDescriptorType, types.WrapperDescriptorType)):  # str.upper
        return f"B{value.__objclass__.__module__}.{value.__qualname__}"
    if isinstance(value, (types.BuiltinFunctionType, types.MethodType)):
        owner = value.__self__
        if isinstance(owner, type):  # a classmethod, bound to its class
            return f"B{owner.__module__}.{owner.__qualname__}.{value.__qualname__}"
        if owner is None or isinstance(owner, types.ModuleType):  # len, os.getpid
            return f"B{getattr(owner, '__name__', '')}.{value.__qualname__}"
    return None
