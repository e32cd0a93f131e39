"""A few daemon threads for work no caller waits on (refreshing stale values of sync functions)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["stop", "submit"]

logger = logging.getLogger("tiercache")

_WORKERS = 4
#: A job, and what to call instead if it never runs.
_Job = tuple[Callable[[], object], Callable[[], object] | None]
#: What tells a worker to end (put once per worker, after the jobs it should still run: none).
_STOP: Final[_Job] = (lambda: None, None)
_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def submit(job: Callable[[], object], dropped: Callable[[], object] | None = None) -> None:
    """Run ``job`` soon on a background thread; its exceptions are logged, never raised.

    ``dropped`` is called instead if the job never runs (stop() came first).
    """
    with _lock:
        _jobs.put((job, dropped))
        _threads[:] = [thread for thread in _threads if thread.is_alive()]
        if len(_threads) < _WORKERS:
            thread = threading.Thread(target=_work, args=(_jobs,), name="tiercache-background", daemon=True)
            _threads.append(thread)
            thread.start()


def stop() -> tuple[int, list[threading.Thread]]:
    """End the workers: drop the jobs not started; let those running finish, then end.

    Return how many jobs were dropped and the workers (to join). The jobs are refreshes and
    fills nobody waits for; one submitted afterwards starts new workers (tiercache reopens
    lazily).
    """
    global _jobs
    with _lock:
        # Each worker reads the queue it was started with: a worker started after this one
        # cannot take a stop meant for the old ones, nor an old one a new job.
        jobs, _jobs = _jobs, queue.SimpleQueue()
        threads, _threads[:] = list(_threads), []
    dropped = 0
    while True:
        try:
            item = jobs.get_nowait()
        except queue.Empty:
            break
        dropped += 1
        _, on_drop = item
        if on_drop is not None:
            try:
                on_drop()
            except Exception:
                logger.exception("tiercache: releasing a dropped background job failed")
    for _ in threads:
        jobs.put(_STOP)
    return dropped, threads


def _work(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        item = jobs.get()
        if item is _STOP:
            return
        job, _ = item
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
