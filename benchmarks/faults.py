"""Fault drills on real redis-server processes: what callers saw during each fault.

Prints, per fault and mode: calls made during the fault, errors seen by callers, the worst call
latency, and how long after Redis answered again L2 reads and writes resumed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tiercache
from tests.support.faults import Caller, Record, black_hole, until
from tiercache._decorator import config as _config
from tiercache._tools.redis_process import RedisProcess, free_port

TIMEOUT, CONNECT_TIMEOUT = 0.1, 0.25


def fresh(url: str) -> None:
    _config.reset()
    tiercache.configure(redis_url=url, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT)


def keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i % 50}" for i in range(count)]


def recovered(server: RedisProcess, caller: Caller) -> Callable[[], bool]:
    def check() -> bool:
        key = f"back-{time.monotonic()}"
        caller.calls([key, key])
        return bool(server.client().exists(caller.function.cache_key(key)))

    return check


def row(fault: str, mode: str, record: Record, recovery: float | None = None) -> str:
    back = f"{recovery:.2f} s" if recovery is not None else "-"
    errors = len(record.problems)
    return f"| {fault} | {mode} | {record.calls} | {errors} | {record.worst * 1000:.1f} ms | {back} |"


def drills(mode: str) -> list[str]:
    rows = []
    fresh(f"redis://127.0.0.1:{free_port()}/0")
    rows.append(row("unreachable at start (refused)", mode, Caller(mode).calls(keys("k", 500))))
    with black_hole() as port:
        fresh(f"redis://127.0.0.1:{port}/0")
        rows.append(row("unreachable at start (connect hangs)", mode, Caller(mode).calls(keys("k", 500))))
    server = RedisProcess(Path(tempfile.mkdtemp())).start()
    try:
        fresh(server.url)
        caller = Caller(mode, ttl_l1=None)
        caller.calls(keys("warm", 50))
        server.kill()
        during = caller.calls(keys("k", 500))
        server.restart()
        rows.append(row("killed, then restarted", mode, during, until(recovered(server, caller), 5.0)))
        server.kill()
        during = caller.calls(keys("k", 250))  # the breaker opens now...
        time.sleep(5)  # ...and the prober's backoff reaches its ceiling
        during = caller.calls(keys("k", 250), during)
        server.restart()
        rows.append(
            row("killed for 5 s, then restarted", mode, during, until(recovered(server, caller), 5.0))
        )
        caller = Caller(mode, ttl_l1=None)
        caller.calls(keys("warm", 50))
        server.pause()
        during = caller.calls(keys("k", 500))
        server.resume()
        rows.append(
            row("stalled (SIGSTOP), then resumed", mode, during, until(recovered(server, caller), 5.0))
        )
        caller = Caller(mode, ttl_l1=None)
        caller.calls(["warm"])
        for i in range(50):
            server.client().set(caller.function.cache_key(f"g{i}"), b"\x00garbage" * i)
        rows.append(row("garbage under 50 keys", mode, caller.calls([f"g{i % 50}" for i in range(100)])))
    finally:
        server.stop()
    return rows


def main() -> None:
    print("| fault | mode | calls during the fault | errors seen by callers | worst call | L2 back after |")
    print("|---|---|---|---|---|---|")
    for mode in ("sync", "async"):
        for line in drills(mode):
            print(line)


if __name__ == "__main__":
    main()
