"""``cache_warm``: fill both tiers for many calls ahead of time, a few at once.

Each item is a call's arguments: a tuple (positional), a mapping (by name), or anything else as
the one argument. A call already cached (either tier) is not run again; one that raises is
counted and does not stop the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Progress", "WarmReport", "arguments_of", "awarm", "warm"]

#: ``progress(done, total)`` after each item; ``total`` is None for an iterable of unknown length.
Progress = Callable[[int, "int | None"], object]
#: Errors a report keeps (the first ones), with the arguments that raised them.
KEPT_ERRORS: Final = 10


@dataclass(frozen=True)
class WarmReport:
    """What ``cache_warm`` did: calls seen, run now, found cached, failed (the first errors kept)."""

    total: int
    computed: int
    cached: int
    failed: int
    errors: tuple[tuple[Any, BaseException], ...] = ()


def arguments_of(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the ``(args, kwargs)`` one warming item stands for."""
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, Mapping):
        return (), dict(item)
    return (item,), {}


class _Tally:
    def __init__(self, items: Iterable[Any], progress: Progress | None) -> None:
        self.total = len(items) if isinstance(items, Sized) else None
        self.progress = progress
        self.done = self.computed = self.cached = self.failed = 0
        self.errors: list[tuple[Any, BaseException]] = []

    def add(self, item: Any, outcome: bool | BaseException) -> None:
        self.done += 1
        if isinstance(outcome, BaseException):
            self.failed += 1
            if len(self.errors) < KEPT_ERRORS:
                self.errors.append((item, outcome))
        elif outcome:
            self.cached += 1
        else:
            self.computed += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def report(self) -> WarmReport:
        return WarmReport(self.done, self.computed, self.cached, self.failed, tuple(self.errors))


def _check(concurrency: object, owner: str) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"{owner}: concurrency must be a whole number >= 1, not {concurrency!r}")
    return concurrency


def warm(
    items: Iterable[Any],
    cached: Callable[..., bool],
    call: Callable[..., Any],
    *,
    concurrency: int,
    progress: Progress | None,
    owner: str,
) -> WarmReport:
    """Warm a sync function: ``cached(*args, **kw)`` says whether to skip, ``call`` fills."""
    workers = _check(concurrency, owner)
    tally = _Tally(items, progress)

    def one(item: Any) -> bool:
        args, kwargs = arguments_of(item)
        if cached(*args, **kwargs):
            return True
        call(*args, **kwargs)
        return False

    if workers == 1:
        for item in items:
            try:
                tally.add(item, one(item))
            except Exception as exc:
                tally.add(item, exc)
        return tally.report()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tiercache-warm") as pool:
        running: dict[concurrent.futures.Future[bool], Any] = {}
        source: Iterator[Any] = iter(items)
        for item in source:  # at most two per worker queued: an endless iterable stays lazy
            running[pool.submit(one, item)] = item
            if len(running) >= 2 * workers:
                _settle(running, tally, concurrent.futures.FIRST_COMPLETED)
        while running:
            _settle(running, tally, concurrent.futures.ALL_COMPLETED)
    return tally.report()


def _settle(running: dict[concurrent.futures.Future[bool], Any], tally: _Tally, until: str) -> None:
    done, _ = concurrent.futures.wait(running, return_when=until)
    for future in done:
        item = running.pop(future)
        error = future.exception()
        tally.add(item, error if error is not None else future.result())


async def awarm(
    items: Iterable[Any],
    cached: Callable[..., Any],
    call: Callable[..., Any],
    *,
    concurrency: int,
    progress: Progress | None,
    owner: str,
) -> WarmReport:
    """Warm an async function: ``concurrency`` tasks take items from ``items`` in turn."""
    workers = _check(concurrency, owner)
    tally = _Tally(items, progress)
    source: Iterator[Any] = iter(items)

    async def worker() -> None:
        for item in source:  # (one iterator shared: each item goes to one worker)
            args, kwargs = arguments_of(item)
            try:
                found = await cached(*args, **kwargs)
                if not found:
                    await call(*args, **kwargs)
            except Exception as exc:
                tally.add(item, exc)
            else:
                tally.add(item, bool(found))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return tally.report()
