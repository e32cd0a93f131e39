"""tiercache: memoize slow lookups in an in-process L1 and a shared Redis L2."""

from tiercache._adapter.adapter import (
    MemoryCache,
    MemoryCacheAdapter,
    MultiTierCache,
    MultiTierCacheAdapter,
)
from tiercache._adapter.settings import MemoryCacheSettings, MultiTierCacheSettings
from tiercache._core.stats import CacheStats
from tiercache._decorator.config import Settings, configure
from tiercache._decorator.decorator import tiered_cache
from tiercache._decorator.keys import UnkeyableArgumentError
from tiercache._decorator.protocols import (
    AsyncCachedFunction,
    BoundAsyncCachedFunction,
    BoundCachedFunction,
    CachedFunction,
    CacheInfo,
)
from tiercache._decorator.registry import stats
from tiercache._errors import InvalidationError, ReentrantCallError
from tiercache._l2.codec import register_type

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
