"""What tells apart two functions one factory made: the values of their free variables.

``make_getter("users")`` and ``make_getter("orders")`` both return ``module.make_getter.<locals>.get``
with the same parameters; only the closure (``table``) differs. Its canonical encoding, read once
when the function is decorated, joins the function's identity, so the two never share Redis keys,
in one process or in many. Pure: knows nothing of caches or Redis.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable
from typing import Any, Final

from tiercache._decorator.keys import encoding_of

__all__ = ["NotAssignedYet", "UnnamedClosureError", "closure_identity", "closure_tag", "identity_of"]

#: Functions held by free variables are followed this deep (their own free variables count too).
_MAX_NESTING: Final = 8


class UnnamedClosureError(Exception):
    """A free variable has no stable encoding: functions sharing this code cannot be told apart."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class NotAssignedYet(UnnamedClosureError):
    """A free variable is assigned after the function (a helper defined below it): ask again later."""


def identity_of(
    function: Callable[..., Any], label: str, *, shared: bool, named: bool, versioned: bool, limit: int
) -> bytes | Callable[[], bytes]:
    """Return what tells ``function`` apart from others its factory made (b"": nothing needed).

    Only Redis is shared (``shared``: the function has an L2): an L1-only function is told apart
    by being another object, and a function given a ``name=`` (``named``) is what that name says.
    Otherwise its free variables are read: now, or (a callable returned) at its first call if
    one is assigned after it, such as a helper defined below it. One without an encoding is a
    TypeError naming ``label``, unless ``version=`` (``versioned``) stands for them.
    """
    if not shared or named:
        return b""
    if getattr(function, "__name__", None) == "<lambda>":
        raise TypeError(
            f"{label}: a lambda has no name of its own (every lambda of a module shares "
            "'<module>.<lambda>', so their Redis keys would collide); pass name=... or use a def"
        )

    def unnamed(exc: UnnamedClosureError) -> bytes:
        if versioned:
            return b""
        raise TypeError(
            f"{label}: its free variable {exc.variable!r} has no stable encoding ({exc.reason}), "
            "so functions made by the same factory could not be told apart in Redis (each would "
            "read what the others wrote). Pass name=... or version=..., distinct for each "
            "function the factory makes (version=table, say): it then stands for the free variables"
        ) from None

    def read() -> bytes:
        try:
            return closure_identity(function, limit)
        except UnnamedClosureError as exc:
            return unnamed(exc)

    try:
        return closure_identity(function, limit)
    except NotAssignedYet:
        return read  # read at the first call that needs a Redis key
    except UnnamedClosureError as exc:
        return unnamed(exc)


def closure_identity(function: Callable[..., Any], limit: int) -> bytes:
    """Return the canonical encoding of ``function``'s free variables (b"" when it has none).

    The function under other decorators (``__wrapped__``) is the one read: its closure holds
    what the factory captured. Raise UnnamedClosureError when a value has no encoding.
    """
    try:
        inner = inspect.unwrap(function)
    except ValueError:  # a __wrapped__ cycle: the outer function is all there is
        inner = function
    return _closure_of(inner, 0, limit, {id(inner)})


def closure_tag(identity: bytes) -> str:
    """Return the short hex tag that marks a closure's identity in labels and Redis keys."""
    return hashlib.blake2b(identity, digest_size=6).hexdigest()


def _closure_of(function: Any, depth: int, limit: int, seen: set[int]) -> bytes:
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
        encoded = _value_of(variable, value, depth, limit, seen)
        parts.append(variable.encode() + b"=" + encoded)
    return b"\x00".join(parts)


def _value_of(variable: str, value: Any, depth: int, limit: int, seen: set[int]) -> bytes:
    cache = getattr(value, "__tiercache__", None)
    if cache is not None:  # another cached function: its key label carries its own identity
        return b"c" + str(cache.key_label).encode()
    if isinstance(value, types.FunctionType):
        name = f"{value.__module__}.{value.__qualname__}".encode()
        if id(value) in seen or depth >= _MAX_NESTING:
            return b"f" + name
        return b"f" + name + b"(" + _closure_of(value, depth + 1, limit, seen | {id(value)}) + b")"
    named = _builtin_name(value)
    if named is not None:
        return named.encode()
    encoded, reason = encoding_of(value, limit)
    if encoded is None:
        raise UnnamedClosureError(variable, reason)
    return encoded


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
