"""FastAPI and Starlette: configure tiercache when the application starts, close it when it stops.

``FastAPI(lifespan=tiercache.contrib.starlette.lifespan(redis_url=...))``, or, inside a
lifespan of the application's own, ``async with tiercache.contrib.starlette.caching(...)``.
Nothing here imports Starlette: a lifespan is a plain async context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import tiercache

__all__ = ["caching", "lifespan"]


@contextlib.asynccontextmanager
async def caching(**settings: Any) -> AsyncIterator[None]:
    """Apply ``tiercache.configure(**settings)`` now, and ``await tiercache.aclose()`` on the way out.

    ``settings`` are configure()'s arguments (none: the ``TIERCACHE_*`` environment). Closing
    happens on the server's event loop, so that loop's Redis connections close with it;
    whatever aclose() leaves pending it logs.
    """
    if settings:
        tiercache.configure(**settings)
    try:
        yield
    finally:
        await tiercache.aclose()  # (it logs what it leaves pending)


def lifespan(**settings: Any) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """Return a ``lifespan=`` for FastAPI or Starlette that runs :func:`caching` around the app."""

    def app_lifespan(_app: Any) -> contextlib.AbstractAsyncContextManager[None]:
        return caching(**settings)

    return app_lifespan
