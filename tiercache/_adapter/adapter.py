"""The design note's cache adapter: explicit get/set/delete/clear over the same two tiers.

``MultiTierCacheAdapter`` (async, the design note's) and ``MultiTierCache`` (its sync twin) are
thin shells over the flows in ``flows``; ``MemoryCacheAdapter`` and ``MemoryCache`` are
the same with L2 off, so swapping one for the other is a one-line change.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from tiercache._adapter import flows
from tiercache._adapter.settings import MemoryCacheSettings, MultiTierCacheSettings
from tiercache._adapter.tiers import AdapterTiers
from tiercache._core.checks import MAX_SECONDS, Duration, as_seconds
from tiercache._core.closing import CloseReport, checked_timeout, last_repairs, report
from tiercache._core.shells import afinish, arun, run
from tiercache._l1.lru import Clock
from tiercache._l2.deployments import CLOSE_WAIT

__all__ = ["MemoryCache", "MemoryCacheAdapter", "MultiTierCache", "MultiTierCacheAdapter"]


class _Base:
    """What both twins share: settings, checks, and everything that needs no I/O."""

    def __init__(self, settings: MultiTierCacheSettings | None = None, *, clock: Clock | None = None) -> None:
        """Use ``settings`` (default: the defaults, overridden by ``TIERCACHE_*`` variables).

        ``clock`` is the seconds source for L1 expiry and L2 freshness; tests pass a fake one
        instead of sleeping.
        """
        owner = f"{type(self).__name__}()"
        if settings is not None and not isinstance(settings, MultiTierCacheSettings):
            raise TypeError(
                f"{owner}: settings must be a MultiTierCacheSettings, not {type(settings).__name__}"
            )
        if clock is not None and not callable(clock):
            raise TypeError(f"{type(self).__name__}(): clock must be a callable returning seconds")
        self.settings = settings if settings is not None else MultiTierCacheSettings.from_env()
        label = f"{type(self).__name__}({self.settings.namespace})"
        self._tiers = AdapterTiers(self.settings, label, clock or time.monotonic)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    def _key(self, method: str, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"{type(self).__name__}.{method}(): key must be a str, not {type(key).__name__}")
        return key

    def _keys(self, method: str, keys: Iterable[str]) -> tuple[str, ...]:
        if isinstance(keys, str):
            raise TypeError(f"{type(self).__name__}.{method}(): keys must be an iterable of str, not one str")
        return tuple(self._key(method, key) for key in keys)

    def _ttl(self, method: str, ttl: object) -> float | None:
        ttl = as_seconds(ttl)
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_SECONDS:
            raise ValueError(
                f"{type(self).__name__}.{method}(): ttl must be a number of seconds (or a timedelta) "
                f"> 0 and at most {MAX_SECONDS:,} (about 317 years), not {ttl!r}"
            )
        return float(ttl)

    def _items(self, method: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"{type(self).__name__}.{method}(): expected a mapping, not {type(mapping).__name__}"
            )
        return {self._key(method, key): value for key, value in mapping.items()}

    def invalidate_l1(self) -> None:
        """Drop every L1 entry: the next gets go to L2 (for data changed behind L2's back)."""
        self._tiers.coherence.drop_local(None)


class MultiTierCacheAdapter(_Base):
    """An async two-tier cache of explicit keys: L1 in-process, L2 in Redis.

    ``get`` looks in L1, then L2 (filling L1), else returns None; ``set`` writes through to
    both; ``delete`` and ``clear`` drop from both. A Redis that is down, slow or returns garbage
    never raises here: the adapter works from L1 and recovers by itself.
    """

    async def init(self) -> None:
        """Connect to L2 now rather than on first use; an unreachable Redis is logged, not raised."""
        await arun(flows.ping(self._tiers))

    async def get(self, key: str) -> Any:
        """Return the value of ``key`` from L1, else L2 (filling L1), else None."""
        found = await arun(flows.get_many(self._tiers, (self._key("get", key),)))
        return found.get(key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys found; one MGET fetches those L1 lacks."""
        return dict(await arun(flows.get_many(self._tiers, self._keys("get_many", keys))))

    async def set(self, key: str, value: Any, ttl: Duration | None = None) -> None:
        """Store ``value`` under ``key`` in both tiers, for ``ttl`` seconds if given."""
        items = {self._key("set", key): value}
        await afinish(flows.set_many(self._tiers, items, self._ttl("set", ttl)), self._tiers)

    async def set_many(self, mapping: Mapping[str, Any], ttl: Duration | None = None) -> None:
        """Store every item of ``mapping`` in both tiers, L2 in one pipelined round trip."""
        items = self._items("set_many", mapping)
        await afinish(flows.set_many(self._tiers, items, self._ttl("set_many", ttl)), self._tiers)

    async def delete(self, key: str) -> None:
        """Drop ``key`` from both tiers."""
        await afinish(flows.delete(self._tiers, (self._key("delete", key),)), self._tiers)

    async def clear(self) -> None:
        """Drop every entry of this adapter's namespace from both tiers (no key scan)."""
        await afinish(flows.clear(self._tiers), self._tiers)

    async def get_metrics(self) -> dict[str, Any]:
        """Return hit counts and rates per tier, latency, L1 size and L2 health."""
        return self._tiers.metrics()

    async def reset_metrics(self) -> None:
        """Start every counter again from zero."""
        self._tiers.reset_metrics()

    async def close(self, timeout: float = CLOSE_WAIT) -> CloseReport:
        """Close this adapter's Redis connections and its listener; report what was left pending.

        Deletes and clears made while Redis was unreachable get one last try; any still pending
        are logged and in the report. Safe to call twice; using the adapter again reopens it.
        """
        owner = f"{type(self).__name__}.close()"
        seconds = checked_timeout(timeout, owner)
        await arun(last_repairs(self._tiers))
        endpoint = self._tiers.endpoint()
        running = await endpoint.aclose(seconds) if endpoint is not None else 0
        return report((self._tiers,), owner, still_running=running)

    async def aclose(self, timeout: float = CLOSE_WAIT) -> CloseReport:
        """Do what close() does (under the name ``contextlib.aclosing`` and frameworks look for)."""
        return await self.close(timeout)

    async def __aenter__(self) -> MultiTierCacheAdapter:
        await self.init()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


class MultiTierCache(_Base):
    """The sync twin of MultiTierCacheAdapter: the same methods, called without ``await``."""

    def init(self) -> None:
        """Connect to L2 now rather than on first use; an unreachable Redis is logged, not raised."""
        run(flows.ping(self._tiers))

    def get(self, key: str) -> Any:
        """Return the value of ``key`` from L1, else L2 (filling L1), else None."""
        return run(flows.get_many(self._tiers, (self._key("get", key),))).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys found; one MGET fetches those L1 lacks."""
        return dict(run(flows.get_many(self._tiers, self._keys("get_many", keys))))

    def set(self, key: str, value: Any, ttl: Duration | None = None) -> None:
        """Store ``value`` under ``key`` in both tiers, for ``ttl`` seconds if given."""
        run(flows.set_many(self._tiers, {self._key("set", key): value}, self._ttl("set", ttl)))

    def set_many(self, mapping: Mapping[str, Any], ttl: Duration | None = None) -> None:
        """Store every item of ``mapping`` in both tiers, L2 in one pipelined round trip."""
        run(flows.set_many(self._tiers, self._items("set_many", mapping), self._ttl("set_many", ttl)))

    def delete(self, key: str) -> None:
        """Drop ``key`` from both tiers."""
        run(flows.delete(self._tiers, (self._key("delete", key),)))

    def clear(self) -> None:
        """Drop every entry of this cache's namespace from both tiers (no key scan)."""
        run(flows.clear(self._tiers))

    def get_metrics(self) -> dict[str, Any]:
        """Return hit counts and rates per tier, latency, L1 size and L2 health."""
        return self._tiers.metrics()

    def reset_metrics(self) -> None:
        """Start every counter again from zero."""
        self._tiers.reset_metrics()

    def close(self, timeout: float = CLOSE_WAIT) -> CloseReport:
        """Close this cache's Redis connections and its listener; report what was left pending.

        Deletes and clears made while Redis was unreachable get one last try; any still pending
        are logged and in the report. Safe to call twice; using the cache again reopens it.
        """
        owner = f"{type(self).__name__}.close()"
        seconds = checked_timeout(timeout, owner)
        run(last_repairs(self._tiers))
        endpoint = self._tiers.endpoint()
        running = endpoint.close(seconds) if endpoint is not None else 0
        return report((self._tiers,), owner, still_running=running)

    def __enter__(self) -> MultiTierCache:
        self.init()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _memory_settings(owner: str, settings: MemoryCacheSettings | None) -> MultiTierCacheSettings:
    if settings is not None and not isinstance(settings, MemoryCacheSettings):
        raise TypeError(f"{owner}(): settings must be a MemoryCacheSettings, not {type(settings).__name__}")
    return (settings if settings is not None else MemoryCacheSettings.from_env()).as_multi_tier()


class MemoryCacheAdapter(MultiTierCacheAdapter):
    """MultiTierCacheAdapter's interface over L1 alone (no Redis)."""

    def __init__(self, settings: MemoryCacheSettings | None = None, *, clock: Clock | None = None) -> None:
        """Use ``settings`` (default: the defaults, overridden by ``TIERCACHE_*`` variables)."""
        super().__init__(_memory_settings(type(self).__name__, settings), clock=clock)


class MemoryCache(MultiTierCache):
    """MultiTierCache's interface over L1 alone (no Redis)."""

    def __init__(self, settings: MemoryCacheSettings | None = None, *, clock: Clock | None = None) -> None:
        """Use ``settings`` (default: the defaults, overridden by ``TIERCACHE_*`` variables)."""
        super().__init__(_memory_settings(type(self).__name__, settings), clock=clock)
