"""A process that uses every part of tiercache, closes it, and says what it left behind.

``python -X dev -W error -m tests.support.workers.lifecycle URL DEAD_URL NAMESPACE MODE`` with MODE
``sync``, ``async`` or ``fork`` (a gunicorn-style parent: it warms up, then forks two workers
that serve, invalidate and close, without closing anything before the fork). It prints one JSON
line per check: the threads and sockets left after closing, the close report, what calls
returned. Exit status 0 means every check in here passed; the test reads the rest.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any

import redis

import tiercache
from tests.support.leftovers import tcp_sockets
from tiercache import MultiTierCache, MultiTierCacheAdapter, MultiTierCacheSettings, tiered_cache


def leftovers() -> dict[str, Any]:
    """Return the threads (but this one) and the sockets this process still has open."""
    gc.collect()  # (connections nobody references any more are closed by now, not later)
    # Every TCP socket, whatever its state (an event loop's own socket pair is not TCP).
    peers = [f"tcp to port {remote} state {state}" for _, remote, state in tcp_sockets()]
    threads = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    return {"threads": threads, "sockets": len(peers), "peers": peers}


def emit(what: str, **facts: Any) -> None:
    print(json.dumps({"what": what, **facts}), flush=True)


def report_of(report: tiercache.CloseReport) -> dict[str, Any]:
    pending = dict(report.pending_invalidations)
    return {"pending": pending, "running": report.still_running, "clean": report.clean}


class Subjects:
    """Cached functions of each kind, over the real Redis (and one over a dead one)."""

    def __init__(self, url: str, dead_url: str, namespace: str) -> None:
        self.truth = redis.Redis.from_url(url)
        self.namespace = namespace
        read = self.read

        @tiered_cache(ttl_l1=60, ttl_l2=60, name="lifecycle.value")
        def value(key: str) -> int:
            return read(key)

        @tiered_cache(ttl_l1=60, ttl_l2=60, tags=lambda key: [f"item:{key}"], name="lifecycle.tagged")
        def tagged(key: str) -> int:
            return read(key)

        @tiered_cache(ttl_l1=0.05, ttl_l2=60, refresh_ahead=0.5, name="lifecycle.refreshed")
        def refreshed(key: str) -> int:
            time.sleep(0.05)  # (a refresh still running when close() comes)
            return read(key)

        @tiered_cache(ttl_l1=60, ttl_l2=60, redis_url=dead_url, name="lifecycle.unreachable")
        def unreachable(key: str) -> str:
            return key

        @tiered_cache(ttl_l1=60, ttl_l2=60, name="lifecycle.avalue")
        async def avalue(key: str) -> int:
            return read(key)

        self.value, self.tagged, self.refreshed = value, tagged, refreshed
        self.unreachable, self.avalue = unreachable, avalue

    def read(self, key: str) -> int:
        return int(self.truth.get(f"{self.namespace}:truth:{key}") or 0)

    def set_truth(self, key: str, version: int) -> None:
        self.truth.set(f"{self.namespace}:truth:{key}", version)

    def close(self) -> None:
        self.truth.close()


def use_sync(subjects: Subjects, url: str, namespace: str) -> MultiTierCache:
    subjects.set_truth("k", 1)
    assert subjects.value("k") == 1 and subjects.tagged("k") == 1 and subjects.refreshed("k") == 1
    subjects.value.cache_invalidate("k")
    tiercache.invalidate_tags("item:k")
    subjects.unreachable("a")
    subjects.unreachable.cache_invalidate("a")  # Redis is down: deferred, and reported
    time.sleep(0.06)
    assert subjects.refreshed("k") == 1  # (served, and a refresh started in the background)
    cache = MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=f"{namespace}-adapter"))
    cache.set("a", 1)
    assert cache.get("a") == 1
    return cache


def run_sync_mode(url: str, dead_url: str, namespace: str) -> None:
    tiercache.configure(redis_url=url, namespace=namespace)
    subjects = Subjects(url, dead_url, namespace)
    cache = use_sync(subjects, url, namespace)
    subjects.close()
    report = tiercache.close()
    emit("closed", report=report_of(report), **leftovers())
    # Twice is fine, and closes nothing more.
    emit("closed twice", report=report_of(tiercache.close()), adapter=report_of(cache.close()), **leftovers())
    # Using it again reopens what it needs; what changed meanwhile is seen (L1 was flushed).
    subjects.truth = redis.Redis.from_url(url)
    subjects.set_truth("k", 2)
    subjects.truth.publish("unrelated", b"")  # (an announcement missed while closed is not needed)
    emit("reopened", value=subjects.value("k"), adapter=cache.get("a"))
    cache.set("a", 2)
    subjects.close()
    tiercache.close()
    cache.close()
    emit("closed again", **leftovers())


async def run_async_mode(url: str, dead_url: str, namespace: str) -> None:
    tiercache.configure(redis_url=url, namespace=namespace)
    subjects = Subjects(url, dead_url, namespace)
    subjects.set_truth("k", 1)
    assert await subjects.avalue("k") == 1
    await subjects.avalue.cache_invalidate("k")
    await tiercache.ainvalidate_tags("item:k")
    adapter = MultiTierCacheAdapter(MultiTierCacheSettings(l2_url=url, namespace=f"{namespace}-adapter"))
    await adapter.set("a", 1)
    assert await adapter.get("a") == 1
    subjects.unreachable.cache_invalidate("a")
    subjects.close()
    report = await tiercache.aclose()
    # Checked inside the loop: the loop's own connections are closed now, not when it ends.
    emit("closed", report=report_of(report), **leftovers())
    again, adapter_report = await tiercache.aclose(), await adapter.aclose()
    emit("closed twice", report=report_of(again), adapter=report_of(adapter_report))
    subjects.truth = redis.Redis.from_url(url)
    subjects.set_truth("k", 2)
    emit("reopened", value=await subjects.avalue("k"), adapter=await adapter.get("a"))
    subjects.close()
    await adapter.aclose()
    await tiercache.aclose()
    emit("closed again", **leftovers())


def run_fork_mode(url: str, dead_url: str, namespace: str) -> None:
    # The parent warms up as a preloading server would, and forks without closing anything.
    tiercache.configure(redis_url=url, namespace=namespace)
    subjects = Subjects(url, dead_url, namespace)
    subjects.set_truth("k", 1)
    assert subjects.value("k") == 1 and subjects.tagged("k") == 1
    assert asyncio.run(subjects.avalue("k")) == 1
    children = []
    for n in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os._exit(child(subjects, n, write))
        os.close(write)
        children.append((pid, read))
    results = []
    for pid, read in children:
        with os.fdopen(read) as lines:
            results.append(json.loads(lines.read()))
        _, status = os.waitpid(pid, 0)
        results[-1]["status"] = os.waitstatus_to_exitcode(status)
    emit("children", results=results)
    # The parent heard the children's invalidations, and serves on.
    emit("parent", value=subjects.value("k"), tagged=subjects.tagged("k"))
    subjects.close()
    tiercache.close()
    emit("parent closed", **leftovers())


def child(subjects: Subjects, n: int, write: int) -> int:
    try:
        seen = [subjects.value("k"), subjects.tagged("k")]
        if n == 0:
            subjects.set_truth("k", 2)
            subjects.value.cache_invalidate("k")
            tiercache.invalidate_tags("item:k")
        else:
            deadline = time.monotonic() + 10
            while subjects.value("k") != 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            while subjects.tagged("k") != 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        seen += [subjects.value("k"), subjects.tagged("k"), asyncio.run(subjects.avalue("k"))]
        subjects.close()
        report = tiercache.close()
        facts = {"child": n, "seen": seen, "report": report_of(report), **leftovers()}
    except BaseException as exc:
        facts = {"child": n, "error": repr(exc)}
    with os.fdopen(write, "w") as out:
        out.write(json.dumps(facts))
    return 0 if "error" not in facts else 1


if __name__ == "__main__":
    url, dead, space, mode = sys.argv[1:5]
    if mode == "sync":
        run_sync_mode(url, dead, space)
    elif mode == "async":
        asyncio.run(run_async_mode(url, dead, space))
    else:
        run_fork_mode(url, dead, space)
    emit("exit", **leftovers())
