"""Cached methods: ``self.lookup.cache_invalidate(key)`` binds ``self`` as ``self.lookup(key)`` does.

A plain function read from an instance becomes a ``types.MethodType``, whose attributes are its
function's: ``self.lookup.cache_invalidate`` would be the function's own, missing ``self``. So a
cached function defined in a class body that takes a positional parameter first (and one under
``@classmethod``, when ``@tiered_cache`` is the outer decorator) is put in the class as a
``CachedMethod``: read from an instance it gives a ``BoundCachedMethod``, a ``functools.partial``
of the wrapper (called in C, as a method is) whose ``cache_*`` methods take the instance first.
Read from the class, it gives the wrapper itself, as a function would: ``Repository.lookup``,
its signature, its pickling and its ``cache_*`` methods are unchanged.

The binding costs a Python-level ``__get__`` on every read from an instance (see
docs/performance.md); functions defined elsewhere stay plain functions.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final

__all__ = ["BOUND_METHODS", "BoundCachedMethod", "CachedMethod", "is_method"]

#: The ``cache_*`` methods that take the call's arguments, the instance first: bound per instance.
BOUND_METHODS: Final = frozenset(
    {"cache_key", "cache_invalidate", "cache_get", "cache_contains", "cache_set", "cache_warm"}
)


def is_method(function: Any, signature: inspect.Signature) -> bool:
    """Whether ``function`` is defined in a class body and takes a positional parameter first.

    Such a function is a method: read from an instance, Python would bind its first parameter,
    whatever its name (``self``, ``this``, a metaclass's ``cls``).
    """
    owner, _, _ = getattr(function, "__qualname__", "").rpartition(".")
    if not owner or owner.endswith("<locals>"):
        return False
    first = next(iter(signature.parameters.values()), None)
    return first is not None and first.kind in _POSITIONAL


_POSITIONAL: Final = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,  # (def method(*args): the instance is args[0])
)


class CachedMethod:
    """A cached function in a class: binds its instance, or its class (``on_class``), on reads.

    Everything but the binding is the wrapper's: its attributes read through, and calling the
    descriptor itself (inside the class body, or under ``@staticmethod``) calls the wrapper.
    """

    __slots__ = ("__func__", "_on_class")

    def __init__(self, wrapper: Callable[..., Any], *, on_class: bool = False) -> None:
        self.__func__ = wrapper
        self._on_class = on_class

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if self._on_class:
            return BoundCachedMethod(self.__func__, owner if owner is not None else type(instance))
        if instance is None:
            return self.__func__
        return BoundCachedMethod(self.__func__, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(*args, **kwargs)

    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        # A function to isinstance(), as wrapt's proxies are to their wrapped object's type:
        # tools that look for methods in a class's dict (unittest.mock's autospec, which drops
        # the receiver only from functions; documentation generators) find one here.
        return type(self.__func__)

    def __getattr__(self, name: str) -> Any:
        if name == "__func__":  # (not set yet: a copy being made)
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<cached method {self.__func__.__qualname__}>"


class BoundCachedMethod(functools.partial[Any]):
    """A cached method read from an instance (or a classmethod read from its class): bound.

    Called as the method is, and its ``cache_*`` methods take the call's arguments without the
    instance, as the call does: ``self.lookup.cache_invalidate("name")``. Equal to another for
    the same function and instance, as a bound method is.
    """

    __slots__ = ()

    @property
    def __self__(self) -> Any:
        return self.args[0]

    @property
    def __func__(self) -> Callable[..., Any]:
        return self.func

    @property
    def __signature__(self) -> inspect.Signature:
        # (without it, inspect would follow __wrapped__ to the unbound function, self and all)
        signature = inspect.signature(self.func)
        parameters = list(signature.parameters.values())
        if parameters[0].kind is not inspect.Parameter.VAR_POSITIONAL:
            del parameters[0]
        return signature.replace(parameters=parameters)

    @property  # (partial's is the class's docstring, not the function's)
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.func.__doc__

    def __getattr__(self, name: str) -> Any:
        if name in BOUND_METHODS:
            methods: dict[str, Any] = getattr(self.func, "__tiercache_bind__")(self.args[0])  # noqa: B009
            return methods[name]
        return getattr(self.func, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoundCachedMethod):
            return NotImplemented
        return self.func is other.func and self.args[0] is other.args[0]

    def __hash__(self) -> int:
        return hash((self.func, id(self.args[0])))

    def __repr__(self) -> str:
        return f"<bound cached method {self.func.__qualname__} of {self.args[0]!r}>"
