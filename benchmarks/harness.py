"""A plain timing harness: warm-up, interleaved repeats, medians, ratios.

Subjects of one scenario are measured round-robin (A B C, A B C, ...) so that drift on a noisy
machine hits all of them alike; each figure is the median of the repeats, and each scenario
reports ratios against its reference subject from the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Loop = Callable[[int], float]  # run n operations, return elapsed seconds


@dataclass
class Subject:
    label: str
    loop: Loop
    check: Callable[[], None] = lambda: None
    samples: list[float] = field(default_factory=list)  # ns per operation, one per repeat

    @property
    def median_ns(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Scenario:
    name: str
    reference: str
    subjects: list[Subject]
    operations: int
    repeats: int = 15
    unit: str = "ns/op"
    target: str = ""
    ours: str = "tiercache"  # the label of tiercache's row
    limit: float | None = None  # the target: ours / reference must not exceed it

    @property
    def our_ratio(self) -> float:
        return self.ratio(self.ours)

    @property
    def met(self) -> bool | None:
        return None if self.limit is None else self.our_ratio <= self.limit

    def run(self) -> Scenario:
        for subject in self.subjects:  # warm-up, and the first call of each cold cache
            subject.loop(max(1, self.operations // 10))
        for _ in range(self.repeats):
            for subject in self.subjects:
                elapsed = subject.loop(self.operations)
                subject.samples.append(elapsed / self.operations * 1e9)
        for subject in self.subjects:
            subject.check()
        return self

    def ratio(self, label: str) -> float:
        by_label = {s.label: s for s in self.subjects}
        return by_label[label].median_ns / by_label[self.reference].median_ns


def timed_sync(statement: str, namespace: dict[str, object]) -> Loop:
    """Return a loop running ``statement`` n times with no per-call wrapper of ours."""
    source = (
        f"def _loop(n):\n    _t = _clock()\n    for _ in range(n):\n        {statement}\n"
        "    return _clock() - _t\n"
    )
    scope = {**namespace, "_clock": time.perf_counter}
    exec(source, scope)
    return scope["_loop"]  # type: ignore[return-value]


def timed_async(statement: str, namespace: dict[str, object], loop: asyncio.AbstractEventLoop) -> Loop:
    """Like timed_sync for ``await ...`` statements, run on ``loop``."""
    source = (
        f"async def _loop(n):\n    _t = _clock()\n    for _ in range(n):\n        {statement}\n"
        "    return _clock() - _t\n"
    )
    scope = {**namespace, "_clock": time.perf_counter}
    exec(source, scope)
    coroutine_loop: Callable[[int], Awaitable[float]] = scope["_loop"]  # type: ignore[assignment]
    return lambda n: loop.run_until_complete(coroutine_loop(n))


def ran_once(counter: list[int], label: str) -> Callable[[], None]:
    """Return a check that the body behind ``label`` ran exactly once (every other call hit)."""

    def check() -> None:
        if counter != [1]:
            raise AssertionError(
                f"{label}: the body ran {len(counter)} times; the benchmark did not measure hits"
            )

    return check
