"""How many tiercache frames one call goes through: a sync and an async L2 hit, and a sync miss.

Counted with ``sys.setprofile`` (every Python function entered in the package or its generated
fast path); the shorter the path, the less Python an L2 round trip adds. ``python -m
benchmarks.frames`` prints them against a redis-server it starts.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import tiercache
from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess

_PACKAGE = str(Path(tiercache.__file__).parent)


def _ours(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith(_PACKAGE) or filename.startswith("<tiercache")


def frames_of(call: Callable[[], Any]) -> int:
    """Return how many tiercache functions ``call()`` enters."""
    entered = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal entered
        if event == "call" and _ours(frame):
            entered += 1

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return entered


def rows(url: str) -> list[tuple[str, int]]:
    """Return (path, frames) for a sync L2 hit, a sync miss with its write, an async L2 hit."""
    tiercache.configure(redis_url=url)
    fresh = itertools.count()

    @tiered_cache(ttl_l1=None, ttl_l2=600, name="bench.frames")
    def lookup(key: str) -> dict[str, str]:
        return {"key": key}

    @tiered_cache(ttl_l1=None, ttl_l2=600, name="bench.aframes")
    async def alookup(key: str) -> dict[str, str]:
        return {"key": key}

    lookup("warm")
    lookup("warm")
    hit = frames_of(lambda: lookup("warm"))
    miss = frames_of(lambda: lookup(f"new-{next(fresh)}"))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(alookup("warm"))
        loop.run_until_complete(alookup("warm"))
        async_hit = frames_of(lambda: loop.run_until_complete(alookup("warm")))
    finally:
        loop.close()
    return [
        ("sync L2 hit", hit),
        ("sync miss (read, run, conditional write)", miss),
        ("async L2 hit", async_hit),
    ]


def main() -> None:
    server = RedisProcess(Path(tempfile.mkdtemp(prefix="tiercache-frames-"))).start()
    try:
        for label, count in rows(server.url):
            print(f"{label}: {count} tiercache frames")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
