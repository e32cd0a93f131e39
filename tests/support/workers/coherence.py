"""A reader for the cross-process staleness tests.

``python -m tests.support.workers.coherence URL NS LAST [tags]``.

It serves ``current("k")`` (cached in L1 for an hour) in a loop, as a busy service would, and
prints one JSON line: for each version it saw, the monotonic time it first saw it.
"""

from __future__ import annotations

import json
import sys
import time

import redis

import tiercache
from tiercache import tiered_cache


def main(url: str, namespace: str, last: int, tagged: bool = False) -> None:
    """Serve until version ``last`` is seen (or a minute passes); report first sightings.

    ``tagged``: the function carries the tag ``item:KEY``, invalidated by tag.
    """
    tiercache.configure(redis_url=url, namespace=namespace)
    truth = redis.Redis.from_url(url)
    tags = (lambda key: [f"item:{key}"]) if tagged else None

    @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="coherence.current", tags=tags)
    def current(key: str) -> int:
        return int(truth.get(f"truth:{namespace}:{key}") or 0)

    current("k")
    print("ready", flush=True)
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        version = current("k")
        if version not in seen:
            seen[version] = time.monotonic()
            if version >= last:
                break
        time.sleep(0.0005)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:] == ["tags"])
