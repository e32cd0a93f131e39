"""``tiercache.close()`` and ``aclose()``: end what tiercache started in this process.

Closing is for the end of a process's (or an event loop's) use of the cache, and for tests: it
stops the threads tiercache runs (coherence listeners, Redis probers, background refreshes),
gives invalidations that never reached Redis a last try and reports those still pending, and
closes the connections it opened. Nothing is lost: a cached function called afterwards reopens
what it needs, lazily, and its L1 is flushed meanwhile, since while closed it could not hear
other processes' invalidations.
"""

from __future__ import annotations

import asyncio
import threading
import time

from tiercache import _background
from tiercache._core.closing import CloseReport, checked_timeout, last_repairs, report
from tiercache._core.shells import arun, run, running_computations, settle_background
from tiercache._core.tiers import live_tiers
from tiercache._l2.coherence import wait_for_abandoned
from tiercache._l2.endpoint import CLOSE_WAIT, live_endpoints

__all__ = ["aclose", "close"]


def close(timeout: float = CLOSE_WAIT) -> CloseReport:
    """Stop tiercache's threads and close every Redis connection it opened in this process.

    Background refreshes not started are dropped; those running get up to ``timeout`` seconds.
    Invalidations made while Redis was unreachable get one last try; any still pending are
    logged and returned in the report. Connections of event loops other than the caller's close
    with their loop (``await tiercache.aclose()`` closes the running loop's now). Safe to call
    twice; using a cached function or adapter afterwards reopens what it needs. Clients passed
    to ``configure(redis_client=...)`` stay open: they are the application's.
    """
    timeout = checked_timeout(timeout, "tiercache.close()")
    deadline = time.monotonic() + timeout
    dropped, workers = _background.stop()
    # (A background job may be what closes tiercache: it does not wait for itself.)
    others = [worker for worker in workers if worker is not threading.current_thread()]
    for worker in others:
        worker.join(max(deadline - time.monotonic(), 0.0))
    caches = live_tiers()
    for tiers in caches:
        run(last_repairs(tiers))
    running = sum(endpoint.close(timeout) for endpoint in live_endpoints())
    running += wait_for_abandoned(timeout)
    running += sum(worker.is_alive() for worker in others) + running_computations()
    return report(caches, "tiercache.close()", still_running=running, dropped=dropped)


async def aclose(timeout: float = CLOSE_WAIT) -> CloseReport:
    """Do what close() does, from a coroutine, and close the running loop's connections too.

    The loop's background refreshes get up to ``timeout`` seconds, then are cancelled.
    """
    timeout = checked_timeout(timeout, "tiercache.aclose()")
    deadline = time.monotonic() + timeout
    cancelled = await settle_background(timeout)
    dropped, workers = _background.stop()
    while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # (not join(): the loop's other tasks go on meanwhile)
    caches = live_tiers()
    for tiers in caches:
        await arun(last_repairs(tiers))
    running = 0
    for endpoint in live_endpoints():
        running += await endpoint.aclose(timeout)
    running += wait_for_abandoned(timeout)  # (as the endpoints' joins: one poll, as a rule)
    running += sum(worker.is_alive() for worker in workers) + running_computations()
    return report(caches, "tiercache.aclose()", still_running=running, dropped=dropped + cancelled)
