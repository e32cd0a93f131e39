"""L2 work against the floor: raw redis-py GET/SET + msgpack on the same local redis-server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import msgpack
import redis
import redis.asyncio

from benchmarks.harness import Scenario, Subject, ran_once, timed_async, timed_sync
from tiercache import tiered_cache

VALUE = {
    "category": "storage",
    "name": "s3",
    "module": "adapters.storage.s3",
    "pool_size": 8,
    "regions": ["eu-west-1", "us-east-1"],
}


def _body(runs: list[int]) -> Callable[[str], dict[str, Any]]:
    def lookup(key: str) -> dict[str, Any]:
        runs.append(1)
        return VALUE

    return lookup


def _async_body(runs: list[int]) -> Callable[[str], Any]:
    async def lookup(key: str) -> dict[str, Any]:
        runs.append(1)
        return VALUE

    return lookup


def sync_hit(url: str) -> Scenario:
    client = redis.Redis.from_url(url)
    client.set("raw:hit", msgpack.packb(VALUE))
    runs: list[int] = []
    cached = tiered_cache(ttl_l1=None, ttl_l2=3600, name="bench.sync_hit")(_body(runs))
    cached("k")  # the one miss; every measured call is an L2 hit
    return Scenario(
        "sync L2 hit (L1 off)",
        "raw redis.Redis.get + msgpack.unpackb",
        [
            Subject(
                "raw redis.Redis.get + msgpack.unpackb",
                timed_sync('unpackb(client.get("raw:hit"))', {"unpackb": msgpack.unpackb, "client": client}),
            ),
            Subject("tiercache", timed_sync('f("k")', {"f": cached}), ran_once(runs, "tiercache")),
        ],
        operations=3000,
        target="<= 1.05x raw",
        limit=1.05,
    )


def miss_path(url: str) -> Scenario:
    client = redis.Redis.from_url(url)
    runs: list[int] = []
    cached = tiered_cache(ttl_l1=None, ttl_l2=3600, name="bench.miss")(_body(runs))
    numbers = itertools.count()
    raw_numbers = itertools.count()
    packb = msgpack.packb

    def raw() -> None:
        key = f"raw:miss:{next(raw_numbers)}"
        if client.get(key) is None:
            client.set(key, packb(VALUE), px=3_600_000)

    def every_call_missed() -> None:
        if len(runs) != next(numbers):  # every call so far took one number and ran the body
            raise AssertionError("tiercache: a miss-path call did not run the body")

    return Scenario(
        "miss path (L2 GET miss + body + conditional SET)",
        "raw GET + SET",
        [
            Subject("raw GET + SET", timed_sync("raw()", {"raw": raw})),
            Subject(
                "tiercache",
                timed_sync("f(str(next(keys)))", {"f": cached, "keys": numbers}),
                every_call_missed,
            ),
        ],
        operations=2000,
        target="<= 1.10x raw",
        limit=1.10,
    )


def async_hit(url: str, loop: asyncio.AbstractEventLoop) -> Scenario:
    from aiocache import Cache, cached
    from cashews import Cache as CashewsCache

    client = redis.asyncio.Redis.from_url(url)
    loop.run_until_complete(client.set("raw:ahit", msgpack.packb(VALUE)))
    subjects = [
        Subject(
            "raw redis.asyncio get + unpackb",
            timed_async(
                'unpackb(await client.get("raw:ahit"))', {"unpackb": msgpack.unpackb, "client": client}, loop
            ),
        )
    ]
    runs: list[int] = []
    ours = tiered_cache(ttl_l1=None, ttl_l2=3600, name="bench.async_hit")(_async_body(runs))
    loop.run_until_complete(ours("k"))
    subjects.append(
        Subject("tiercache", timed_async('await g("k")', {"g": ours}, loop), ran_once(runs, "tiercache"))
    )

    cashews = CashewsCache()
    cashews.setup(url)
    cashews_runs: list[int] = []
    theirs = cashews(ttl="1h")(_async_body(cashews_runs))
    loop.run_until_complete(theirs("k"))
    subjects.append(
        Subject(
            "cashews (redis)",
            timed_async('await g("k")', {"g": theirs}, loop),
            ran_once(cashews_runs, "cashews"),
        )
    )

    host, port = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    aio_runs: list[int] = []
    # Its default serializer: with MsgPackSerializer its Redis backend fails to decode its own bytes.
    aio = cached(ttl=3600, cache=Cache.REDIS, endpoint=host, port=int(port), namespace="b")(
        _async_body(aio_runs)
    )
    loop.run_until_complete(aio("k"))
    subjects.append(
        Subject(
            "aiocache (redis)", timed_async('await g("k")', {"g": aio}, loop), ran_once(aio_runs, "aiocache")
        )
    )
    return Scenario(
        "async L2 hit (L1 off)",
        "raw redis.asyncio get + unpackb",
        subjects,
        operations=3000,
        target="<= 1.05x raw",
        limit=1.05,
    )


def concurrent_hits(url: str, loop: asyncio.AbstractEventLoop) -> Scenario:
    client = redis.asyncio.Redis.from_url(url)
    keys = [f"raw:c:{i}" for i in range(100)]
    for key in keys:
        loop.run_until_complete(client.set(key, msgpack.packb(VALUE)))
    runs: list[int] = []
    ours = tiered_cache(ttl_l1=None, ttl_l2=3600, name="bench.concurrent")(_async_body(runs))
    names = [str(i) for i in range(100)]
    unpackb = msgpack.unpackb

    async def raw_batch() -> None:
        values = await asyncio.gather(*(client.get(k) for k in keys))
        for value in values:
            unpackb(value)

    async def our_batch() -> None:
        await asyncio.gather(*(ours(k) for k in names))

    loop.run_until_complete(our_batch())  # the hundred misses; every measured read is an L2 hit

    def hundred_runs() -> None:
        if len(runs) != 100:
            raise AssertionError(f"tiercache: the body ran {len(runs)} times, not once per key")

    return Scenario(
        "100 concurrent async L2 hits on distinct keys",
        "raw: 100 concurrent GETs + unpackb",
        [
            Subject(
                "raw: 100 concurrent GETs + unpackb", timed_async("await batch()", {"batch": raw_batch}, loop)
            ),
            Subject("tiercache", timed_async("await batch()", {"batch": our_batch}, loop), hundred_runs),
        ],
        operations=50,
        unit="ns/100 reads",
        target="throughput >= 3x raw (time <= 0.33x)",
        limit=1 / 3,
    )


def django_set(url: str) -> Scenario:
    """Django's low-level cache.set: its own RedisCache against TieredCache (coherent, and not)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django.core.cache.backends.redis import RedisCache

    from tiercache.contrib.django import TieredCache

    backends = {
        "Django RedisCache": RedisCache(url, {}),
        "tiercache": TieredCache(url, {"OPTIONS": {"NAMESPACE": "bench-django"}}),
        "tiercache, COHERENT=False": TieredCache(
            url, {"OPTIONS": {"NAMESPACE": "bench-django-solo", "COHERENT": False}}
        ),
    }
    keys = [f"session:{i}" for i in range(100)]

    def stored_everywhere() -> None:
        for label, backend in backends.items():
            if backend.get(keys[0]) != VALUE:
                raise AssertionError(f"{label}: cache.set did not store the value")

    return Scenario(
        "Django cache.set (one key; TieredCache announces it to other processes)",
        "Django RedisCache",
        [
            Subject(
                label,
                timed_sync("s(next(k), V)", {"s": backend.set, "k": itertools.cycle(keys), "V": VALUE}),
                stored_everywhere,
            )
            for label, backend in backends.items()
        ],
        operations=2000,
        target="<= 1.5x RedisCache",
        limit=1.5,
    )
