"""A few daemon threads for work no caller waits on (refreshing stale values of sync functions)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

__all__ = ["submit"]

logger = logging.getLogger("tiercache")

_WORKERS = 4
_jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def submit(job: Callable[[], object]) -> None:
    """Run ``job`` soon on a background thread; its exceptions are logged, never raised."""
    _jobs.put(job)
    with _lock:
        _threads[:] = [thread for thread in _threads if thread.is_alive()]
        if len(_threads) < _WORKERS:
            thread = threading.Thread(target=_work, name="tiercache-background", daemon=True)
            _threads.append(thread)
            thread.start()


def _work() -> None:
    while True:
        job = _jobs.get()
        try:
            job()
        except Exception:
            logger.exception("tiercache: a background job failed")


def _forget_after_fork() -> None:
    # The child has none of the parent's threads, and a lock a parent thread held stays held.
    global _jobs, _lock
    _jobs = queue.SimpleQueue()
    _threads.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
