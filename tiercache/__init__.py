"""tiercache: memoize slow lookups in an in-process L1 and a shared Redis L2."""

from tiercache._adapter.adapter import (
    MemoryCache,
    MemoryCacheAdapter,
    MultiTierCache,
    MultiTierCacheAdapter,
)
from tiercache._adapter.settings import MemoryCacheSettings, MultiTierCacheSettings
from tiercache._core.closing import CloseReport
from tiercache._core.stats import CacheStats
from tiercache._decorator.batch import tiered_cache_many
from tiercache._decorator.config import Settings, configure
from tiercache._decorator.decorator import tiered_cache
from tiercache._decorator.keys import UnkeyableArgumentError
from tiercache._decorator.policies import NOT_NONE
from tiercache._decorator.protocols import (
    NO_VALUE,
    AsyncBatchCachedFunction,
    AsyncCachedFunction,
    BatchCachedFunction,
    BoundAsyncCachedFunction,
    BoundCachedFunction,
    CachedFunction,
    CacheInfo,
    NoValue,
)
from tiercache._decorator.registry import stats
from tiercache._decorator.tags import ainvalidate_tags, invalidate_tags
from tiercache._decorator.warming import WarmReport
from tiercache._errors import ComputeTimeoutError, InvalidationError, ReentrantCallError
from tiercache._l2.codec import register_type
from tiercache._lifecycle import aclose, close

__all__ = [
    "NOT_NONE",
    "NO_VALUE",
    "AsyncBatchCachedFunction",
    "AsyncCachedFunction",
    "BatchCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheInfo",
    "CacheStats",
    "CachedFunction",
    "CloseReport",
    "ComputeTimeoutError",
    "InvalidationError",
    "MemoryCache",
    "MemoryCacheAdapter",
    "MemoryCacheSettings",
    "MultiTierCache",
    "MultiTierCacheAdapter",
    "MultiTierCacheSettings",
    "NoValue",
    "ReentrantCallError",
    "Settings",
    "UnkeyableArgumentError",
    "WarmReport",
    "aclose",
    "ainvalidate_tags",
    "close",
    "configure",
    "invalidate_tags",
    "register_type",
    "stats",
    "tiered_cache",
    "tiered_cache_many",
]
