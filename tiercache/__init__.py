"""tiercache: memoize slow lookups in an in-process L1 and a shared Redis L2."""

from ._adapter import MemoryCache, MemoryCacheAdapter, MultiTierCache, MultiTierCacheAdapter
from ._adapter_settings import MemoryCacheSettings, MultiTierCacheSettings
from ._codec import register_type
from ._config import Settings, configure
from ._decorator import tiered_cache
from ._errors import InvalidationError, ReentrantCallError
from ._keys import UnkeyableArgumentError
from ._protocols import (
    AsyncCachedFunction,
    BoundAsyncCachedFunction,
    BoundCachedFunction,
    CachedFunction,
    CacheInfo,
)
from ._registry import stats
from ._stats import CacheStats

__all__ = [
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheInfo",
    "CacheStats",
    "CachedFunction",
    "InvalidationError",
    "MemoryCache",
    "MemoryCacheAdapter",
    "MemoryCacheSettings",
    "MultiTierCache",
    "MultiTierCacheAdapter",
    "MultiTierCacheSettings",
    "ReentrantCallError",
    "Settings",
    "UnkeyableArgumentError",
    "configure",
    "register_type",
    "stats",
    "tiered_cache",
]
