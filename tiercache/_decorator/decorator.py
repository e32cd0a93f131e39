"""``@tiered_cache``: check its arguments, build the function's cache and fast path.

The wrapper also gets its ``cache_*`` methods (awaitable twins for async functions); what type
checkers see of it is in ``protocols``.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from tiercache._core.shells import run_async, run_sync
from tiercache._core.stats import CacheStats
from tiercache._decorator import config as _config
from tiercache._decorator import flow as _flow
from tiercache._decorator import registry as _registry
from tiercache._decorator.fastpath import EntryPoints, generate
from tiercache._decorator.function import Call, FunctionCache
from tiercache._decorator.identity import identity_of
from tiercache._decorator.options import OWNER, POSITIONAL, Options
from tiercache._decorator.protocols import AsyncCachedFunction, CachedFunction, CacheInfo, Decorator
from tiercache._l1.lru import Clock

__all__ = ["tiered_cache"]

P = ParamSpec("P")
R = TypeVar("R")


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
def tiered_cache(*args: Any, **options: Any) -> Any:
    """Memoize a sync or async function in L1 (in-process LRU) and L2 (Redis).

    The options (``ttl_l1`` and ``ttl_l2`` also by position; each is defined once, with its
    default and check, in ``options.Options``):

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
        clock: seconds source for L1 expiry and L2 freshness (tests pass a fake one instead
            of sleeping); Redis's own TTLs and lock waits stay in real seconds.

    Usable bare (``@tiered_cache``) or with arguments (``@tiered_cache(ttl_l1=60)``).

    """
    if len(args) == 1 and callable(args[0]) and not options:
        return tiered_cache()(args[0])
    if len(args) > len(POSITIONAL):
        raise TypeError(f"{OWNER}: takes ttl_l1 and ttl_l2 by position, the other options by name")
    for name, value in zip(POSITIONAL, args, strict=False):
        if name in options:
            raise TypeError(f"{OWNER}: {name} given by position and by name")
        options[name] = value
    checked = Options.checked(options)
    return functools.partial(_decorate, options=checked)


def _decorate(function: Any, *, options: Options) -> Any:
    if isinstance(function, (classmethod, staticmethod)):
        # @tiered_cache above @classmethod/@staticmethod: cache the function, keep the binding.
        return type(function)(_decorate(function.__func__, options=options))
    label = f"{OWNER} on {getattr(function, '__qualname__', function)!r}"
    if not callable(function):
        raise TypeError(f"{OWNER} must decorate a function, not {type(function).__name__}")
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
        options,
        name=name,
        key_names=key_names,
        clock=options.clock or time.monotonic,
        closure=closure,
    )
    fast = generate(
        function,
        signature,
        label=name,
        key_names=key_names,
        key_function=options.key,
        is_async=is_async,
        local=cache.local,
        entry=_entry_points(cache, is_async, options.copy),
        copier=options.copy,
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
        return serve(cache, Call(l1_key, key_values, args, kwargs, fast=True))

    def slow(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        l1_key, canonical = cache.l1_key(key_values)
        return serve(cache, Call(l1_key, key_values, args, kwargs, canonical=canonical))

    def canonical(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        l1_key, encoded = cache.canonical_l1_key(key_values)
        return serve(cache, Call(l1_key, key_values, args, kwargs, canonical=encoded))

    def keyed(l1_key: Any, key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        return serve(cache, Call(l1_key, key_values, args, kwargs))

    return EntryPoints(run, miss, cache.timed_l1_hit, slow, canonical, keyed)


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
    options: Options,
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
        return options.shown(cache.name)

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
