"""The types ``@tiered_cache`` gives a function: what type checkers see of it and its methods.

Protocols only: the wrapper is a generated plain function (see ``fastpath``) with ``cache_*``
attributes; these say so to mypy, with the function's own parameters and result.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, Final, Literal, NamedTuple, ParamSpec, Protocol, TypeVar, overload

from tiercache._core.stats import CacheStats
from tiercache._decorator.warming import Progress, WarmReport

__all__ = [
    "NO_VALUE",
    "AsyncBatchCachedFunction",
    "AsyncCachedFunction",
    "BatchCachedFunction",
    "BatchDecorator",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheInfo",
    "CachedFunction",
    "Decorator",
    "NoValue",
]

P = ParamSpec("P")
R = TypeVar("R")
# For binding: the owner (S), the parameters after it (Q) and the result (T) of a method.
S = TypeVar("S")
Q = ParamSpec("Q")
T = TypeVar("T")

#: mypy reads ``MYPY`` as always true, so it sees only the ``else`` branches below; pyright sees
#: both and keeps the first declaration. The two need ``__get__``'s self-type spelt differently
#: to bind a method: mypy matches a callable (``Callable[Concatenate[S, Q], T]``) strictly, where
#: the protocol itself would let it bind a staticmethod too; pyright matches only the protocol
#: itself. tests/unit/test_typing.py runs both over the same examples.
MYPY = False


class NoValue(enum.Enum):
    """The type of ``NO_VALUE``: what ``cache_get`` returns for a call with nothing cached."""

    NO_VALUE = "NO_VALUE"

    def __repr__(self) -> str:
        return "tiercache.NO_VALUE"

    __str__ = __repr__


#: ``f.cache_get(...)`` found nothing live (None is a value like any other, and may be cached).
NO_VALUE: Final = NoValue.NO_VALUE


class CacheInfo(NamedTuple):
    """``functools``-style summary: hits (either tier), misses, L1 bound and L1 size."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class BoundCachedFunction(Protocol[P, R]):
    """A cached method, classmethod or function as an instance or class gives it: bound.

    Its ``cache_*`` methods take the call's arguments as the call does, without the instance or
    class: ``self.lookup.cache_invalidate("name")`` (see docs/decorator.md#methods).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def cache_stats(self, *, reset: bool = False) -> CacheStats: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_get(self, *args: P.args, **kwargs: P.kwargs) -> R | Literal[NoValue.NO_VALUE]: ...
    def cache_contains(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    def cache_set(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_warm(
        self, items: Iterable[Any], *, concurrency: int = 8, progress: Progress | None = None
    ) -> WarmReport: ...
    def cache_clear(self) -> None: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_parameters(self) -> dict[str, Any]: ...


class BoundAsyncCachedFunction(Protocol[P, R]):
    """An async cached method or classmethod, bound (see BoundCachedFunction)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...
    def cache_stats(self, *, reset: bool = False) -> CacheStats: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    async def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    async def cache_get(self, *args: P.args, **kwargs: P.kwargs) -> R | Literal[NoValue.NO_VALUE]: ...
    async def cache_contains(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    async def cache_set(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None: ...
    async def cache_warm(
        self, items: Iterable[Any], *, concurrency: int = 8, progress: Progress | None = None
    ) -> WarmReport: ...
    async def cache_clear(self) -> None: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_parameters(self) -> dict[str, Any]: ...


class CachedFunction(BoundCachedFunction[P, R], Protocol[P, R]):
    """A sync function wrapped by ``@tiered_cache``: a BoundCachedFunction that binds.

    Its ``__get__`` overloads tell type checkers how methods and classmethods bind (in a class,
    the wrapper is a descriptor that binds the instance, or the class, and the ``cache_*``
    methods with it: see ``methods``); a staticmethod matches none of the binding overloads and
    stays as it is.
    """

    __wrapped__: Callable[P, R]

    if not MYPY:  # pyright (see MYPY above)

        @overload
        def __get__(
            self: CachedFunction[Concatenate[type[S], Q], T], instance: None, owner: type[S]
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...
        @overload
        def __get__(
            self: CachedFunction[Concatenate[type[S], Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(
            self: CachedFunction[Concatenate[S, Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: object, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...

    else:  # mypy (see MYPY above)

        @overload
        def __get__(  # type: ignore[misc]  # a classmethod read from its class
            self: Callable[Concatenate[type[S], Q], T], instance: None, owner: type[S]
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...
        @overload
        def __get__(  # type: ignore[misc]  # a classmethod read from an instance
            self: Callable[Concatenate[type[S], Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(
            self: Callable[Concatenate[S, Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: object, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...


class AsyncCachedFunction(BoundAsyncCachedFunction[P, R], Protocol[P, R]):
    """An async function wrapped by ``@tiered_cache``; invalidation and clearing are awaitable."""

    __wrapped__: Callable[P, Coroutine[Any, Any, R]]

    if not MYPY:  # pyright (see MYPY above)

        @overload
        def __get__(
            self: AsyncCachedFunction[Concatenate[type[S], Q], T], instance: None, owner: type[S]
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> AsyncCachedFunction[P, R]: ...
        @overload
        def __get__(
            self: AsyncCachedFunction[Concatenate[type[S], Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(
            self: AsyncCachedFunction[Concatenate[S, Q], T], instance: S, owner: type[Any] | None = None
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: object, owner: type[Any] | None = None) -> AsyncCachedFunction[P, R]: ...

    else:  # mypy (see MYPY above)

        @overload
        def __get__(  # type: ignore[misc]  # a classmethod read from its class
            self: Callable[Concatenate[type[S], Q], Coroutine[Any, Any, T]], instance: None, owner: type[S]
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> AsyncCachedFunction[P, R]: ...
        @overload
        def __get__(  # type: ignore[misc]  # a classmethod read from an instance
            self: Callable[Concatenate[type[S], Q], Coroutine[Any, Any, T]],
            instance: S,
            owner: type[Any] | None = None,
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(
            self: Callable[Concatenate[S, Q], Coroutine[Any, Any, T]],
            instance: S,
            owner: type[Any] | None = None,
        ) -> BoundAsyncCachedFunction[Q, T]: ...
        @overload
        def __get__(self, instance: object, owner: type[Any] | None = None) -> AsyncCachedFunction[P, R]: ...


class Decorator(Protocol):
    """What ``@tiered_cache(...)`` returns: it decorates a sync or an async function."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async first: a coroutine function is also a Callable
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, function: Callable[P, R]) -> CachedFunction[P, R]: ...


class BatchCachedFunction(Protocol[P, R]):
    """A sync function wrapped by ``@tiered_cache_many``: called as before, cached one id at a time."""

    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_clear(self) -> None: ...
    def cache_stats(self, *, reset: bool = False) -> CacheStats: ...


class AsyncBatchCachedFunction(Protocol[P, R]):
    """An async function wrapped by ``@tiered_cache_many``; invalidation and clearing are awaitable."""

    __wrapped__: Callable[P, Coroutine[Any, Any, R]]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...
    async def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    async def cache_clear(self) -> None: ...
    def cache_stats(self, *, reset: bool = False) -> CacheStats: ...


class BatchDecorator(Protocol):
    """What ``@tiered_cache_many(...)`` returns: it decorates a sync or an async function of ids."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async first: a coroutine function is also a Callable
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncBatchCachedFunction[P, R]: ...
    @overload
    def __call__(self, function: Callable[P, R]) -> BatchCachedFunction[P, R]: ...
