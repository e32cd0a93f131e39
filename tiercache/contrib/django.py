"""Django: a ``CACHES`` backend over tiercache's two tiers (an L1 in each process, Redis behind).

::

    CACHES = {
        "default": {
            "BACKEND": "tiercache.contrib.django.TieredCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"L1_MAX_ENTRIES": 10_000, "L1_TTL_SECONDS": 60},
        }
    }

Django's cache API, the cache session engine and ``cache_page`` then read from the process's
L1 first and from Redis after, and every process drops from its L1 what another changed (the
adapters' coherence). ``OPTIONS`` takes the fields of ``MultiTierCacheSettings`` in capitals
(``NAMESPACE``, ``SIGNING_KEY``, ``L2_TIMEOUT``, ...), and django-redis's and Django's own
``RedisCache``'s where they mean something (``SOCKET_TIMEOUT``, ``db``, ...; see
``_django_options``); ``LOCATION`` is its ``l2_url`` (any URL tiercache takes:
``redis+cluster://``, ``redis+sentinel://``, ...). Values are msgpack with
tiercache's types, never pickled: this module registers Django's responses (``cache_page``),
safe strings (``{% cache %}``) and lazy strings (see ``_django_values``), and
``tiercache.register_type`` adds yours; a value of another type (a model instance, a
QuerySet) lives in that process's L1 only, with a warning. ``add()``, ``incr()`` and ``touch()``
are compare-and-swaps in Redis, atomic across processes.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Final

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from tiercache._adapter import flows
from tiercache._adapter.adapter import MultiTierCache
from tiercache._adapter.settings import MultiTierCacheSettings
from tiercache._core.shells import run
from tiercache._l1.lru import MISSING
from tiercache.contrib._django_options import from_other_backends
from tiercache.contrib._django_values import register_django_types

__all__ = ["FOREVER", "TieredCache"]

#: What ``timeout=None`` ("never expires") lives in Redis: a hundred years.
FOREVER: Final = 100 * 365 * 86400.0

# Django's own cache options, which BaseCache reads (culling means nothing here: L1 is bounded
# by L1_MAX_ENTRIES, and Redis by its own maxmemory policy).
_DJANGO_OPTIONS: Final = frozenset({"MAX_ENTRIES", "CULL_FREQUENCY"})

register_django_types()  # (every process with this backend reads what the others wrote)

_shared_lock = threading.Lock()
# Weakly: a cache lives as long as a backend object uses it (Django drops them when its CACHES
# setting changes, as tests do).
_shared: weakref.WeakValueDictionary[tuple[Any, ...], MultiTierCache] = weakref.WeakValueDictionary()


class TieredCache(BaseCache):  # type: ignore[misc]  # (Django ships no types)
    """A Django cache backend whose entries live in a per-process L1 and in Redis."""

    def __init__(self, server: str | Iterable[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        self._cache = _shared_cache(_location(server), dict(params.get("OPTIONS") or {}))
        self._tiers = self._cache._tiers  # (add, incr and touch run the adapters' update flow)
        # As every Django backend: a value pickle cannot store either raises pickle's error.
        self._tiers.remote.refuse_unpicklable = True

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value of ``key``, or ``default`` if there is none (a cached None is a value)."""
        key = self.make_and_validate_key(key, version=version)
        return self._cache.get_many((key,)).get(key, default)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys found; Redis is asked once for those L1 lacks."""
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        return {names[name]: value for name, value in self._cache.get_many(names).items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return whether ``key`` has a value."""
        key = self.make_and_validate_key(key, version=version)
        return key in self._cache.get_many((key,))

    # -- writing ----------------------------------------------------------------------------

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        nx: bool = False,
    ) -> Any:
        """Store ``value`` for ``timeout`` seconds (None: for ever; 0 or less: drop the key).

        ``nx=True`` (django-redis's): only if ``key`` has no value, atomically across processes,
        as ``add()``; then return whether it was stored.
        """
        if nx:
            return self.add(key, value, timeout, version)
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:
            self._cache.delete(key)
        else:
            self._cache.set(key, value, ttl=seconds)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item, in one round trip to Redis; return the keys that failed (none)."""
        items = {self.make_and_validate_key(key, version=version): value for key, value in data.items()}
        seconds = self._seconds(timeout)
        if seconds is None:
            run(flows.delete(self._tiers, tuple(items)))
        elif items:
            self._cache.set_many(items, ttl=seconds)
        return []

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Store ``value`` only if ``key`` has none; return whether it was stored (atomic in Redis)."""
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:  # added and gone at once, as Django's Redis backend has it
            return key not in self._cache.get_many((key,))
        _, added = run(
            flows.update(self._tiers, key, lambda old: value if old is MISSING else flows.UNCHANGED, seconds)
        )
        return added is not flows.UNCHANGED

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether it had a value."""
        key = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        if seconds is None:
            return self._delete(key)
        old, _ = run(
            flows.update(self._tiers, key, lambda old: flows.UNCHANGED if old is MISSING else old, seconds)
        )
        return old is not MISSING

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to ``key``'s value and return it (atomic in Redis); ValueError if none."""
        name = self.make_and_validate_key(key, version=version)

        def add_delta(old: Any) -> Any:
            if old is MISSING:
                raise ValueError(f"Key '{key}' not found")
            return old + delta

        _, new = run(flows.update(self._tiers, name, add_delta, None, keep_ttl=True))
        return new

    # (decr, incr_version, decr_version, get_or_set: BaseCache's, over the methods here.)

    # -- deleting ---------------------------------------------------------------------------

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Drop ``key``; return whether it had a value."""
        return self._delete(self.make_and_validate_key(key, version=version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Drop every key, in one round trip to Redis."""
        names = tuple(self.make_and_validate_key(key, version=version) for key in keys)
        if names:
            run(flows.delete(self._tiers, names))

    def clear(self) -> None:
        """Drop every entry of this cache's namespace, in every process (no key scan)."""
        self._cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Keep the connections: Django calls this after every request.

        ``tiercache.close()`` closes them when the process shuts down.
        """

    # -- helpers ----------------------------------------------------------------------------

    def _delete(self, key: str) -> bool:
        existed = key in self._cache.get_many((key,))
        self._cache.delete(key)
        return existed

    def _seconds(self, timeout: Any) -> float | None:
        """Return the lifetime ``timeout`` asks for, FOREVER for None, None for "expire now"."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return FOREVER
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"TieredCache: timeout must be a number of seconds or None, not {timeout!r}")
        return float(timeout) if timeout > 0 else None


def _location(server: str | Iterable[str]) -> str | None:
    if isinstance(server, str):
        return server or None
    locations = list(server)
    if len(locations) > 1:
        raise ValueError(
            "TieredCache: LOCATION must be one Redis URL (a cluster or Sentinel URL names several "
            f"servers itself), not {len(locations)} of them"
        )
    return locations[0] if locations else None


def _shared_cache(location: str | None, options: dict[str, Any]) -> MultiTierCache:
    """Return the process's one cache for these settings.

    Django makes a backend object per thread: they share one L1 and one set of connections.
    """
    location, options = from_other_backends(location, options)
    fields = {field.name for field in dataclasses.fields(MultiTierCacheSettings)}
    chosen: dict[str, Any] = {"namespace": "django"}
    for name, value in options.items():
        if name in _DJANGO_OPTIONS:
            continue
        if not isinstance(name, str) or name.lower() not in fields or name.lower() == "l2_url":
            raise ValueError(
                f"TieredCache: unknown OPTIONS entry {name!r} (it takes MultiTierCacheSettings' "
                "fields in capitals, such as L1_MAX_ENTRIES, NAMESPACE or SIGNING_KEY, and "
                "django-redis's where they mean something: see docs/services.md)"
            )
        chosen[name.lower()] = value
    if location is not None:
        chosen["l2_url"] = location
    elif "l2_enabled" not in chosen:
        raise ValueError("TieredCache: LOCATION must be a Redis URL (or set OPTIONS L2_ENABLED to False)")
    key = tuple(sorted((name, repr(value)) for name, value in chosen.items()))
    with _shared_lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = MultiTierCache(MultiTierCacheSettings(**chosen))
        return cache
