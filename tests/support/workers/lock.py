"""A worker process for the cross-process stampede test (imported by spawned children)."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

import tiercache
from tiercache import tiered_cache


def run(url: str, namespace: str, lock: bool, start: Any, results: Any) -> None:
    """Call one cold key from four threads at once; report what each thread got."""
    tiercache.configure(redis_url=url, namespace=namespace)
    counter = redis.Redis.from_url(url)

    @tiered_cache(lock=lock, name="lockworker.slow")
    def slow(key: str) -> str:
        counter.incr(f"{namespace}:executions")
        time.sleep(0.3)
        return f"value-{key}"

    got: list[str] = []
    start.wait()
    threads = [threading.Thread(target=lambda: got.append(slow("cold"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(got)
