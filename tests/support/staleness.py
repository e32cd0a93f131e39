"""How long reader processes keep serving a value after it was invalidated (the coherence tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from tests.support.paths import ROOT


def staleness_ms(
    url: str, namespace: str, versions: int, invalidate: Callable[[], None], *, tagged: bool = False
) -> list[float]:
    """Return, sorted, how long after each invalidation each of 4 readers first served it (ms).

    The readers (``tests.support.workers.coherence``) serve ``current("k")`` from an L1 that keeps it an
    hour; here the truth moves to each version in turn and ``invalidate()`` follows, 30 ms apart.
    ``tagged``: the readers' function carries the tag ``item:k``.
    """
    truth = redis.Redis.from_url(url)
    truth.set(f"truth:{namespace}:k", 0)
    argv = [sys.executable, "-m", "tests.support.workers.coherence", url, namespace, str(versions)]
    readers = [
        subprocess.Popen([*argv, *(["tags"] if tagged else [])], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        for reader in readers:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        invalidated: dict[int, float] = {}
        for version in range(1, versions + 1):
            truth.set(f"truth:{namespace}:k", version)
            invalidate()
            invalidated[version] = time.monotonic()
            time.sleep(0.03)
        sightings = [json.loads(reader.communicate(timeout=30)[0]) for reader in readers]
    finally:
        for reader in readers:
            reader.kill()
        truth.close()
    staleness = []
    for seen in sightings:
        first = sorted((int(v), t) for v, t in seen.items())
        for version, at in invalidated.items():
            # The first time this reader served this version or a later one.
            served = min(t for v, t in first if v >= version)
            staleness.append(max(served - at, 0.0) * 1000)
    return sorted(staleness)
