"""A redis-server of a test's own, with tiercache pointed at it (the session's one is shared)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tiercache
from tiercache._tools.redis_process import RedisProcess


@contextlib.contextmanager
def configured_server(directory: Path, **settings: Any) -> Iterator[RedisProcess]:
    """Start a redis-server in ``directory``, ``configure(redis_url=..., **settings)``; stop it after.

    For tests that kill, pause or restart their server, or need timeouts of their own.
    """
    process = RedisProcess(directory).start()
    try:
        tiercache.configure(redis_url=process.url, **settings)
        yield process
    finally:
        process.stop()
