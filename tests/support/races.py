"""The delay-proxy race: process A's write is on its way while this process invalidates.

Process A (``tests/support/workers/race.py``) talks to Redis through a proxy that delays what it sends
by 30 ms: the write of a value it computed from v1 lands after this process changed the data
and invalidated. Whatever Redis serves afterwards must not be v1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.delay_proxy import DelayProxy
from tests.support.paths import ROOT
from tiercache._tools.redis_process import RedisProcess


@contextmanager
def race_worker(server: RedisProcess, namespace: str) -> Iterator[subprocess.Popen[str]]:
    """Start process A, its commands to ``server`` delayed 30 ms; stop it on the way out."""
    with DelayProxy(server.port, to_server=0.03) as proxy:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.support.workers.race", proxy.url, namespace, str(server.port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdin is not None and worker.stdout is not None
        try:
            assert worker.stdout.readline().strip() == "ready"
            yield worker
        finally:
            worker.stdin.close()
            worker.wait(timeout=10)
            worker.stdout.close()


def stale_samples(
    worker: subprocess.Popen[str],
    server: RedisProcess,
    namespace: str,
    command: str,
    invalidate: Callable[[str], Any],
    fresh_reader: Callable[[], Callable[[str], Any]],
    samples: int = 20,
) -> list[str]:
    """Race A's ``command`` (compute, acompute, tcompute) against ``invalidate(key)``.

    For each key: A computes from v1 and says so; the data becomes v2 and is invalidated here;
    A's write lands late. Return the keys for which a fresh process's reader (no L1) got v1.
    """
    assert worker.stdin is not None and worker.stdout is not None
    truth = server.client()
    stale = []
    for sample in range(samples):
        key = f"k{sample}"
        truth.set(f"truth:{namespace}:{key}", "v1")
        worker.stdin.write(f"{command} {key}\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "returning v1"
        truth.set(f"truth:{namespace}:{key}", "v2")
        invalidate(key)
        assert worker.stdout.readline().strip() == "done v1"
        time.sleep(0.05)  # A's write has landed (or been refused) by now
        if fresh_reader()(key) == "v1":
            stale.append(key)
    return stale
