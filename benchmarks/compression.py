"""Compressed L2 values: bytes stored and time per L2 hit, for JSON-like values of three sizes.

Each value is a list of user records (what an API caches) encoded to about 1 KB, 100 KB and
1 MB of msgpack; it is stored uncompressed, with zlib and with zstd, on the run's loopback
redis-server, and read back through a function whose L1 is off, so every call is an L2 hit
(GET, inflate, decode). Beside them: a raw redis-py GET + msgpack.unpackb of the uncompressed
encoding. Medians of interleaved repeats.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack
import redis

import tiercache
from tiercache import tiered_cache
from tiercache._core.checks import DEFAULT_COMPRESS_MIN_BYTES
from tiercache._l2 import compression

SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}
MODES = ("none", "zlib", "zstd")


@dataclass(frozen=True)
class CompressionRow:
    size: str
    encoded: int  # bytes of the msgpack encoding
    stored: dict[str, int]  # bytes in Redis per mode (envelope included)
    hit_us: dict[str, float]  # per L2 hit, per mode; "raw" for GET + unpackb


def records(target: int) -> list[dict[str, Any]]:
    """User records until their encoding reaches ``target`` bytes."""
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    while len(msgpack.packb(rows)) < target:
        i = len(rows)
        rows.append(
            {
                "id": i,
                "name": f"user-{i}",
                "email": f"user{i}@example.com",
                "active": i % 3 == 0,
                "score": round(rng.random(), 4),
                "roles": ["reader", "writer", "admin"][: i % 4],
            }
        )
    return rows


@contextmanager
def _mode(mode: str) -> Iterator[None]:
    saved = compression._zstd
    if mode == "zlib":
        compression._zstd = None
    tiercache.configure(compress_min_bytes=None if mode == "none" else 1)
    try:
        yield
    finally:
        compression._zstd = saved
        tiercache.configure(compress_min_bytes=DEFAULT_COMPRESS_MIN_BYTES)


def _returning(value: Any) -> Callable[[str], Any]:
    def lookup(key: str) -> Any:
        return value

    return lookup


def _per_call_us(call: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def rows(url: str, repeats: int = 8) -> list[CompressionRow]:
    client = redis.Redis.from_url(url)
    found = []
    for size, target in SIZES.items():
        value = records(target)
        encoded = msgpack.packb(value)
        client.set("raw:compression", encoded)
        calls = max(5, 20_000_000 // (len(encoded) * 50))
        subjects: dict[str, Callable[[], Any]] = {
            "raw": lambda: msgpack.unpackb(client.get("raw:compression"))
        }
        stored = {}
        for mode in MODES:
            if mode == "zstd" and not compression.has_zstd():
                raise RuntimeError("the compression benchmark needs zstd: pip install 'tiercache[zstd]'")
            with _mode(mode):
                cached = tiered_cache(ttl_l1=None, ttl_l2=3600, name=f"bench.compression.{mode}.{target}")(
                    _returning(value)
                )
                cached("k")
                stored[mode] = client.strlen(cached.cache_key("k"))
                if cached("k") != value:
                    raise AssertionError(f"compression {mode}: the value read back differs")
            subjects[mode] = lambda cached=cached: cached("k")
        samples: dict[str, list[float]] = {name: [] for name in subjects}
        names = list(subjects)
        for repeat in range(repeats):
            # Each round in another order: whichever runs first in a round is measured slower.
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_per_call_us(subjects[name], calls))
        medians = {name: statistics.median(times) for name, times in samples.items()}
        found.append(CompressionRow(size, len(encoded), stored, medians))
    client.delete("raw:compression")
    return found


def table(found: list[CompressionRow]) -> list[str]:
    lines = [
        "| value | encoded | stored: none | zlib | zstd | hit µs: raw GET | none | zlib | zstd |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in found:
        stored = " | ".join(f"{row.stored[mode]:,}" for mode in MODES)
        hits = " | ".join(f"{row.hit_us[name]:,.1f}" for name in ("raw", *MODES))
        lines.append(f"| {row.size} | {row.encoded:,} | {stored} | {hits} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.compression, against TIERCACHE_REDIS_URL
    print("\n".join(table(rows(tiercache.configure().redis_url))))
