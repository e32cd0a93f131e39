"""Every live cached function in the process, for ``tiercache.stats()`` and process-wide switches."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

from tiercache._decorator import config as _config

if TYPE_CHECKING:
    from tiercache._core.stats import CacheStats
    from tiercache._decorator.function import FunctionCache

__all__ = ["all_caches", "forget_all", "named_caches", "register", "stats"]

logger = logging.getLogger("tiercache")
_lock = threading.Lock()
_caches: weakref.WeakSet[FunctionCache] = weakref.WeakSet()


def register(cache: FunctionCache) -> None:
    """Track ``cache``; warn when another live function would share its Redis keys."""
    with _lock:
        twins = [
            other
            for other in _caches
            if other.key_label == cache.key_label
            and other.namespace == cache.namespace
            and not (cache.identity_pending or other.identity_pending)
        ]
        _caches.add(cache)
    if twins:
        logger.warning(
            "%s is cached by two live functions that share one Redis key prefix; give one of them "
            "name=, version= or namespace= unless they really compute the same thing",
            cache.label,
        )


def all_caches() -> list[FunctionCache]:
    """Return the live cached functions, oldest first."""
    with _lock:
        return sorted(_caches, key=id)


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


def forget_all() -> None:
    """Empty every function's L1 and zero its stats, as if the process had just started."""
    for cache in all_caches():
        cache.drop_local(None)
        cache.stats.snapshot(reset=True)


def _on_settings_changed(settings: _config.Settings) -> None:
    # Disabling must take effect on the fast path too, which only ever reads L1.
    if not settings.enabled:
        for cache in all_caches():
            cache.local.clear()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for cache in list(_caches):
        cache.after_fork()


_config.on_change(_on_settings_changed)
os.register_at_fork(after_in_child=_after_fork_in_child)
