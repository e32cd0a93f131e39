"""A burst of cold async calls with the default timeouts: time, errors, writes, connections.

``python -m benchmarks.burst [N ...]``. A warm process (its connections open) gathers N calls of
different keys at once, each a miss that reads L2 and writes its value back. The test suite
checks the same burst by counting connections; the time and the default 0.1 s timeout belong
here, where a loaded machine's slowness is a figure rather than a failure.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis

import tiercache
from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess


def measure(url: str, size: int, run: int) -> str:
    tiercache.configure(redis_url=url)  # default timeouts: 0.1 s per command, 0.25 s to connect

    @tiered_cache(ttl_l1=None, ttl_l2=600, name=f"bench.burst.{run}")
    async def get(i: int) -> int:
        return i

    client = redis.Redis.from_url(url)

    async def burst() -> tuple[float, int]:
        await get(-1)
        opened = client.info("stats")["total_connections_received"]
        start = time.perf_counter()
        await asyncio.gather(*(get(i) for i in range(size)))
        elapsed = time.perf_counter() - start
        return elapsed, client.info("stats")["total_connections_received"] - opened

    elapsed, opened = asyncio.run(burst())
    stats = get.cache_stats()
    stored = sum(1 for key in client.scan_iter(f"{get.__tiercache__.coherence.key_prefix}*", count=1000))
    client.close()
    tiercache.close()
    return (
        f"| {size:,} | {elapsed:.2f} | {stored - 1:,} | {stats.l2_errors} | {stats.l2_saturated} | {opened} |"
    )


def main() -> int:
    sizes = [int(arg) for arg in sys.argv[1:]] or [500, 20_000, 50_000]
    server = RedisProcess(Path(tempfile.mkdtemp())).start()
    try:
        print("| calls | seconds | values stored | L2 errors | saturated | connections opened |")
        print("|---|---|---|---|---|---|")
        for run, size in enumerate(sizes):
            print(measure(server.url, size, run))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
