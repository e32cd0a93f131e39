"""A flood of forged "clear" announcements: what it costs an L1, unsigned and signed.

Anyone who can PUBLISH on ``<namespace>:invalidations`` can announce clears. Unsigned, each one
empties the function's L1 (a forged announcement can only cause misses, never plant values);
signed, a cache ignores what it cannot verify. A second process publishes as fast as it can
while this one calls a cached function over 100 keys.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import tiercache
from tiercache import tiered_cache

PUBLISHER = """
import sys, time, redis
from tiercache._l2.announcement import encode
url, channel, prefix, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = redis.Redis.from_url(url)
message = encode(channel, b"attacker", prefix, None, None)
sent, deadline = 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    pipe = client.pipeline(transaction=False)
    for _ in range(200):
        pipe.publish(channel, message)
    pipe.execute()
    sent += 200
print(sent / seconds)
"""
KEY = "a-benchmark-signing-key-0123456789"


@dataclass
class Row:
    signed: bool
    messages_per_second: float
    l1_hit_rate: float


def rows(url: str, seconds: float = 2.0) -> list[Row]:
    found = []
    for signed in (False, True):
        tiercache.configure(redis_url=url, signing_key=KEY if signed else None)

        @tiered_cache(ttl_l1=600, ttl_l2=3600, name=f"bench.flood.{signed}")
        def lookup(key: int) -> int:
            return key

        for key in range(100):
            lookup(key)
        cache = lookup.__tiercache__
        publisher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                PUBLISHER,
                url,
                cache.coherence.channel,
                cache.coherence.key_prefix,
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # the flood is under way
        before = lookup.cache_stats()
        deadline = time.monotonic() + seconds - 0.5
        while time.monotonic() < deadline:
            for key in range(100):
                lookup(key)
        after = lookup.cache_stats()
        out, _ = publisher.communicate(timeout=30)
        hits = (after.l1_hits - before.l1_hits) / max(after.calls - before.calls, 1)
        found.append(Row(signed, float(out.strip() or 0), hits))
    tiercache.configure(signing_key=None)
    return found
