"""Process A of the cross-process invalidation race.

``python -m tests.support.workers.race URL NS TRUTH_PORT``.

It reads commands on stdin. ``compute KEY`` calls the cached ``lookup(KEY)`` (``acompute KEY``
its async twin, on an event loop of its own; ``tcompute KEY`` a twin tagged ``item:KEY``), whose
body reads the truth (a plain Redis key, read directly, not through the cache's URL) and prints ``returning
VALUE`` just before it returns; once the call is over it prints ``done VALUE``. The test, as
process B, changes the truth and invalidates as soon as it sees ``returning``.
"""

from __future__ import annotations

import asyncio
import sys

import redis

import tiercache
from tiercache import tiered_cache


def main(url: str, namespace: str, truth_port: int) -> None:
    """Serve ``compute KEY`` commands until stdin closes."""
    tiercache.configure(redis_url=url, namespace=namespace, timeout=2.0)
    truth = redis.Redis(port=truth_port)

    @tiered_cache(ttl_l1=600, ttl_l2=600, name="race.lookup")
    def lookup(key: str) -> str:
        value = (truth.get(f"truth:{namespace}:{key}") or b"").decode()
        print(f"returning {value}", flush=True)
        return value

    @tiered_cache(ttl_l1=600, ttl_l2=600, name="race.lookup")
    async def alookup(key: str) -> str:
        return lookup.__wrapped__(key)  # the same body, run by the async twin's flow

    @tiered_cache(ttl_l1=600, ttl_l2=600, name="race.tagged", tags=lambda key: [f"item:{key}"])
    def tagged(key: str) -> str:
        return lookup.__wrapped__(key)

    loop = asyncio.new_event_loop()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, key = line.strip().partition(" ")
        if command == "compute":
            print(f"done {lookup(key)}", flush=True)
        elif command == "tcompute":
            print(f"done {tagged(key)}", flush=True)
        elif command == "acompute":
            print(f"done {loop.run_until_complete(alookup(key))}", flush=True)
    loop.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
