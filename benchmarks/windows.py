"""How long other processes' L1s serve a value after each kind of change returns (the guarantee table).

``python -m benchmarks.windows`` starts a redis-server, then for each change (a function's
invalidate, clear, tag invalidation and set; an adapter's set, delete and clear) four reader
processes that serve one key from an L1 that keeps it an hour, and this process makes 100 changes
30 ms apart. Each reader reports when it first served each change; the figures are how long after
the change returned that was (ms, over 4 x 100 pairs). Redis reads are final at once (see
docs/invalidation.md); what is measured here is the L1s, which hear of changes by announcement.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tiercache
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._tools.redis_process import RedisProcess

READERS = 4
CHANGES = 100
ROOT = Path(__file__).resolve().parents[1]


def _reader(url: str, namespace: str, kind: str, last: int) -> None:
    """Serve ``k`` until the change numbered ``last`` is seen; print when each change was first served."""
    tiercache.configure(redis_url=url, namespace=namespace)
    if kind == "adapter":
        cache = MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=namespace, l1_ttl_seconds=3600))

        def serve() -> int:
            value = cache.get("k")
            return -1 if value is None else int(value)  # (-1: gone, after a delete or a clear)

    else:

        @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="windows.current", tags=lambda key: [f"item:{key}"])
        def current(key: str) -> int:
            return _truth(url, namespace)

        def serve() -> int:
            return int(current("k"))

    served = [(serve(), time.monotonic())]
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and served[-1][0] not in (last, -last):
        value = serve()
        if value != served[-1][0]:
            served.append((value, time.monotonic()))
        time.sleep(0.0005)
    print(json.dumps(served), flush=True)


def _truth(url: str, namespace: str, value: int | None = None) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        if value is not None:
            client.set(f"truth:{namespace}", value)
            return value
        return int(client.get(f"truth:{namespace}") or 0)
    finally:
        client.close()


def measure(url: str, kind: str, change: Callable[[str, int], None]) -> list[float]:
    """Return, sorted, how long after each change each reader first served it (ms)."""
    namespace = f"windows-{kind}-{time.monotonic_ns()}"
    tiercache.configure(redis_url=url, namespace=namespace)
    change(namespace, 0)
    argv = [sys.executable, "-m", "benchmarks.windows", "reader", url, namespace, kind, str(CHANGES)]
    readers = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(READERS)]
    changed: dict[int, float] = {}
    try:
        for reader in readers:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
        for number in range(1, CHANGES + 1):
            change(namespace, number)
            changed[number] = time.monotonic()
            time.sleep(0.03)
        sightings = [json.loads(reader.communicate(timeout=60)[0]) for reader in readers]
    finally:
        for reader in readers:
            reader.kill()
    windows = []
    for served in sightings:
        for number, at in changed.items():
            # The first time this reader served this change (a delete or clear: served as "gone",
            # -1) since the change before it was made.
            since = changed.get(number - 1, 0.0)
            wanted = (number, -number, -1)
            first = next((t for value, t in served if t >= since and value in wanted), None)
            if first is not None:
                windows.append(max(first - at, 0.0) * 1000)
    return sorted(windows)


def _function_changes() -> dict[str, Callable[[str, int], None]]:
    cached = tiered_cache(ttl_l1=3600, ttl_l2=3600, name="windows.current", tags=lambda key: [f"item:{key}"])(
        lambda key: 0
    )

    def through(action: Callable[[], object]) -> Callable[[str, int], None]:
        def change(namespace: str, number: int) -> None:
            _truth(tiercache.configure().redis_url or "", namespace, number)
            action()

        return change

    def put(namespace: str, number: int) -> None:
        _truth(tiercache.configure().redis_url or "", namespace, number)
        cached.cache_set(number, "k")

    return {
        "cache_invalidate()": through(lambda: cached.cache_invalidate("k")),
        "cache_clear()": through(cached.cache_clear),
        "invalidate_tags()": through(lambda: tiercache.invalidate_tags("item:k")),
        "cache_set()": put,
    }


def _adapter_changes(url: str) -> dict[str, Callable[[str, int], None]]:
    writers: dict[str, MultiTierCache] = {}

    def writer(namespace: str) -> MultiTierCache:
        return writers.setdefault(
            namespace, MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=namespace))
        )

    def gone(action: str) -> Callable[[str, int], None]:
        # Even numbers set a value, odd ones take it away: each change is served as itself or -itself.
        def change(namespace: str, number: int) -> None:
            cache = writer(namespace)
            if number % 2 == 0 or number == CHANGES:  # (the last one a value: the readers stop at it)
                cache.set("k", number)
            elif action == "delete":
                cache.delete("k")
            else:
                cache.clear()

        return change

    return {
        "adapter set()": lambda namespace, number: writer(namespace).set("k", number),
        "adapter delete()": gone("delete"),
        "adapter clear()": gone("clear"),
    }


def main() -> int:
    if sys.argv[1:2] == ["reader"]:
        url, namespace, kind, last = sys.argv[2:6]
        _reader(url, namespace, kind, int(last))
        return 0
    server = RedisProcess(Path(tempfile.mkdtemp())).start()
    try:
        tiercache.configure(redis_url=server.url)
        rows = [
            (name, measure(server.url, "function", change)) for name, change in _function_changes().items()
        ]
        rows += [
            (name, measure(server.url, "adapter", change))
            for name, change in _adapter_changes(server.url).items()
        ]
        print("| change | p50 ms | p99 ms | max ms | pairs |\n|---|---|---|---|---|")
        for name, windows in rows:
            p50, p99 = statistics.median(windows), windows[max(int(len(windows) * 0.99) - 1, 0)]
            print(f"| {name} | {p50:.1f} | {p99:.1f} | {max(windows):.1f} | {len(windows)} |")
    finally:
        tiercache.close()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
