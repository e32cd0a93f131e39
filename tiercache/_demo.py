"""``python -m tiercache demo``: two slow lookups, cached, called by a skewed request stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tiercache
from tiercache import tiered_cache
from tiercache._redis_process import RedisProcess, redis_server_binary

__all__ = ["main"]


@contextlib.contextmanager
def _throwaway_redis() -> Iterator[str | None]:
    """Yield the URL of a redis-server started for this run (stopped after), or None."""
    if redis_server_binary() is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as directory:
        server = RedisProcess(Path(directory)).start()
        try:
            yield server.url
        finally:
            server.stop()


@tiered_cache(ttl_l1=600, ttl_l2=86400, name="demo.resolve_adapter")
def resolve_adapter(category: str, name: str) -> dict[str, Any]:
    """Pretend to import and configure an adapter: slow, and the same answer every time."""
    time.sleep(0.02)
    return {"category": category, "name": name, "module": f"adapters.{category}.{name}", "pool_size": 8}


@tiered_cache(ttl_l1=60, ttl_l2=3600, name="demo.get_session")
async def get_session(session_id: str) -> dict[str, Any] | None:
    """Pretend to fetch a session from a database."""
    await asyncio.sleep(0.005)
    return {"id": session_id, "user": f"user-{session_id[-3:]}", "roles": ("reader",)}


def _zipf(count: int, n: int, rng: random.Random) -> list[int]:
    weights = [1 / (rank + 1) for rank in range(n)]
    return rng.choices(range(n), weights=weights, k=count)


async def _serve(requests: int) -> None:
    rng = random.Random(7)
    categories = ["storage", "queue", "cache", "search"]
    names = ["s3", "gcs", "azure", "local", "minio"]
    for index in _zipf(requests, 2000, rng):
        resolve_adapter(categories[index % 4], names[index % 5])
        await get_session(f"session-{index:05d}")


def main(requests: int = 2000) -> int:
    """Run the demo and print each function's stats; return the exit code."""
    url = os.environ.get("TIERCACHE_REDIS_URL")
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(_throwaway_redis())
        if url is None:
            print("redis-server is not installed and TIERCACHE_REDIS_URL is unset: running L1 only.")
            tiercache.configure(l2=False)
        else:
            tiercache.configure(redis_url=url, namespace=f"demo-{os.getpid()}")
            print(f"L2 at {url}")
        started = time.perf_counter()
        asyncio.run(_serve(requests))
        elapsed = time.perf_counter() - started
    print(f"{requests} requests in {elapsed:.2f}s\n")
    columns = ("calls", "L1 hits", "L2 hits", "misses", "hit rate", "p50 ms", "p99 ms")
    header = f"{'function':24} " + " ".join(f"{c:>8}" for c in columns)
    print(header)
    print("-" * len(header))
    for name, stats in tiercache.stats().items():
        print(
            f"{name:24} {stats.calls:8} {stats.l1_hits:8} {stats.l2_hits:8} {stats.misses:8} "
            f"{stats.combined_hit_rate:8.1%} {stats.p50_ms:8.3f} {stats.p99_ms:8.3f}"
        )
    return 0
