"""``@tiered_cache_many``: a function of many ids, cached one entry per id.

``load_users(ids) -> {id: user}``: a call looks each id up in L1, the rest in L2 (an MGET per
CHUNK ids), then runs the function once with only the ids still missing and writes their values
back in pipelines of conditional writes (the invalidation protocol of single calls, per id). The
ids are the function's first parameter; its other parameters are part of every id's key.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from typing import Any, Final

from tiercache._core import ops
from tiercache._core.ops import Compute, Flow, l2_op
from tiercache._core.repairs import replay_repairs
from tiercache._core.shells import arun, astart, run
from tiercache._core.stats import LOOKED_UP, CacheStats
from tiercache._decorator import flow as _flow
from tiercache._decorator import registry as _registry
from tiercache._decorator.call import Call
from tiercache._decorator.decorator import examined
from tiercache._decorator.flow import CHUNK
from tiercache._decorator.function import FunctionCache
from tiercache._decorator.options import Options
from tiercache._decorator.protocols import BatchDecorator
from tiercache._l1.lru import MISSING

__all__ = ["tiered_cache_many"]

OWNER: Final = "tiered_cache_many()"
#: Options of ``tiered_cache`` a batch function cannot take: each concerns one call's single run.
UNSUPPORTED: Final = ("lock", "key", "refresh_ahead", "timeout", "hard_timeout", "copy", "tags")


def tiered_cache_many(**options: Any) -> BatchDecorator:
    """Cache a function of many ids (its first parameter) one entry per id.

    The function takes a collection of ids and returns a mapping ``{id: value}``; an id it leaves
    out of the mapping is not cached (nor returned). The wrapper returns ``{id: value}`` for the
    ids asked for, from L1, then L2 (an MGET per CHUNK ids), then one run of the function with
    the ids still missing, whose values go back to L2 in a pipeline per CHUNK ids. Options are
    ``tiered_cache``'s but for lock, key, refresh_ahead, timeout, hard_timeout, copy and tags
    (see UNSUPPORTED). Stats count each id as a call. Sync or async.
    """
    unsupported = sorted(set(options) & set(UNSUPPORTED))
    if unsupported:
        raise TypeError(f"{OWNER}: {unsupported} apply to single calls, not to batches of ids")
    checked = Options.checked(options)
    return functools.partial(_decorate, options=checked)


class _Batch:
    """How one batch function's arguments become per-id keys and the missing ids' call."""

    def __init__(
        self, function: Callable[..., Any], signature: inspect.Signature, label: str, ignore: frozenset[str]
    ) -> None:
        parameters = list(signature.parameters.values())
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"{label}: the first parameter must take the ids (a collection of them)")
        self.function = function
        self.signature = signature
        self.label = label
        self.ids_name = parameters[0].name
        self.ignore = ignore

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound

    def ids(self, bound: inspect.BoundArguments) -> list[Hashable]:
        ids = bound.arguments[self.ids_name]
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(
                f"{self.label}: {self.ids_name} must be a collection of ids, not {type(ids).__name__}"
            )
        # Each id once, in order. Ids equal as keys of a dict but of other types (1, True, 1.0)
        # would be one key of the mapping the function returns, and three entries of single
        # calls: which value is whose cannot be told, so they are refused.
        seen: dict[Hashable, Hashable] = {}
        for key in ids:
            first = seen.setdefault(key, key)
            if type(first) is not type(key):
                raise TypeError(
                    f"{self.label}: ids {first!r} and {key!r} are equal as keys of a dict, but "
                    "not the same id for the cache; ask for them in separate calls"
                )
        return list(seen)

    def others(self, bound: inspect.BoundArguments) -> tuple[Any, ...]:
        return tuple(
            value
            for name, value in bound.arguments.items()
            if name != self.ids_name and name not in self.ignore
        )

    def call_for(self, bound: inspect.BoundArguments, ids: list[Hashable]) -> Call:
        """Return the one call of the function, for ``ids`` only."""
        bound.arguments[self.ids_name] = ids
        return Call(None, (), bound.args, bound.kwargs)

    def values(self, result: Any) -> Mapping[Hashable, Any]:
        if not isinstance(result, Mapping):
            raise TypeError(
                f"{self.label}: must return a mapping of id -> value, not {type(result).__name__}"
            )
        return result


def serve_many(cache: FunctionCache, batch: _Batch, bound: inspect.BoundArguments) -> Flow:
    """Answer one batch call: L1, then one L2 read, then one run for the ids still missing."""
    ids = batch.ids(bound)
    others = batch.others(bound)
    enabled, endpoint = cache.route()
    if not enabled:
        result = batch.values((yield Compute(batch.function, batch.call_for(bound, ids), owner=cache)))
        return {key: result[key] for key in ids if key in result}
    calls: dict[Hashable, Call] = {}
    found: dict[Hashable, Any] = {}
    lease = cache.l1.lease() if cache.has_l1 else 0
    for key in ids:
        l1_key, canonical = cache.keys.l1_key((key, *others))
        if endpoint is None and canonical is None:
            cache.keys.check_raw((key, *others))  # (with L2, redis_key() encodes and checks it)
        call = calls[key] = Call(l1_key, (key, *others), (), None, canonical=canonical)
        call.lease = lease
        if cache.has_l1:
            value, _ = cache.l1.lookup(l1_key)
            if value is not MISSING:
                found[key] = value
                cache.record(call, "l1_hits")
    wanted = [key for key in ids if key not in found]
    if wanted and endpoint is not None and endpoint.breaker.allow():
        if cache.owed.any and not (yield from replay_repairs(cache, endpoint)):
            endpoint = None
        for start in range(0, len(wanted), CHUNK):
            if endpoint is None:
                break
            chunk = wanted[start : start + CHUNK]
            endpoint = yield from _read(cache, endpoint, [calls[key] for key in chunk], found, chunk)
    else:
        endpoint = None
    missing = [key for key in wanted if key not in found]
    if missing:
        pending = [calls[key] for key in missing]
        yield from _run(cache, batch, bound, endpoint=endpoint, calls=pending, missing=missing, found=found)
    return {key: found[key] for key in ids if key in found}


def _read(
    cache: FunctionCache, endpoint: Any, calls: list[Call], found: dict[Hashable, Any], wanted: list[Hashable]
) -> Flow:
    """Read ``calls`` (a chunk) in one MGET into ``found``; return the endpoint (None if it failed)."""
    read_at = time.monotonic()
    generation_key = cache.generation_key
    for call in calls:
        call.redis_key, _, call.generation = cache.read_of(call)
        call.flags |= LOOKED_UP
        call.read_at = read_at
    read = ops.read_many(endpoint, tuple(call.redis_key for call in calls), generation_key, owner=cache)
    ok, reply = yield from l2_op(cache, endpoint, read)
    if not ok:
        for call in calls:
            call.flags &= ~LOOKED_UP  # (none of them may write: their tokens are unknown)
        return None
    generation, payloads = reply
    asked: str | None = generation_key
    for key, call, payload in zip(wanted, calls, payloads, strict=True):
        learned, call.token, hit = cache.remote.take_read(
            endpoint, asked, generation, payload, call.redis_key
        )
        if learned is not None:
            for other in calls:
                other.generation = learned  # the read's, for every id it read
        asked = None  # (learned with the first)
        if hit is not MISSING and hit[1] > 0:
            value, fresh_for = hit
            found[key] = value
            if cache.has_l1:
                cache.l1.set(call.l1_key, value, cache.lifetimes.l1_seconds(value, fresh_for), call.lease)
            cache.record(call, "l2_hits")
    return endpoint


def _run(
    cache: FunctionCache,
    batch: _Batch,
    bound: inspect.BoundArguments,
    *,
    endpoint: Any,
    calls: list[Call],
    missing: list[Hashable],
    found: dict[Hashable, Any],
) -> Flow:
    """Run the function once for ``missing``; store what it returned (pipelines); fill ``found``."""
    for call in calls:  # (those L2 did not read are noted now: see note_before_run)
        _flow.note_before_run(cache, call)
    try:
        result = batch.values((yield Compute(batch.function, batch.call_for(bound, missing), owner=cache)))
    except Exception:
        for call in calls:
            cache.record(call, "misses", error=True)
        raise
    writes: list[tuple[str, bytes, int, bytes]] = []
    writers: list[tuple[Call, Any, float | None]] = []  # (call, value, L1 seconds), waiting on L2
    for key, call in zip(missing, calls, strict=True):
        cache.record(call, "misses")
        if key not in result:
            continue
        value = found[key] = result[key]
        keep = cache.lifetimes.keeping(value)
        if keep is None:
            continue
        l1_seconds, l2_seconds, to_l1, to_l2 = keep
        write = _flow.write_op(cache, call, endpoint, value, l2_seconds) if endpoint and to_l2 else None
        if write is not None:
            writes.append(write.args)
            writers.append((call, value, l1_seconds if to_l1 else 0.0))
        elif to_l1 and cache.has_l1:
            cache.l1.set(call.l1_key, value, l1_seconds, call.lease)
    yield from _write_back(cache, endpoint, writes, writers)


def _write_back(
    cache: FunctionCache,
    endpoint: Any,
    writes: list[tuple[str, bytes, int, bytes]],
    writers: list[tuple[Call, Any, float | None]],
) -> Flow:
    """Write the values to L2 in pipelines of CHUNK, then to L1 those Redis did not refuse."""
    for start in range(0, len(writes), CHUNK):
        items = tuple(writes[start : start + CHUNK])
        taken: list[bool] = [True] * len(items)  # (L2 failed or gave up: L1 keeps them, as without L2)
        if endpoint is not None:
            ok, reply = yield from l2_op(
                cache, endpoint, ops.write_many_if_unchanged(endpoint, items, owner=cache)
            )
            taken, endpoint = (reply, endpoint) if ok else (taken, None)
        for (call, value, l1_seconds), stored in zip(writers[start : start + CHUNK], taken, strict=True):
            if not stored:
                cache.stats.count("l2_writes_refused")  # invalidated since our read: not in L1 either
            elif cache.has_l1 and l1_seconds != 0.0:
                cache.l1.set(call.l1_key, value, l1_seconds, call.lease)


def _decorate(function: Any, *, options: Options) -> Any:
    label, signature, name = examined(function, options, OWNER)
    batch = _Batch(function, signature, label, options.ignore)
    key_names = tuple(p for p in signature.parameters if p not in options.ignore)
    cache = FunctionCache.of(function, options, label=label, name=name, key_names=key_names)
    batch.label = cache.label
    is_async = inspect.iscoroutinefunction(function)
    if is_async:

        async def wrapper(*args: Any, **kwargs: Any) -> dict[Hashable, Any]:
            return await arun(serve_many(cache, batch, batch.bind(args, kwargs)))  # type: ignore[no-any-return]

        # Started at the call, awaited for the end: a forgotten await loses nothing (see
        # astart).
        def cache_invalidate(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
            """Drop the entries of the ids in these arguments from L1 and L2 (await the end)."""
            return astart(_flow.invalidate(cache, *_key_values(batch, args, kwargs)))

        def cache_clear() -> Coroutine[Any, Any, None]:
            """Drop every entry of this function from L1 and L2 (await the end); zero its stats."""
            cache.snapshot(reset=True)
            return astart(_flow.clear(cache))

    else:

        def wrapper(*args: Any, **kwargs: Any) -> dict[Hashable, Any]:  # type: ignore[misc]
            return run(serve_many(cache, batch, batch.bind(args, kwargs)))  # type: ignore[no-any-return]

        def cache_invalidate(*args: Any, **kwargs: Any) -> None:  # type: ignore[misc]
            """Drop the entries of the ids in these arguments from L1 and L2."""
            run(_flow.invalidate(cache, *_key_values(batch, args, kwargs)))

        def cache_clear() -> None:  # type: ignore[misc]
            """Drop every entry of this function from L1 and L2, and zero its stats."""
            cache.snapshot(reset=True)
            run(_flow.clear(cache))

    def cache_stats(*, reset: bool = False) -> CacheStats:
        """Return this function's stats (each id counts as a call); ``reset=True`` zeroes them."""
        return cache.snapshot(reset=reset)

    functools.update_wrapper(wrapper, function)
    wrapper.cache_invalidate = cache_invalidate  # type: ignore[attr-defined]
    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    wrapper.cache_stats = cache_stats  # type: ignore[attr-defined]
    wrapper.__tiercache__ = cache  # type: ignore[attr-defined]
    _registry.register(cache)
    return wrapper


def _key_values(batch: _Batch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, ...]]:
    bound = batch.bind(args, kwargs)
    others = batch.others(bound)
    return [(key, *others) for key in batch.ids(bound)]
