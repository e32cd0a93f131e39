"""Run the demo's phases: the same load on several worker processes, cached differently each time."""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercache._tools.demo.scenario import FUNCTIONS, Plan, WorkerResult, run_worker

__all__ = ["DemoError", "FunctionResult", "PhaseResult", "run_phase"]

#: How often a worker reports how many requests it has served.
PROGRESS_SECONDS = 0.1


class DemoError(RuntimeError):
    """A worker process failed; the message carries its traceback."""


@dataclass
class FunctionResult:
    """One function's figures in one phase, summed over the workers."""

    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    l1_hits: int
    l2_hits: int
    backend_calls: int

    @property
    def l1_hit_rate(self) -> float:
        """Share of requests L1 answered."""
        return self.l1_hits / self.requests if self.requests else 0.0

    @property
    def l2_hit_rate(self) -> float:
        """Share of requests L2 answered."""
        return self.l2_hits / self.requests if self.requests else 0.0

    @classmethod
    def merge(cls, function: str, results: list[WorkerResult]) -> FunctionResult:
        """Fold every worker's latencies, stats and backend calls for ``function``."""
        latencies = sorted(ns for result in results for ns in result.latencies_ns[function])
        return cls(
            requests=len(latencies),
            p50_ms=_quantile(latencies, 0.50) / 1e6,
            p99_ms=_quantile(latencies, 0.99) / 1e6,
            mean_ms=statistics.fmean(latencies) / 1e6 if latencies else 0.0,
            l1_hits=sum(result.stats[function]["l1_hits"] for result in results),
            l2_hits=sum(result.stats[function]["l2_hits"] for result in results),
            backend_calls=sum(result.backend_calls[function] for result in results),
        )


@dataclass
class PhaseResult:
    """A phase's name, wall time, namespace and per-function figures."""

    name: str
    seconds: float
    namespace: str
    functions: dict[str, FunctionResult] = field(default_factory=dict)


def _quantile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[min(int(q * len(ordered)), len(ordered) - 1)])


def run_phase(
    name: str,
    *,
    enabled: bool,
    redis_url: str | None,
    workers: int,
    adapter_requests: int,
    session_requests: int,
    on_progress: Callable[[int], None],
) -> PhaseResult:
    """Run one phase on ``workers`` fresh processes sharing a new namespace; return its figures."""
    namespace = f"tiercache-demo-{uuid.uuid4().hex[:8]}"  # a cold L2 for every phase
    plans = [
        Plan(name, index, enabled, redis_url, namespace, adapter_requests, session_requests)
        for index in range(workers)
    ]
    # Fresh interpreters: each worker is a process of its own, with its own L1, as in production.
    context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
    processes = [context.Process(target=_worker_main, args=(plan, messages), daemon=True) for plan in plans]
    started = time.perf_counter()
    for process in processes:
        process.start()
    try:
        results = _collect(processes, messages, on_progress)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    phase = PhaseResult(name, time.perf_counter() - started, namespace)
    phase.functions = {function: FunctionResult.merge(function, results) for function in FUNCTIONS}
    return phase


def _collect(
    processes: Sequence[multiprocessing.process.BaseProcess],
    messages: multiprocessing.Queue[tuple[str, Any]],
    on_progress: Callable[[int], None],
) -> list[WorkerResult]:
    results: list[WorkerResult] = []
    while len(results) < len(processes):
        try:
            kind, payload = messages.get(timeout=0.5)
        except queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise DemoError(f"a demo worker exited with code {dead[0].exitcode}") from None
            continue
        if kind == "progress":
            on_progress(payload)
        elif kind == "done":
            results.append(payload)
        else:
            raise DemoError(f"a demo worker failed:\n{payload}")
    return results


def _worker_main(plan: Plan, messages: multiprocessing.Queue[tuple[str, Any]]) -> None:
    served = [0]
    lock = threading.Lock()
    finished = threading.Event()

    def count(n: int) -> None:
        with lock:
            served[0] += n

    def report() -> None:
        while not finished.wait(PROGRESS_SECONDS):
            with lock:
                n, served[0] = served[0], 0
            if n:
                messages.put(("progress", n))

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        result = run_worker(plan, count)
    except BaseException:  # the parent shows the traceback; a worker has no terminal of its own
        messages.put(("error", traceback.format_exc()))
        raise
    finally:
        finished.set()
        reporter.join()
    messages.put(("progress", served[0]))
    messages.put(("done", result))
