"""Instructions per call under callgrind: what a shared machine's noise cannot move.

``python -m benchmarks.instructions`` (valgrind must be installed). Each scenario runs in a
child Python under ``valgrind --tool=callgrind`` twice, with two iteration counts; the
difference of the two totals divided by the difference of the counts is one call's cost, with
start-up, imports and set-up cancelled out. L2 scenarios use a redis-server started here.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from tiercache._tools.redis_process import RedisProcess

#: name -> (set-up, the statement measured[, a check run after]); ``URL`` is the redis-server's.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "raw redis.Redis.get + msgpack.unpackb": (
        """
        import msgpack, redis
        client = redis.Redis.from_url(URL)
        client.set("raw:hit", msgpack.packb({"name": "s3", "regions": ["eu-west-1"]}))
        """,
        'msgpack.unpackb(client.get("raw:hit"))',
    ),
    "raw Connection.send_command + read_response + unpackb": (
        """
        import msgpack, redis
        client = redis.Redis.from_url(URL)
        client.set("raw:hit", msgpack.packb({"name": "s3", "regions": ["eu-west-1"]}))
        connection = client.connection_pool.get_connection()
        def get():
            connection.send_command("GET", "raw:hit")
            return msgpack.unpackb(connection.read_response())
        """,
        "get()",
    ),
    "tiercache sync L2 hit (L1 off)": (
        """
        import tiercache
        # (a generous timeout: under valgrind Python runs some fifty times slower)
        tiercache.configure(redis_url=URL, namespace="instructions", timeout=5.0, connect_timeout=5.0)
        runs = []
        @tiercache.tiered_cache(ttl_l1=None, ttl_l2=3600, name="instructions.hit")
        def lookup(key):
            runs.append(1)
            return {"name": "s3", "regions": ["eu-west-1"]}
        lookup("k")
        """,
        'lookup("k")',
        "assert len(runs) <= 1 and lookup.cache_stats().l2_errors == 0, lookup.cache_stats()",
    ),
    "raw redis.asyncio get + msgpack.unpackb": (
        """
        import asyncio, msgpack, redis.asyncio
        loop = asyncio.new_event_loop()
        client = redis.asyncio.Redis.from_url(URL)
        value = msgpack.packb({"name": "s3", "regions": ["eu-west-1"]})
        loop.run_until_complete(client.set("raw:hit", value))
        async def get():
            return msgpack.unpackb(await client.get("raw:hit"))
        """,
        "loop.run_until_complete(get())",
    ),
    # Floors under the async hit: the loop alone, then a GET read off a socket by hiredis with no
    # client around it. (The benchmark calls run_until_complete once per hit, as these do.)
    "floor: asyncio run_until_complete of a future another callback sets": (
        """
        import asyncio
        loop = asyncio.new_event_loop()
        async def turn():
            done = loop.create_future()
            loop.call_soon(done.set_result, 1)
            return await done
        """,
        "loop.run_until_complete(turn())",
    ),
    "floor: asyncio.Protocol + hiredis.Reader GET + msgpack.unpackb": (
        """
        import asyncio, hiredis, msgpack, redis
        redis.Redis.from_url(URL).set("raw:hit", msgpack.packb({"name": "s3", "regions": ["eu-west-1"]}))
        loop = asyncio.new_event_loop()
        class Replies(asyncio.Protocol):
            def __init__(self):
                self.reader, self.waiter = hiredis.Reader(), None
            def connection_made(self, transport):
                self.transport = transport
            def data_received(self, data):
                self.reader.feed(data)
                reply = self.reader.gets()
                if reply is not False:
                    self.waiter.set_result(reply)
        host, port = URL.split("//")[1].split("/")[0].split(":")
        _, replies = loop.run_until_complete(loop.create_connection(Replies, host, int(port)))
        packed = hiredis.pack_command(("GET", "raw:hit"))
        async def get():
            replies.waiter = loop.create_future()
            replies.transport.write(packed)
            return msgpack.unpackb(await replies.waiter)
        """,
        "loop.run_until_complete(get())",
    ),
    "tiercache async L2 hit (L1 off)": (
        """
        import asyncio, tiercache
        loop = asyncio.new_event_loop()
        tiercache.configure(redis_url=URL, namespace="instructions", timeout=5.0, connect_timeout=5.0)
        runs = []
        @tiercache.tiered_cache(ttl_l1=None, ttl_l2=3600, name="instructions.ahit")
        async def lookup(key):
            runs.append(1)
            return {"name": "s3", "regions": ["eu-west-1"]}
        loop.run_until_complete(lookup("k"))
        """,
        'loop.run_until_complete(lookup("k"))',
        "assert len(runs) <= 1 and lookup.cache_stats().l2_errors == 0, lookup.cache_stats()",
    ),
    "raw redis.Redis GET + SET + packb (a miss by hand)": (
        """
        import itertools, msgpack, redis
        client = redis.Redis.from_url(URL)
        numbers = itertools.count()
        def miss():
            key = f"raw:miss:{next(numbers)}"
            if client.get(key) is None:
                client.set(key, msgpack.packb({"name": "s3", "regions": ["eu-west-1"]}), px=3_600_000)
        """,
        "miss()",
    ),
    "tiercache sync miss (L1 off)": (
        """
        import itertools, tiercache
        tiercache.configure(redis_url=URL, namespace="instructions", timeout=5.0, connect_timeout=5.0)
        runs = []
        @tiercache.tiered_cache(ttl_l1=None, ttl_l2=3600, name="instructions.miss")
        def lookup(key):
            runs.append(1)
            return {"name": "s3", "regions": ["eu-west-1"]}
        numbers = itertools.count()
        """,
        "lookup(str(next(numbers)))",
        # (every call ran the body, and what it wrote is in L2: the first key is a hit now)
        "stats = lookup.cache_stats()\nlookup('0')\n"
        "assert len(runs) == stats.misses == lookup.cache_stats().misses and stats.l2_errors == 0, stats",
    ),
    "Django RedisCache set": (
        """
        import itertools
        from django.conf import settings
        settings.configure()
        from django.core.cache.backends.redis import RedisCache
        cache = RedisCache(URL, {})
        keys = itertools.cycle([f"session:{i}" for i in range(100)])
        """,
        'cache.set(next(keys), {"name": "s3", "regions": ["eu-west-1"]})',
    ),
    "tiercache Django set (coherent: the listener hears its own announcement)": (
        """
        import itertools
        from django.conf import settings
        settings.configure()
        from tiercache.contrib.django import TieredCache
        cache = TieredCache(URL, {"OPTIONS": {
            "NAMESPACE": "instructions-django", "SOCKET_TIMEOUT": 5, "SOCKET_CONNECT_TIMEOUT": 5,
        }})
        keys = itertools.cycle([f"session:{i}" for i in range(100)])
        """,
        'cache.set(next(keys), {"name": "s3", "regions": ["eu-west-1"]})',
        # (the listener may be a few messages behind: let it catch up, so each set's
        # announcement is counted; then check the sets reached Redis)
        "import time, redis; time.sleep(2)\n"
        'assert len(redis.Redis.from_url(URL).keys("instructions-django:*")) >= 100',
    ),
    "tiercache Django set (COHERENT=False: no announcement)": (
        """
        import itertools
        from django.conf import settings
        settings.configure()
        from tiercache.contrib.django import TieredCache
        cache = TieredCache(URL, {"OPTIONS": {
            "NAMESPACE": "instructions-solo", "SOCKET_TIMEOUT": 5, "SOCKET_CONNECT_TIMEOUT": 5,
            "COHERENT": False,
        }})
        keys = itertools.cycle([f"session:{i}" for i in range(100)])
        """,
        'cache.set(next(keys), {"name": "s3", "regions": ["eu-west-1"]})',
        'import redis\nassert len(redis.Redis.from_url(URL).keys("instructions-solo:*")) >= 100',
    ),
    "raw redis.asyncio SET + packb": (
        """
        import asyncio, itertools, msgpack, redis.asyncio
        loop = asyncio.new_event_loop()
        client = redis.asyncio.Redis.from_url(URL)
        keys = itertools.cycle([f"raw:set:{i}" for i in range(100)])
        async def put(key):
            await client.set(key, msgpack.packb({"name": "s3", "regions": ["eu-west-1"]}), px=600_000)
        """,
        "loop.run_until_complete(put(next(keys)))",
    ),
    "tiercache async adapter set (coherent)": (
        """
        import asyncio, itertools
        from tiercache import MultiTierCacheAdapter, MultiTierCacheSettings
        loop = asyncio.new_event_loop()
        cache = MultiTierCacheAdapter(MultiTierCacheSettings(
            l2_url=URL, namespace="instructions-aset", l2_timeout=5, l2_connect_timeout=5,
        ))
        loop.run_until_complete(cache.init())
        keys = itertools.cycle([f"session:{i}" for i in range(100)])
        async def put(key):
            await cache.set(key, {"name": "s3", "regions": ["eu-west-1"]})
        """,
        "loop.run_until_complete(put(next(keys)))",
        "import time, redis; time.sleep(2)\n"
        'assert len(redis.Redis.from_url(URL).keys("instructions-aset:*")) >= 100',
    ),
    "functools.lru_cache hit": (
        """
        import functools
        @functools.lru_cache(maxsize=1000)
        def lookup(key):
            return key
        lookup("k")
        """,
        'lookup("k")',
    ),
    "tiercache L1 hit": (
        """
        import tiercache
        tiercache.configure(l2=False)
        @tiercache.tiered_cache(ttl_l1=3600)
        def lookup(key):
            return key
        lookup("k")
        """,
        'lookup("k")',
    ),
}


def _child(scenario: tuple[str, ...], url: str, iterations: int) -> str:
    setup, statement, *check = scenario
    return "\n".join(
        [
            f"URL = {url!r}",
            textwrap.dedent(setup),
            f"for _ in range({iterations}):",
            f"    {statement}",
            *check,  # (a scenario that measured the wrong path fails, not reports)
        ]
    )


def count(scenario: tuple[str, ...], url: str, iterations: int, folder: Path) -> int:
    """Return the instructions a child running the scenario ``iterations`` times executes."""
    script = folder / f"child-{iterations}.py"
    script.write_text(_child(scenario, url, iterations))
    out = folder / f"callgrind-{iterations}.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if done.returncode:
        raise RuntimeError(f"the scenario failed under callgrind:\n{done.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind said no total:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=1000)
    parser.add_argument("--high", type=int, default=3000)
    parser.add_argument("--only", help="scenarios whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiercache-instructions-") as name:
        folder = Path(name)
        server = RedisProcess(folder / "redis").start()
        try:
            print(f"| scenario | instructions per call ({args.high} - {args.low} calls) |")
            print("|---|---:|")
            for label, scenario in SCENARIOS.items():
                if args.only and args.only not in label:
                    continue
                low = count(scenario, server.url, args.low, folder)
                high = count(scenario, server.url, args.high, folder)
                print(f"| {label} | {(high - low) / (args.high - args.low):,.0f} |", flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
