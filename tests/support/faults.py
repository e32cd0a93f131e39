"""Drive a cached function through a fault and record what its callers saw."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tiercache import tiered_cache


@dataclass
class Record:
    """What callers saw: one latency per call, and every wrong value or exception."""

    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


def expected(key: str) -> dict[str, Any]:
    return {"key": key, "payload": [key] * 3}


class Caller:
    """A sync or async cached function whose every value can be checked, and a way to call it."""

    made = 0

    def __init__(self, mode: str, **options: Any) -> None:
        self.mode = mode
        self.runs = 0
        Caller.made += 1
        options = {"name": f"faults.{mode}.{Caller.made}", **options}
        if mode == "sync":

            def lookup(key: str) -> dict[str, Any]:
                self.runs += 1
                return expected(key)

            self.function: Any = tiered_cache(**options)(lookup)
        else:

            async def alookup(key: str) -> dict[str, Any]:
                self.runs += 1
                return expected(key)

            self.function = tiered_cache(**options)(alookup)

    def calls(self, keys: list[str], record: Record | None = None) -> Record:
        """Call once per key (async: all on one event loop); record latencies and problems."""
        record = record if record is not None else Record()
        if self.mode == "sync":
            for key in keys:
                started = time.perf_counter()
                try:
                    result = self.function(key)
                except Exception as exc:
                    result = exc
                self._check(key, result, time.perf_counter() - started, record)
        else:
            asyncio.run(self._acalls(keys, record))
        return record

    async def _acalls(self, keys: list[str], record: Record) -> None:
        for key in keys:
            started = time.perf_counter()
            try:
                result = await self.function(key)
            except Exception as exc:
                result = exc
            self._check(key, result, time.perf_counter() - started, record)

    @staticmethod
    def _check(key: str, result: Any, latency: float, record: Record) -> None:
        if result != expected(key):
            record.problems.append(f"{key}: got {result!r}")
        record.latencies.append(latency)


def until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Wait for ``condition``; return how long it took, or raise after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the garbage collector out of a timed stretch.

    Late in the suite the heap holds a few hundred thousand objects, and one full collection
    takes 0.15-0.2 s here (measured with gc.callbacks), which is more than the timeouts the
    fault tests time.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def opened(gate: asyncio.Event, timeout: float = 10.0) -> None:
    """In a function body: wait until the test sets ``gate``, ``timeout`` s at most.

    A test whose premise broke (a value it meant to be stored was not) then fails, never hangs.
    """
    await asyncio.wait_for(gate.wait(), timeout)


@contextmanager
def black_hole() -> Iterator[int]:
    """Yield a loopback port whose connects hang (a listener with a full accept queue)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    # Fill the accept queue so further SYNs are dropped and connects hang until they time out.
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
