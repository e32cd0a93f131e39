"""Every live cached function in the process, for ``tiercache.stats()`` and process-wide switches."""

from __future__ import annotations

import gc
import itertools
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

from tiercache._decorator import config as _config

if TYPE_CHECKING:
    from tiercache._core.stats import CacheStats
    from tiercache._decorator.function import FunctionCache

__all__ = ["all_caches", "named_caches", "register", "stats"]

logger = logging.getLogger("tiercache")
_lock = threading.Lock()
# Live functions, each with its rank in the order they were decorated (oldest first).
_caches: weakref.WeakKeyDictionary[FunctionCache, int] = weakref.WeakKeyDictionary()
_decorated = itertools.count()


def register(cache: FunctionCache) -> None:
    """Track ``cache``; refuse it, or warn, when another live function would share its Redis keys.

    Refused where the two differ in a free variable without an encoding that can change what they
    return (two clients): their keys cannot say which is which, and each would read what the
    other wrote. Functions kept in L1 alone share nothing.
    """
    for attempt in range(2):
        with _lock:
            twins = _twins_of(cache)
            apart = next((found for other in twins if (found := _told_apart(cache, other))), None)
            if apart is None:
                _caches[cache] = next(_decorated)
                break
        if attempt == 0:
            # A test's or a request's factory function, gone but in a reference cycle, is not a
            # twin: collected, it leaves the set. Only one still reachable is a conflict.
            del twins
            gc.collect()
        else:
            variable, value = apart
            raise TypeError(
                f"tiered_cache(): {cache.label} is made a second time while the first is alive, and "
                f"the two differ in their free variable {variable!r} (a {type(value).__qualname__}, "
                "which has no encoding), so their Redis keys cannot tell them apart: each would read "
                "what the other wrote. Give each function the factory makes a name=... or "
                "version=... of its own (version=tenant, say), or pass the object as an argument "
                "and ignore=... it"
            )
    if twins:
        logger.warning(
            "%s is cached by two live functions that share one Redis key prefix; give one of them "
            "name=, version= or namespace= unless they really compute the same thing",
            cache.label,
        )


def _twins_of(cache: FunctionCache) -> list[FunctionCache]:
    """Return the live functions whose Redis keys would be ``cache``'s (L1-only ones share none)."""
    if not cache.uses_l2 or cache.keys.pending_closure is not None:
        return []
    return [
        other
        for other in _caches
        if other.uses_l2
        and other.keys.label == cache.keys.label
        and other.options.namespace == cache.options.namespace
        and other.keys.pending_closure is None
    ]


def _told_apart(cache: FunctionCache, other: FunctionCache) -> tuple[str, object] | None:
    """Return the free variable and object where ``cache`` differs from its twin, if it does."""
    theirs = dict(other.keys.closure.objects)
    return next(
        ((name, value) for name, value in cache.keys.closure.objects if theirs.get(name, value) is not value),
        None,
    )


def all_caches() -> list[FunctionCache]:
    """Return the live cached functions, oldest first (stats() names a younger twin ``#2``)."""
    with _lock:
        ranked = sorted(_caches.items(), key=lambda item: item[1])
    return [cache for cache, _ in ranked]


def named_caches() -> list[tuple[str, FunctionCache]]:
    """Return the live cached functions with the names stats() gives them (``#2`` for twins)."""
    named: dict[str, FunctionCache] = {}
    for cache in all_caches():
        name, n = cache.label, 1
        while name in named:
            n += 1
            name = f"{cache.label}#{n}"
        named[name] = cache
    return list(named.items())


def stats(*, reset: bool = False) -> dict[str, CacheStats]:
    """Return a stats snapshot of every live cached function, by qualified name."""
    return {name: cache.snapshot(reset=reset) for name, cache in named_caches()}


def _on_settings_changed(settings: _config.Settings) -> None:
    routing = _config.routing_of(settings)
    for cache in all_caches():
        if not settings.enabled:
            cache.local.clear()  # disabling must take effect on the fast path, which reads L1 only
        elif cache.uses_l2 and cache.routed is not None and cache.routed != routing:
            # Another Redis, namespace or signing key: what L1 holds was cached hearing the old
            # channel (or none), under the old digests. Calls that only hit L1 would never
            # resolve the new settings, never follow the new channel, and serve what other
            # processes there invalidate: stale from now on (kept for fail-safe), so the next
            # call resolves and reads the new L2.
            cache.coherence.drop_local(None, keep_stale=True)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # (each cache starts clean too: see _core.tiers)


_config.on_change(_on_settings_changed)
os.register_at_fork(after_in_child=_after_fork_in_child)
