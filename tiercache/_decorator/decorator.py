"""``@tiered_cache``: check its arguments, build the function's cache and fast path.

The wrapper also gets its ``cache_*`` methods (awaitable twins for async functions); what type
checkers see of it is in ``protocols``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from tiercache._core.checks import Duration
from tiercache._core.shells import arun, astart, run
from tiercache._core.stats import ERROR, CacheStats
from tiercache._decorator import entries as _entries
from tiercache._decorator import flow as _flow
from tiercache._decorator import registry as _registry
from tiercache._decorator.call import Call
from tiercache._decorator.fastpath import EntryPoints, SampledLookup, generate
from tiercache._decorator.function import FunctionCache
from tiercache._decorator.keys import UnkeyableArgumentError
from tiercache._decorator.methods import CachedMethod, is_method
from tiercache._decorator.options import OWNER, POSITIONAL, Options
from tiercache._decorator.protocols import NO_VALUE, AsyncCachedFunction, CachedFunction, CacheInfo, Decorator
from tiercache._decorator.warming import Progress, WarmReport, awarm, warm
from tiercache._l1.lru import MISSING, Clock

__all__ = ["examined", "tiered_cache"]

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
    ttl_l1: Duration | None = 600,
    ttl_l2: Duration | None = 86400,
    *,
    stale_ttl: Duration | None = None,
    cache_if: Callable[[Any], object] | None = None,
    ttl_jitter: float = 0.0,
    refresh_ahead: float | None = None,
    timeout: Duration | None = None,
    hard_timeout: Duration | None = None,
    lock: bool | Duration = False,
    tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
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
@overload
def tiered_cache(
    *,
    ttl_l1: Duration | Callable[[Any], Duration | None] | None = 600,
    ttl_l2: Duration | Callable[[Any], Duration | None] | None = 86400,
    stale_ttl: Duration | None = None,
    cache_if: Callable[[Any], object] | None = None,
    ttl_jitter: float = 0.0,
    refresh_ahead: float | None = None,
    timeout: Duration | None = None,
    hard_timeout: Duration | None = None,
    lock: bool | Duration = False,
    tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
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

        ttl_l1: seconds an entry lives in L1; None keeps the function out of L1. Or a function
            of the result returning seconds, or None to keep that result out of L1.
        ttl_l2: seconds an entry lives in Redis; None keeps the function in L1 only. Or a
            function of the result, as for ttl_l1 (``lambda s: 5 if s is None else 3600``);
            TTL functions are given by name.
        stale_ttl: seconds past its TTL an entry may still be served: at once, while one
            background refresh recomputes it, or instead of an exception the function raised.
        cache_if: a function of the result; a result it answers falsy for is returned but
            kept in neither tier (``tiercache.NOT_NONE``: every result but None).
        ttl_jitter: take up to this fraction (0 to 1) off each entry's TTLs at random, so
            entries written together do not expire together.
        refresh_ahead: a fraction (0 to 1) of an entry's life: a hit in that last part of it
            is served as usual and starts one background recompute, so a hot key does not
            expire under load.
        timeout: seconds a caller waits for the function when a stale value (``stale_ttl``)
            is at hand: then it gets the stale value, and the run finishes in the background
            and fills the cache.
        hard_timeout: seconds a caller waits for the function at most: then it raises
            ``tiercache.ComputeTimeoutError`` (a TimeoutError); the run still fills the cache.
        lock: across processes, let only one compute a cold key while the others wait up to
            this many seconds (True: 2) for it to appear in Redis, then compute themselves.
        tags: names this function's entries carry, or a function of its arguments returning
            them (``tags=lambda user_id: [f"user:{user_id}"]``): ``tiercache.invalidate_tags()``
            drops every entry carrying any of them, in every function and process.
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

    Every duration is seconds or a ``datetime.timedelta`` (``ttl_l2=timedelta(hours=1)``).
    Usable bare (``@tiered_cache``), with arguments (``@tiered_cache(ttl_l1=60)``), or as a
    preset (``functools.partial(tiered_cache, ttl_l1=60)``, bare or with more arguments).

    """
    if len(args) == 1 and _is_decoratable(args[0]):
        # Bare (@tiered_cache), or a preset's options with the function:
        # functools.partial(tiered_cache, ttl_l1=60) used bare. (A TTL function is never
        # positional, see below, so a callable here is the function to cache.)
        return tiered_cache(**options)(args[0])
    if len(args) > len(POSITIONAL):
        raise TypeError(f"{OWNER}: takes ttl_l1 and ttl_l2 by position, the other options by name")
    for name, value in zip(POSITIONAL, args, strict=False):
        if name in options:
            raise TypeError(f"{OWNER}: {name} given by position and by name")
        if callable(value):  # (more likely a function where a TTL belongs than a TTL function)
            raise TypeError(
                f"{OWNER}: {name} must be a number of seconds or None when given by position, not "
                f"{type(value).__name__} (pass a TTL function by name: {name}=...)"
            )
        options[name] = value
    checked = Options.checked(options)
    return functools.partial(_decorate, options=checked)


def _is_decoratable(value: object) -> bool:
    # (a classmethod object is not callable itself)
    return callable(value) or isinstance(value, (classmethod, staticmethod))


def _decorate(function: Any, *, options: Options, binding: str = "") -> Any:
    if isinstance(function, classmethod):
        # @tiered_cache above @classmethod: cache the function, bind the class, cache_* too.
        return _decorate(function.__func__, options=options, binding="class")
    if isinstance(function, staticmethod):
        return staticmethod(_decorate(function.__func__, options=options, binding="static"))
    label, signature, name = examined(function, options, OWNER)
    is_async = inspect.iscoroutinefunction(function)
    key_names = (
        ("key(...)",)
        if options.key is not None
        else tuple(p for p in signature.parameters if p not in options.ignore)
    )
    cache = FunctionCache.of(function, options, label=label, name=name, key_names=key_names)
    sample = SampledLookup(cache.local, cache.stats)
    fast = generate(
        function,
        signature,
        label=name,
        key_names=key_names,
        key_function=options.key,
        is_async=is_async,
        local=cache.local,
        entry=_entry_points(cache, sample, is_async, options.copy),
        copier=options.copy,
    )
    cache.stats.ticks = fast.ticks
    sample.refill = fast.refill
    wrapper = fast.wrapper
    functools.update_wrapper(wrapper, function)
    fast.bind.__qualname__ = getattr(function, "__qualname__", name)  # binding errors read as the function's
    _attach_methods(wrapper, cache, fast.bind, is_async, options)
    _registry.register(cache)
    if binding == "class":
        return CachedMethod(wrapper, on_class=True)
    if not binding and is_method(function, signature):
        return CachedMethod(wrapper)  # self.method.cache_invalidate(...) binds self (see methods)
    return wrapper


def examined(function: Any, options: Options, owner: str) -> tuple[str, inspect.Signature, str]:
    """Check that ``function`` can be cached as ``options`` say; return its label, signature, name.

    Each error names ``owner`` (the decorator) and the function.
    """
    label = f"{owner} on {getattr(function, '__qualname__', function)!r}"
    if not callable(function):
        raise TypeError(f"{owner} must decorate a function, not {type(function).__name__}")
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
    return label, signature, options.name or _qualified_name(function, label)


def _qualified_name(function: Any, label: str) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"{label}: the callable has no __module__/__qualname__; pass name=")
    return f"{module}.{qualname}"


def _entry_points(
    cache: FunctionCache, sample: SampledLookup, is_async: bool, copier: Callable[[Any], Any] | None = None
) -> EntryPoints:
    runner: Callable[..., Any] = arun if is_async else run
    if copier is not None:
        runner = _copying(runner, copier, is_async)

    serve, keys = _flow.serve, cache.keys

    def miss(l1_key: Any, key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        return serve(cache, Call(l1_key, key_values, args, kwargs, fast=True))

    def slow(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        try:
            l1_key, canonical = keys.l1_key(key_values)
        except UnkeyableArgumentError:
            cache.stats.add("misses", 0, 1, ERROR)  # (a call all the same: an error, as serve() counts it)
            raise
        return serve(cache, Call(l1_key, key_values, args, kwargs, canonical=canonical))

    def canonical(key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        try:
            l1_key, encoded = keys.canonical_l1_key(key_values)
        except UnkeyableArgumentError:
            cache.stats.add("misses", 0, 1, ERROR)
            raise
        return serve(cache, Call(l1_key, key_values, args, kwargs, canonical=encoded))

    def keyed(l1_key: Any, key_values: tuple[Any, ...], args: tuple[Any, ...], kwargs: Any) -> Any:
        return serve(cache, Call(l1_key, key_values, args, kwargs))

    return EntryPoints(runner, miss, sample.lookup, slow, canonical, keyed)


def _copying(runner: Callable[..., Any], copier: Callable[[Any], Any], is_async: bool) -> Callable[..., Any]:
    """Return ``runner``, handing back a copy of what the flow returns (L1 keeps the original)."""
    if is_async:

        async def arun_copy(flow: Any) -> Any:
            return copier(await runner(flow))

        return arun_copy

    def run_copy(flow: Any) -> Any:
        return copier(runner(flow))

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

    def cache_info() -> CacheInfo:
        """Return hits (either tier), misses, the L1 bound and the L1 size, as functools does."""
        stats = cache.snapshot()
        return CacheInfo(stats.l1_hits + stats.l2_hits, stats.misses, options.max_entries, len(cache.local))

    def cache_parameters() -> dict[str, Any]:
        """Return the options this function was decorated with, and which free variables name it.

        ``free_variables``: those whose values are part of its identity (its Redis keys);
        ``free_variables_by_type``: those without an encoding, part of it by their type alone.
        """
        shown = options.shown(cache.name)
        shown["free_variables"] = cache.keys.closure.joined
        shown["free_variables_by_type"] = cache.keys.closure.opaque
        return shown

    copier = options.copy or (lambda value: value)
    make_methods = _amethods if is_async else _methods
    for attribute, method in make_methods(wrapper, cache, bind, copier).items():
        setattr(wrapper, attribute, method)

    def bind_methods(receiver: object) -> dict[str, Any]:
        # The cache_* methods of wrapper bound to an instance (see methods.BoundCachedMethod).
        return make_methods(functools.partial(wrapper, receiver), cache, bind, copier, (receiver,))

    wrapper.__tiercache_bind__ = bind_methods
    wrapper.cache_stats = cache_stats
    wrapper.cache_info = cache_info
    wrapper.cache_parameters = cache_parameters
    wrapper.__tiercache__ = cache


def _by_name(*methods: Callable[..., Any]) -> dict[str, Any]:
    """Return ``methods`` by their names: the wrapper's attributes they become."""
    return {method.__name__: method for method in methods}


def _amethods(
    wrapper: Any,
    cache: FunctionCache,
    bind: Callable[..., tuple[Any, ...]],
    copier: Callable[[Any], Any],
    receiver: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Return the ``cache_*`` methods of an async cached function (bound: to ``receiver``).

    Invalidating, clearing and setting start at the call (the L1 part at once, the Redis part
    as a task of the running loop, or in this thread when no loop runs) and return what to
    await for the end: a caller that forgets ``await`` is served all the same, not skipped.
    """
    warm_owner = f"{cache.name}.cache_warm()"

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """Return the Redis key the call with these arguments uses."""
        return cache.keys.redis_key_for(bind(*receiver, *args, **kwargs))

    def cache_invalidate(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Drop the entry of the call with these arguments from L1 and L2 (await the end)."""
        return astart(_flow.invalidate(cache, bind(*receiver, *args, **kwargs)))

    def cache_clear() -> Coroutine[Any, Any, None]:
        """Drop every entry of this function from L1 and L2 (await the end); zero its stats."""
        cache.snapshot(reset=True)  # (as functools.lru_cache's cache_clear() does)
        return astart(_flow.clear(cache))

    async def cache_get(*args: Any, **kwargs: Any) -> Any:
        """Return the cached result of the call with these arguments, or NO_VALUE; never run it."""
        args = (*receiver, *args)
        value = await arun(_entries.peek(cache, bind(*args, **kwargs), args, kwargs))
        return NO_VALUE if value is MISSING else copier(value)

    async def cache_contains(*args: Any, **kwargs: Any) -> bool:
        """Return whether a live result of the call with these arguments is cached."""
        args = (*receiver, *args)
        return await arun(_entries.peek(cache, bind(*args, **kwargs), args, kwargs)) is not MISSING

    def cache_set(value: Any, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Make ``value`` the cached result of the call with these arguments, in both tiers."""
        args = (*receiver, *args)
        return astart(_entries.put(cache, bind(*args, **kwargs), value, args, kwargs))

    async def cache_warm(
        items: Iterable[Any], *, concurrency: int = 8, progress: Progress | None = None
    ) -> WarmReport:
        """Cache the result of each call in ``items`` (argument tuples, dicts, or single arguments)."""
        return await awarm(
            items, cache_contains, wrapper, concurrency=concurrency, progress=progress, owner=warm_owner
        )

    return _by_name(
        cache_key, cache_invalidate, cache_clear, cache_get, cache_contains, cache_set, cache_warm
    )


def _methods(
    wrapper: Any,
    cache: FunctionCache,
    bind: Callable[..., tuple[Any, ...]],
    copier: Callable[[Any], Any],
    receiver: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Return the ``cache_*`` methods of a sync cached function (bound: to ``receiver``)."""
    warm_owner = f"{cache.name}.cache_warm()"

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """Return the Redis key the call with these arguments uses."""
        return cache.keys.redis_key_for(bind(*receiver, *args, **kwargs))

    def cache_invalidate(*args: Any, **kwargs: Any) -> None:
        """Drop the entry of the call with these arguments from L1 and L2."""
        run(_flow.invalidate(cache, bind(*receiver, *args, **kwargs)))

    def cache_clear() -> None:
        """Drop every entry of this function from L1 and L2, and zero its stats (as functools)."""
        cache.snapshot(reset=True)
        run(_flow.clear(cache))

    def cache_get(*args: Any, **kwargs: Any) -> Any:
        """Return the cached result of the call with these arguments, or NO_VALUE; never run it."""
        args = (*receiver, *args)
        value = run(_entries.peek(cache, bind(*args, **kwargs), args, kwargs))
        return NO_VALUE if value is MISSING else copier(value)

    def cache_contains(*args: Any, **kwargs: Any) -> bool:
        """Return whether a live result of the call with these arguments is cached."""
        args = (*receiver, *args)
        return run(_entries.peek(cache, bind(*args, **kwargs), args, kwargs)) is not MISSING

    def cache_set(value: Any, /, *args: Any, **kwargs: Any) -> None:
        """Make ``value`` the cached result of the call with these arguments, in both tiers."""
        args = (*receiver, *args)
        run(_entries.put(cache, bind(*args, **kwargs), value, args, kwargs))

    def cache_warm(
        items: Iterable[Any], *, concurrency: int = 8, progress: Progress | None = None
    ) -> WarmReport:
        """Cache the result of each call in ``items`` (argument tuples, dicts, or single arguments)."""
        return warm(
            items, cache_contains, wrapper, concurrency=concurrency, progress=progress, owner=warm_owner
        )

    return _by_name(
        cache_key, cache_invalidate, cache_clear, cache_get, cache_contains, cache_set, cache_warm
    )
