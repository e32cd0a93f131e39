"""Strings planted past the bound: what reading them costs a process (security pass, item 5).

``python -m benchmarks.oversized [MiB]``. Plants MiB (default 256) under four value keys, a tag
key and the generation key of a real redis-server this starts, then has four threads call the
functions whose keys they are. Prints the wall time, the process's peak RSS growth, and whether
the keys were repaired. (The outside attack measured +1.46 GB and 17 s for four 256 MB readers.)
"""

from __future__ import annotations

import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import tiercache
from tiercache import tiered_cache
from tiercache._decorator.tag_names import digest_of, tag_key
from tiercache._tools.redis_process import RedisProcess


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (KiB on Linux)


def main(mib: int) -> None:
    server = RedisProcess(Path(tempfile.mkdtemp())).start()
    try:
        tiercache.configure(redis_url=server.url, namespace="bench-oversized")

        @tiered_cache(ttl_l1=None, name="bench.oversized.value")
        def value(n: int) -> int:
            return n

        @tiered_cache(ttl_l1=None, name="bench.oversized.tagged", tags=lambda n: [f"n:{n}"])
        def tagged(n: int) -> int:
            return n

        value(-1), tagged(-1)
        value.cache_clear()
        client = server.client()
        planted = b"7" * (mib << 20)
        for n in range(4):
            client.set(value.cache_key(n), planted)
        client.set(value.__tiercache__.generation_key, planted)
        client.set(tag_key(tagged.__tiercache__.namespace, digest_of("n:9")), planted)
        value.__tiercache__.remote.forget_generation()
        before = peak_rss_mib()
        for round_ in range(1, 4):
            start = time.perf_counter()
            threads = [threading.Thread(target=value, args=(n,)) for n in range(4)]
            threads.append(threading.Thread(target=tagged, args=(9,)))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
            sizes = [client.strlen(value.cache_key(n)) for n in range(4)]
            generation = client.strlen(value.__tiercache__.generation_key)
            token = client.strlen(tag_key(tagged.__tiercache__.namespace, digest_of("n:9")))
            print(
                f"round {round_}: wall {elapsed:.3f} s, peak RSS +{peak_rss_mib() - before:.0f} MiB; now "
                f"value keys {sizes} bytes, generation {generation}, tag key {token}"
            )
            time.sleep(0.3)  # (past the breaker's first back-off)
        stats = value.cache_stats()
        print(f"  l2_rejected={stats.l2_rejected} l2_corrupt={stats.l2_corrupt} l2_errors={stats.l2_errors}")
    finally:
        tiercache.close()
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
