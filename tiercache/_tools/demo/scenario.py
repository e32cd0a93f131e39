"""What one demo worker process does: two slow lookups, cached, under skewed request streams.

A worker stands for one process of a service: a few threads resolve adapters (a sync lookup of
tens of milliseconds) while an event loop serves session lookups (an async one of a few). Every
worker draws its requests from the same Zipf distribution with its own seed, so popular keys are
shared across processes the way they are in production, and each worker counts the calls that
reached the slow backends itself.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import tiercache
from tiercache import tiered_cache

__all__ = ["FUNCTIONS", "Plan", "WorkerResult", "run_worker"]

ADAPTER_SECONDS = 0.025
SESSION_SECONDS = 0.008
CATEGORIES = ("storage", "queue", "cache", "search", "auth", "billing")
ADAPTER_NAMES = tuple(f"driver{n:02d}" for n in range(20))
SESSIONS = 3_000
#: Names the report uses for the two cached functions, in display order.
FUNCTIONS = ("resolve_adapter", "get_session")

_backend_lock = threading.Lock()
_backend_calls = dict.fromkeys(FUNCTIONS, 0)


def _reached_backend(function: str) -> None:
    with _backend_lock:
        _backend_calls[function] += 1


@tiered_cache(ttl_l1=600, ttl_l2=86400, lock=True, name="demo.resolve_adapter")
def resolve_adapter(category: str, name: str) -> dict[str, Any]:
    """Import and configure an adapter: slow, and the same answer every time."""
    _reached_backend("resolve_adapter")
    time.sleep(ADAPTER_SECONDS)
    return {"category": category, "name": name, "module": f"adapters.{category}.{name}", "pool_size": 8}


@tiered_cache(ttl_l1=30, ttl_l2=300, max_entries=2000, name="demo.get_session")
async def get_session(session_id: str) -> dict[str, Any] | None:
    """Fetch a session from the session database."""
    _reached_backend("get_session")
    await asyncio.sleep(SESSION_SECONDS)
    return {"id": session_id, "user": f"user-{session_id[-4:]}", "roles": ("reader",)}


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self._cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n)))
        self._rng = rng

    def draw(self) -> int:
        """Return one rank."""
        point = self._rng.random() * self._cumulative[-1]
        return bisect.bisect_left(self._cumulative, point)


@dataclass(frozen=True)
class Plan:
    """One worker's share of a phase: how to configure tiercache and how much load to make."""

    phase: str
    worker: int
    enabled: bool
    redis_url: str | None  # None: L1 only
    namespace: str
    adapter_requests: int
    session_requests: int
    threads: int = 4
    tasks: int = 16


@dataclass
class WorkerResult:
    """What a worker sends back: latencies in ns, backend calls and cache stats per function."""

    worker: int
    latencies_ns: dict[str, list[int]] = field(default_factory=dict)
    backend_calls: dict[str, int] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_worker(plan: Plan, report_progress: Callable[[int], None]) -> WorkerResult:
    """Run one worker's requests and return what it measured; ``report_progress(n)`` after each."""
    if plan.redis_url is None:
        tiercache.configure(enabled=plan.enabled, l2=False, namespace=plan.namespace)
    else:
        tiercache.configure(redis_url=plan.redis_url, enabled=plan.enabled, namespace=plan.namespace)
    rng = random.Random(plan.worker * 7919 + 1)
    adapters = Zipf(len(CATEGORIES) * len(ADAPTER_NAMES), 1.1, rng)
    sessions = Zipf(SESSIONS, 1.0, rng)
    adapter_keys = [_adapter_key(adapters.draw()) for _ in range(plan.adapter_requests)]
    session_keys = [f"session-{sessions.draw():05d}" for _ in range(plan.session_requests)]
    result = WorkerResult(worker=plan.worker)
    with ThreadPoolExecutor(1) as background:  # adapters on threads while the loop serves sessions
        adapter_run = background.submit(_serve_adapters, adapter_keys, plan.threads, report_progress)
        result.latencies_ns["get_session"] = asyncio.run(
            _serve_sessions(session_keys, plan.tasks, report_progress)
        )
        result.latencies_ns["resolve_adapter"] = adapter_run.result()
    result.backend_calls = dict(_backend_calls)
    result.stats = {
        "resolve_adapter": resolve_adapter.cache_stats().as_dict(),
        "get_session": get_session.cache_stats().as_dict(),
    }
    return result


def _adapter_key(rank: int) -> tuple[str, str]:
    return CATEGORIES[rank % len(CATEGORIES)], ADAPTER_NAMES[rank // len(CATEGORIES)]


def _serve_adapters(
    keys: Sequence[tuple[str, str]], threads: int, report_progress: Callable[[int], None]
) -> list[int]:
    latencies: list[int] = []
    stream = iter(keys)
    stream_lock = threading.Lock()

    def serve() -> None:
        while True:
            with stream_lock:
                key = next(stream, None)
            if key is None:
                return
            started = time.perf_counter_ns()
            resolve_adapter(*key)
            latencies.append(time.perf_counter_ns() - started)
            report_progress(1)

    with ThreadPoolExecutor(threads) as pool:
        for running in [pool.submit(serve) for _ in range(threads)]:
            running.result()
    return latencies


async def _serve_sessions(
    keys: Sequence[str], tasks: int, report_progress: Callable[[int], None]
) -> list[int]:
    latencies: list[int] = []
    stream = iter(keys)

    async def serve() -> None:
        for session_id in stream:  # tasks share the iterator: each key is served once
            started = time.perf_counter_ns()
            await get_session(session_id)
            latencies.append(time.perf_counter_ns() - started)
            report_progress(1)

    await asyncio.gather(*(serve() for _ in range(tasks)))
    return latencies
