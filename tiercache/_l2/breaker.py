"""The circuit breaker in front of one Redis endpoint.

Closed: operations go through. After ``threshold`` consecutive failures it opens: operations
are skipped at once, so no caller waits on a Redis that just failed. While open, a background
thread probes the endpoint (a PING on a fresh connection) after a backoff that doubles up to
``max_backoff``; the first success closes the breaker. No caller ever pays for a probe, and the
breaker closes even when no call comes. An endpoint that cannot be probed from a thread (an
async-only client) instead lets one operation through as the probe after each backoff
(half-open). Only transitions are logged, and at most one line per endpoint every
``LOG_EVERY`` seconds: a flapping Redis gives one line, then one summary of what was held back.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["CircuitBreaker"]

logger = logging.getLogger("tiercache")

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half-open"

#: Seconds between two state-change lines of one endpoint; changes in between are counted, and
#: summed up (with the state they ended in) once the period is over.
LOG_EVERY: Final = 10.0

_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


class CircuitBreaker:
    """Decide whether an L2 operation may go to the endpoint now, and learn from the outcome."""

    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[], bool] | None = None,
        threshold: int = 1,
        first_backoff: float = 0.1,
        max_backoff: float = 1.0,
        probe_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] = lambda: None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.probe_timeout = probe_timeout
        self._probe = probe
        self._clock = clock
        self._on_open = on_open
        self._on_close = on_close  # (called in the thread that closed it: keep it short)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.state: str = CLOSED
        #: ``state == CLOSED``, kept beside it: what the hot path reads (callers need not know
        #: the breaker's states, and a plain attribute costs no frame).
        self.closed = True
        self.failures = 0  # consecutive
        self._backoff = first_backoff
        self._retry_at = 0.0  # half-open probing: when to let the next probe through
        self._opened_at = 0.0
        self._degraded = 0.0  # seconds spent not closed, before the current outage
        self._log = TransitionLog(name, clock, self._in_use)
        self._prober: threading.Thread | None = None
        _breakers.add(self)

    def _become(self, state: str) -> None:
        self.state = state  # (the only place it changes after __init__: see closed)
        self.closed = state == CLOSED

    def _in_use(self) -> bool:
        return self.closed

    @property
    def is_open(self) -> bool:
        """Whether L2 is being skipped (open, or half-open waiting on its probe)."""
        return not self.closed

    def degraded_seconds(self) -> float:
        """Return the total time spent not closed, the current outage included."""
        current = self._clock() - self._opened_at if self.state != CLOSED else 0.0
        return self._degraded + current

    def allow(self) -> bool:
        """Return whether an operation may go to the endpoint now."""
        if self.state == CLOSED:
            return True
        if self._probe is not None:
            return False  # the background prober closes it
        with self._lock:
            now = self._clock()
            if now < self._retry_at:
                return False
            # Half-open: this operation is the probe. One that never reports back (its caller
            # was cancelled) is replaced after probe_timeout.
            self._become(HALF_OPEN)
            self._retry_at = now + self.probe_timeout
            return True

    def success(self) -> None:
        """Record an operation that reached the endpoint (an answer, even an error reply)."""
        if self.state == CLOSED:
            self.failures = 0
            return
        with self._lock:
            if self.state == CLOSED:
                return
            outage = self._clock() - self._opened_at
            self._degraded += outage
            self._become(CLOSED)
            self.failures = 0
            self._backoff = self.first_backoff
        self._log.change(
            "tiercache: L2 at %s is back after %.1f s; using it again", self.name, outage, opening=False
        )
        self._on_close()

    def failure(self, error: BaseException) -> None:
        """Record an operation that could not reach the endpoint or timed out."""
        with self._lock:
            self.failures += 1
            now = self._clock()
            if self.state == HALF_OPEN:
                self._backoff = min(self._backoff * 2, self.max_backoff)
                self._become(OPEN)
                self._retry_at = now + _jittered(self._backoff)
                return
            if self.state == OPEN or self.failures < self.threshold:
                return
            self._become(OPEN)
            self._opened_at = now
            self._retry_at = now + _jittered(self._backoff)
        self._log.change(
            "tiercache: L2 at %s is unavailable (%s); serving from L1 and the functions themselves, "
            "trying it again in %.2f s",
            self.name,
            error,
            self._backoff,
            opening=True,
        )
        self._on_open()
        self._start_prober()

    def _start_prober(self) -> None:
        if self._probe is not None and not self._stopped.is_set():
            prober = threading.Thread(target=self._probe_until_back, name="tiercache-probe", daemon=True)
            prober.start()
            self._prober = prober  # (started first: stop() may join whatever it finds here)

    def _probe_until_back(self) -> None:
        backoff = self.first_backoff
        while self.state != CLOSED and not self._stopped.wait(_jittered(backoff)):
            if self.state == CLOSED:
                return
            try:
                answered = self._probe is not None and self._probe()
            except Exception:  # a probe must never kill the prober
                answered = False
            if answered:
                self.success()
                return
            backoff = min(backoff * 2, self.max_backoff)
            self._backoff = backoff

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop probing (the endpoint is being closed), and say what was held back.

        Waits up to ``timeout`` seconds for a probe under way (a PING bounded by its timeouts);
        returns whether the prober ended.
        """
        self._stopped.set()
        self._log.stop(timeout)
        prober = self._prober
        if prober is not None and prober is not threading.current_thread():
            prober.join(timeout)
            return not prober.is_alive()
        return True

    def resume(self) -> None:
        """Probe again after stop(), if Redis was unavailable when it stopped."""
        self._stopped.clear()
        if self.state != CLOSED and (self._prober is None or not self._prober.is_alive()):
            self._start_prober()

    def _reset_after_fork(self) -> None:
        # The child has no prober thread; it learns about an outage again on its first call.
        self._lock = threading.Lock()
        self._become(CLOSED)
        self.failures = 0
        self._backoff = self.first_backoff
        self._prober = None
        self._log.after_fork()


class TransitionLog:
    """A breaker's state changes, logged as they happen but one line per LOG_EVERY seconds at most.

    An outage that began less than LOG_EVERY seconds after the last one logged is held back, and
    then its end too; once the period is over, one line says how many were held back and the
    state they ended in.
    """

    def __init__(self, name: str, clock: Callable[[], float], in_use: Callable[[], bool]) -> None:
        self._name = name
        self._clock = clock
        self._in_use = in_use  # (the breaker's state when the summary is due)
        self._lock = threading.Lock()
        self._quiet_until = -LOG_EVERY  # no state-change line before then; changes are counted
        self._held_back = 0
        self._open_logged = False  # whether the current outage was logged (then so is its end)
        self._summary: threading.Timer | None = None

    def change(self, message: str, *args: object, opening: bool) -> None:
        """Log a state change, or count it as held back (see the class)."""
        with self._lock:
            now = self._clock()
            if opening and now >= self._quiet_until:
                self._quiet_until = now + LOG_EVERY
                self._open_logged, quiet = True, False
            elif not opening and self._open_logged:
                self._open_logged, quiet = False, False
            else:
                self._open_logged = False
                self._held_back += 1
                quiet = True
                if self._summary is None:
                    self._summary = threading.Timer(max(self._quiet_until - now, 0.0), self._sum_up)
                    self._summary.daemon = True
                    self._summary.start()
        if not quiet:
            logger.warning(message, *args)

    def _sum_up(self) -> None:
        with self._lock:
            held_back, self._held_back, self._summary = self._held_back, 0, None
            self._quiet_until = self._clock() + LOG_EVERY
        if held_back:
            logger.warning(
                "tiercache: L2 at %s changed state %d more time(s) in the last %.0f s (not logged "
                "one by one); it is %s now",
                self._name,
                held_back,
                LOG_EVERY,
                "in use" if self._in_use() else "skipped (unavailable)",
            )

    def stop(self, timeout: float) -> None:
        """Say now what was held back (the breaker is being stopped)."""
        summary = self._summary
        if summary is not None:
            summary.cancel()
            self._sum_up()
            summary.join(timeout)

    def after_fork(self) -> None:
        """In a child: no summary timer survived the fork, and the parent's lock may be held."""
        self._lock = threading.Lock()
        self._summary = None
        self._held_back = 0


# Our own: a library's background draws must not move the application's seeded random sequence
# (nor trip hypothesis, which checks the global one while it draws examples).
_RANDOM = random.Random()


def _jittered(seconds: float) -> float:
    # +-20%: processes that lost Redis together should not all probe it in the same instant.
    return seconds * _RANDOM.uniform(0.8, 1.2)


def _reset_all_after_fork() -> None:
    for breaker in list(_breakers):
        breaker._reset_after_fork()


os.register_at_fork(after_in_child=_reset_all_after_fork)
