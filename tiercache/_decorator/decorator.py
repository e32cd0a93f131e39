"""``@tiered_cache``: check its arguments, build the function's cache and fast path.

The wrapper also gets its ``cache_*`` methods (awaitable twins for async functions); what type
checkers see of it is in ``_protocols``.
"""

from __future__ import annotations

import copy as copy_module
import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeVar, overload

from tiercache._core.checks import check_namespace, check_seconds, check_size
from tiercache._core.shells import run_async, run_sync
from tiercache._core.stats import CacheStats
from tiercache._decorator import config as _config
from tiercache._decorator import flow as _flow
from tiercache._decorator import registry as _registry
from tiercache._decorator.fastpath import EntryPoints, generate
from tiercache._decorator.function import Call, FunctionCache
from tiercache._decorator.identity import identity_of
from tiercache._decorator.protocols import AsyncCachedFunction, CachedFunction, CacheInfo, Decorator
from tiercache._l1.lru import L1_POLICIES, Clock
from tiercache._l2.signing import signing_keys
from tiercache._l2.urls import check_url

__all__ = ["tiered_cache"]

P = ParamSpec("P")
R = TypeVar("R")
_OWNER = "tiered_cache()"
#: What L1 can do when it is full (see LocalCache).
#: ``lock=True``: how long the computing process holds a cold key, and others wait for it.
DEFAULT_LOCK_SECONDS = 2.0


@overload
def tiered_cache(  # type: ignore[overload-overlap]  # async first: a coroutine function is also a Callable
    ttl_l1: Callable[P, Coroutine[Any, Any, R]],
) -> AsyncCachedFunction[P, R]: ...
@overload
def tiered_cache(ttl_l1: Callable[P, R]) -> CachedFunction[P, R]: ...
@overload
def tiered_cache(
    ttl_l1: float | None = 600,
    ttl_l2: float | None = 86400,
    *,
    stale_ttl: float | None = None,
    lock: bool | float = False,
    max_entries: int = 1000,
    max_bytes: int | None = None,
    l1_policy: str = "lru",
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    ignore: str | Iterable[str] = (),
    version: str | int | None = None,
    name: str | None = None,
    enabled: bool = True,
    coherent: bool = True,
    redis_url: str | None = None,
    signing_key: str | bytes | Sequence[str | bytes] | None = None,
    max_value_bytes: int | None = None,
    copy: bool | Callable[[Any], Any] = False,
    clock: Clock | None = None,
) -> Decorator: ...
def tiered_cache(
    ttl_l1: Any = 600,
    ttl_l2: float | None = 86400,
    *,
    stale_ttl: float | None = None,
    lock: bool | float = False,
    max_entries: int = 1000,
    max_bytes: int | None = None,
    l1_policy: str = "lru",
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    ignore: str | Iterable[str] = (),
    version: str | int | None = None,
    name: str | None = None,
    enabled: bool = True,
    coherent: bool = True,
    redis_url: str | None = None,
    signing_key: str | bytes | Sequence[str | bytes] | None = None,
    max_value_bytes: int | None = None,
    copy: bool | Callable[[Any], Any] = False,
    clock: Clock | None = None,
) -> Any:
    """Memoize a sync or async function in L1 (in-process LRU) and L2 (Redis).

    Args:
        ttl_l1: seconds an entry lives in L1; None keeps the function out of L1.
        ttl_l2: seconds an entry lives in Redis; None keeps the function in L1 only.
        stale_ttl: seconds past its TTL an entry may still be served: at once, while one
            background refresh recomputes it, or instead of an exception the function raised.
        lock: across processes, let only one compute a cold key while the others wait up to
            this many seconds (True: 2) for it to appear in Redis, then compute themselves.
        max_entries: the L1 bound; the least recently used entry goes first.
        max_bytes: also bound L1 by size: the entries' keys and values (values sized by their
            msgpack encoding) stay under this many bytes; a larger value is not kept in L1.
        l1_policy: ``"lru"``, or ``"tinylfu"`` to let a full L1 admit a new entry only if it
            was missed more often lately than the one it would evict (better on skewed keys).
        namespace: first part of every Redis key (default: ``configure(namespace=...)``).
        key: build the key yourself: called with the function's arguments, returns a value of
            a keyable type (it replaces the arguments in the key).
        ignore: names of parameters to leave out of the key (``"self"``, a client, a logger).
        version: part of the Redis key; change it when the function's results change meaning.
        name: the function's name in Redis keys and stats (default ``module.qualname``).
        enabled: False calls straight through (the ``cache_*`` methods still work).
        coherent: announce this function's invalidations and clears to other processes on
            the same Redis and follow theirs, so their L1s drop changed entries within
            milliseconds; False leaves each L1 to ``ttl_l1`` (for data that never changes).
        redis_url: this function's L2 (default: ``configure(redis_url=...)``).
        signing_key: sign this function's L2 values with this key (16 bytes or more), or keys
            newest first, and treat unsigned or forged ones as misses (default: configure()).
        max_value_bytes: values larger than this stay in L1 only (default: configure(), 8 MiB).
        copy: hand every caller a copy of its own: True for ``copy.deepcopy``, or a function
            returning a copy. Without it, callers in this process share the object L1 holds
            (mutating it changes what the next caller gets; other processes read Redis's).
        clock: seconds source for L1 expiry (tests pass a fake one instead of sleeping).

    Usable bare (``@tiered_cache``) or with arguments (``@tiered_cache(ttl_l1=60)``).

    """
    if callable(ttl_l1):
        return tiered_cache()(ttl_l1)
    options = _Options.check(
        ttl_l1=ttl_l1,
        ttl_l2=ttl_l2,
        stale_ttl=stale_ttl,
        lock=lock,
        max_entries=max_entries,
        max_bytes=max_bytes,
        l1_policy=l1_policy,
        namespace=namespace,
        key=key,
        ignore=ignore,
        version=version,
        name=name,
        enabled=enabled,
        coherent=coherent,
        redis_url=redis_url,
        signing_key=signing_key,
        max_value_bytes=max_value_bytes,
        copy=copy,
        clock=clock,
    )
    return functools.partial(_decorate, options=options)


def _check_l1_bound(max_entries: Any, l1_policy: Any) -> None:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int):
        raise TypeError(f"{_OWNER}: max_entries must be an int, not {type(max_entries).__name__}")
    if max_entries < 1:
        raise ValueError(f"{_OWNER}: max_entries must be >= 1, not {max_entries} (use ttl_l1=None for no L1)")
    if l1_policy not in L1_POLICIES:
        raise ValueError(f"{_OWNER}: l1_policy must be one of {sorted(L1_POLICIES)}, not {l1_policy!r}")


class _Options(NamedTuple):
    ttl_l1: float | None
    ttl_l2: float | None
    stale_ttl: float | None
    lock: float | None
    max_entries: int
    max_bytes: int | None
    l1_policy: str
    namespace: str | None
    key: Callable[..., Any] | None
    ignore: frozenset[str]
    version: str | None
    name: str | None
    enabled: bool
    coherent: bool
    redis_url: str | None
    signing_keys: tuple[bytes, ...] | None
    max_value_bytes: int | None
    copier: Callable[[Any], Any] | None
    clock: Clock | None

    @classmethod
    def check(
        cls,
        *,
        ttl_l1: Any,
        ttl_l2: Any,
        stale_ttl: Any,
        lock: Any,
        max_entries: Any,
        max_bytes: Any,
        l1_policy: Any,
        namespace: Any,
        key: Any,
        ignore: Any,
        version: Any,
        name: Any,
        enabled: Any,
        coherent: Any,
        redis_url: Any,
        signing_key: Any,
        max_value_bytes: Any,
        copy: Any,
        clock: Any,
    ) -> _Options:
        """Validate the decorator's arguments, each error naming the argument at fault."""
        ttl_l1 = check_seconds(ttl_l1, "ttl_l1", _OWNER, optional=True)
        ttl_l2 = check_seconds(ttl_l2, "ttl_l2", _OWNER, optional=True)
        if ttl_l1 is None and ttl_l2 is None:
            raise ValueError(f"{_OWNER}: ttl_l1 and ttl_l2 are both None, so nothing would be cached")
        stale_ttl = check_seconds(stale_ttl, "stale_ttl", _OWNER, optional=True)
        lock_seconds = _check_lock(lock, ttl_l2)
        _check_l1_bound(max_entries, l1_policy)
        if namespace is not None:
            check_namespace(namespace, _OWNER)
        if key is not None and not callable(key):
            raise TypeError(f"{_OWNER}: key must be a callable, not {type(key).__name__}")
        ignored = _check_ignore(ignore)
        if key is not None and ignored:
            raise ValueError(f"{_OWNER}: pass key= or ignore=, not both (a key function sees every argument)")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
            raise TypeError(f"{_OWNER}: version must be a str or an int, not {type(version).__name__}")
        if name is not None and (not isinstance(name, str) or not name or any(c.isspace() for c in name)):
            raise ValueError(f"{_OWNER}: name must be a non-empty str without whitespace, not {name!r}")
        for flag, given in (("enabled", enabled), ("coherent", coherent)):
            if not isinstance(given, bool):
                raise TypeError(f"{_OWNER}: {flag} must be a bool, not {type(given).__name__}")
        if redis_url is not None:
            check_url(redis_url, _OWNER)
        keys = signing_keys(signing_key, _OWNER) if signing_key is not None else None
        if max_value_bytes is not None:
            max_value_bytes = check_size(max_value_bytes, "max_value_bytes", _OWNER)
        if max_bytes is not None:
            max_bytes = check_size(max_bytes, "max_bytes", _OWNER)
        copier = _check_copy(copy)
        if clock is not None and not callable(clock):
            raise TypeError(
                f"{_OWNER}: clock must be a callable returning seconds, not {type(clock).__name__}"
            )
        text_version = None if version is None else str(version)
        return cls(
            ttl_l1=ttl_l1,
            ttl_l2=ttl_l2,
            stale_ttl=stale_ttl,
            lock=lock_seconds,
            max_entries=max_entries,
            max_bytes=max_bytes,
            l1_policy=l1_policy,
            namespace=namespace,
            key=key,
            ignore=ignored,
            version=text_version,
            name=name,
            enabled=enabled,
            coherent=coherent,
            redis_url=redis_url,
            signing_keys=keys,
            max_value_bytes=max_value_bytes,
            copier=copier,
            clock=clock,
        )


def _check_copy(copy: Any) -> Callable[[Any], Any] | None:
    if copy is True:
        return copy_module.deepcopy
    if copy is False or copy is None:
        return None
    if callable(copy):
        return copy  # type: ignore[no-any-return]
    raise TypeError(
        f"{_OWNER}: copy must be a bool or a function returning a copy, not {type(copy).__name__}"
    )


def _check_lock(lock: Any, ttl_l2: float | None) -> float | None:
    if lock is False or lock is None:
        return None
    if lock is True:
        lock = DEFAULT_LOCK_SECONDS
    seconds = check_seconds(lock, "lock", _OWNER)
    if ttl_l2 is None:
        raise ValueError(f"{_OWNER}: lock needs L2 (processes coordinate through Redis), but ttl_l2 is None")
    return seconds


def _check_ignore(ignore: Any) -> frozenset[str]:
    names = (ignore,) if isinstance(ignore, str) else ignore
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(
            f"{_OWNER}: ignore must be a parameter name or names, not {type(ignore).__name__}"
        ) from None
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"{_OWNER}: ignore must hold parameter names, not {item!r}")
    return frozenset(names)


def _decorate(function: Any, *, options: _Options) -> Any:
    if isinstance(function, (classmethod, staticmethod)):
        # @tiered_cache above @classmethod/@staticmethod: cache the function, keep the binding.
        return type(function)(_decorate(function.__func__, options=options))
    label = f"{_OWNER} on {getattr(function, '__qualname__', function)!r}"
    if not callable(function):
        raise TypeError(f"{_OWNER} must decorate a function, not {type(function).__name__}")
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(f"{label}: cannot cache a generator function (it returns a new iterator each call)")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{label}: cannot read the function's signature ({exc}); wrap it in a def") from None
    unknown = options.ignore - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"{label}: ignore names {sorted(unknown)} that are not parameters of the function "
            f"(its parameters: {list(signature.parameters)})"
        )
    name = options.name or _qualified_name(function, label)
    closure = identity_of(
        function,
        label,
        shared=options.ttl_l2 is not None,
        named=options.name is not None,
        versioned=options.version is not None,
        limit=_config.current().max_key_bytes,
    )
    is_async = inspect.iscoroutinefunction(function)
    key_names = (
        ("key(...)",)
        if options.key is not None
        else tuple(p for p in signature.parameters if p not in options.ignore)
    )
    cache = FunctionCache(
        function,
        name=name,
        key_names=key_names,
        ttl_l1=options.ttl_l1,
        ttl_l2=options.ttl_l2,
        stale_ttl=options.stale_ttl,
        lock=options.lock,
        max_entries=options.max_entries,
        max_bytes=options.max_bytes,
        l1_policy=options.l1_policy,
        namespace=options.namespace,
        version=options.version,
        enabled=options.enabled,
        redis_url=options.redis_url,
        signing_keys=options.signing_keys,
        max_value_bytes=options.max_value_bytes,
        clock=options.clock or time.monotonic,
        closure=closure,
    )
    cache.coherent = options.coherent
    fast = generate(
        function,
        signature,
        label=name,
        key_names=key_names,
        key_function=options.key,
        is_async=is_async,
        local=cache.local,
        entry=_entry_points(cache, is_async, options.copier),
        copier=options.copier,
    )
    cache.stats.ticks = fast.ticks
    cache.refill = fast.refill
    wrapper = fast.wrapper
    functools.update_wrapper(wrapper, function)
    fast.bind.__qualname__ = getattr(function, "__qualname__", name)  # binding errors read as the function's
    _attach_methods(wrapper, cache, fast.bind, is_async, options)
    _registry.register(cache)
    return wrapper


def _qualified_name(function: Any, label: str) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"{label}: the callable has no __module__/__qualname__; pass name=")
    return f"{module}.{qualname}"


def _entry_points(
    cache: FunctionCache, is_async: bool, copier: Callable[[Any], Any] | None = None
) -> EntryPoints:
    run: Callable[..., Any] = run_async if is_async else run_sync
    if copier is not None:
        run = _copying(run, copier, is_async)

    serve = _flow.serve

    def miss(l1_key: Any, key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        return serve(cache, Call(l1_key, key_values, args, kwargs, True))

    def slow(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        l1_key, canonical = cache.l1_key(key_values)
        return serve(cache, Call(l1_key, key_values, args, kwargs, False, 1, canonical))

    def canonical(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        l1_key, encoded = cache.canonical_l1_key(key_values)
        return serve(cache, Call(l1_key, key_values, args, kwargs, False, 1, encoded))

    return EntryPoints(run, miss, cache.timed_l1_hit, slow, canonical)


def _copying(run: Callable[..., Any], copier: Callable[[Any], Any], is_async: bool) -> Callable[..., Any]:
    """Return ``run``, handing back a copy of what the flow returns (L1 keeps the original)."""
    if is_async:

        async def run_copy_async(flow: Any) -> Any:
            return copier(await run(flow))

        return run_copy_async

    def run_copy(flow: Any) -> Any:
        return copier(run(flow))

    return run_copy


def _attach_methods(
    wrapper: Any,
    cache: FunctionCache,
    bind: Callable[..., tuple[Any, ...]],
    is_async: bool,
    options: _Options,
) -> None:
    def cache_stats(*, reset: bool = False) -> CacheStats:
        """Return this function's stats; with ``reset=True`` also zero them."""
        return cache.snapshot(reset=reset)

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """Return the Redis key the call with these arguments uses."""
        return cache.redis_key_for(bind(*args, **kwargs))

    def cache_info() -> CacheInfo:
        """Return hits (either tier), misses, the L1 bound and the L1 size, as functools does."""
        stats = cache.snapshot()
        return CacheInfo(stats.l1_hits + stats.l2_hits, stats.misses, options.max_entries, len(cache.local))

    def cache_parameters() -> dict[str, Any]:
        """Return the options this function was decorated with."""
        return {
            "ttl_l1": options.ttl_l1,
            "ttl_l2": options.ttl_l2,
            "stale_ttl": options.stale_ttl,
            "lock": options.lock,
            "max_entries": options.max_entries,
            "max_bytes": options.max_bytes,
            "l1_policy": options.l1_policy,
            "namespace": options.namespace,
            "version": options.version,
            "name": cache.name,
            "enabled": options.enabled,
            "coherent": options.coherent,
            "ignore": sorted(options.ignore),
            "copy": options.copier,
        }

    if is_async:

        async def cache_invalidate(*args: Any, **kwargs: Any) -> None:
            """Drop the entry of the call with these arguments from L1 and L2."""
            await run_async(_flow.invalidate(cache, bind(*args, **kwargs)))

        async def cache_clear() -> None:
            """Drop every entry of this function from L1 and L2."""
            await run_async(_flow.clear(cache))

        wrapper.cache_invalidate = cache_invalidate
        wrapper.cache_clear = cache_clear
    else:

        def sync_invalidate(*args: Any, **kwargs: Any) -> None:
            """Drop the entry of the call with these arguments from L1 and L2."""
            run_sync(_flow.invalidate(cache, bind(*args, **kwargs)))

        def sync_clear() -> None:
            """Drop every entry of this function from L1 and L2."""
            run_sync(_flow.clear(cache))

        wrapper.cache_invalidate = sync_invalidate
        wrapper.cache_clear = sync_clear
    wrapper.cache_stats = cache_stats
    wrapper.cache_key = cache_key
    wrapper.cache_info = cache_info
    wrapper.cache_parameters = cache_parameters
    wrapper.__tiercache__ = cache
