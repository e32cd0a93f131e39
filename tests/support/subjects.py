"""A cached function under test, called the same way whether it is sync or async."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tiercache import CacheStats, tiered_cache

TIERS = {"l1": {"ttl_l1": 600, "ttl_l2": None}, "l2": {"ttl_l1": None}, "l1+l2": {}}


@dataclass
class Subject:
    """A decorated function whose body records each run and returns a fresh value per run."""

    mode: str
    function: Any = None
    runs: list[tuple[Any, ...]] = field(default_factory=list)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.function(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def invalidate(self, *args: Any, **kwargs: Any) -> None:
        result = self.function.cache_invalidate(*args, **kwargs)
        if inspect.isawaitable(result):
            await result

    async def clear(self) -> None:
        result = self.function.cache_clear()
        if inspect.isawaitable(result):
            await result

    def stats(self) -> CacheStats:
        return self.function.cache_stats()


def make_subject(mode: str, tiers: str, body: Callable[..., Any] | None = None, **options: Any) -> Subject:
    """Decorate a sync or async body (default: returns its arguments and its run number)."""
    subject = Subject(mode)

    def default_body(*args: Any) -> Any:
        subject.runs.append(args)
        return {"args": list(args), "run": len(subject.runs)}

    work = body or default_body
    options = {"name": "tests.subject", **TIERS[tiers], **options}
    if mode == "sync":

        def sync_function(key: str, extra: Any = None) -> Any:
            return work(key) if extra is None else work(key, extra)

        subject.function = tiered_cache(**options)(sync_function)
    else:

        async def async_function(key: str, extra: Any = None) -> Any:
            await asyncio.sleep(0)
            return work(key) if extra is None else work(key, extra)

        subject.function = tiered_cache(**options)(async_function)
    return subject
