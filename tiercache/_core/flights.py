"""Single flight: concurrent misses on one key share one run of the function.

One table serves threads and coroutines alike; only the signal a follower waits on differs
(``threading.Event`` or ``asyncio.Event``), and the shells do the waiting.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Flight", "FlightTables", "Flights", "Settled", "waiting", "waits_on_itself"]


class _Signal(Protocol):
    def set(self) -> None: ...


SignalT = TypeVar("SignalT", bound=_Signal)


class Settled:
    """How a flight ended: its value, or the exception the function raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> Any:
        """Return the value, or raise the flight's exception."""
        if self.error is not None:
            raise self.error
        return self.value


#: A flight whose leader went away without a result (interrupted, cancelled): its followers
#: run the function themselves rather than inherit an interruption that was not theirs.
ABANDONED = Settled(None, None)


class Flight(Generic[SignalT]):
    """One run of the function for one key, and the signal its followers wait on.

    The signal is made by the first follower: most flights have none, and an Event costs more
    than the rest of the flight's bookkeeping together.
    """

    __slots__ = ("done", "leader", "settled", "settled_at")

    def __init__(self, leader: Hashable = None) -> None:
        self.done: SignalT | None = None
        self.settled: Settled | None = None
        self.settled_at = 0.0
        self.leader = leader  # who runs it: a thread's ident, or the task leading it


#: Who waits on which unsettled flight now (a thread's ident, or a task): the edges along which
#: a wait is followed to see whether it would come back to the waiter. Each waiter adds and
#: removes its own edge; plain dict operations, atomic under the GIL.
waiting: dict[Hashable, Flight[Any]] = {}
# A forked child has only the thread that forked (which was not waiting): the parent's other
# threads' edges would point at flights nobody settles, under idents new threads may reuse.
os.register_at_fork(after_in_child=waiting.clear)


def waits_on_itself(me: Hashable, flight: Flight[Any]) -> bool:
    """Whether ``me`` waiting on ``flight`` would wait for ever.

    So it would if the flight's leader is ``me``, or waits, from flight to flight, on a run
    ``me`` leads (``f(x)`` calling ``f(x)``, ``a(1)`` -> ``b(1)`` -> ``a(1)``, in a thread or a
    task, or across threads).

    A settled flight ends the chain: its waiter wakes whatever it was waiting for.
    """
    for _ in range(1024):  # (a chain longer than any real one ends the walk)
        if flight.settled is not None:
            return False
        leader = flight.leader
        if leader is None:
            return False
        if leader == me:
            return True
        next_flight = waiting.get(leader)
        if next_flight is None:
            return False
        flight = next_flight
    return False


class Flights(Generic[SignalT]):
    """The flights of one function (per event loop, for coroutines).

    A settled flight may linger for ``linger`` seconds: a caller whose L2 read was already on
    its way when the leader wrote L2 then finds the result here instead of running the
    function again. With L1 on, the leader's L1 write closes that gap and linger is 0.
    """

    def __init__(
        self, signal: Callable[[], SignalT], linger: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._signal = signal
        self._linger = linger
        self._clock = clock
        self._lock = threading.Lock()
        self._flying: dict[Hashable, Flight[SignalT]] = {}
        self._landed: dict[Hashable, Flight[SignalT]] = {}

    def join(self, key: Hashable, leader: Hashable = None) -> tuple[Flight[SignalT], bool]:
        """Return the flight for ``key`` and whether the caller leads it (runs the function).

        ``leader`` names the caller, should it lead (a task leading later sets it then).
        """
        with self._lock:
            flight = self._flying.get(key)
            if flight is not None:
                if flight.done is None:
                    flight.done = self._signal()
                return flight, False
            self._prune()
            flight = self._landed.get(key)
            if flight is not None:
                return flight, False  # settled already: nothing to wait for
            flight = self._flying[key] = Flight(leader)
            return flight, True

    def settle(
        self, key: Hashable, flight: Flight[SignalT], settled: Settled, *, linger: bool = False
    ) -> None:
        """End ``flight`` with ``settled`` and wake its followers; keep it around if ``linger``."""
        with self._lock:
            flight.settled = settled
            flight.settled_at = self._clock()
            if self._flying.get(key) is flight:
                del self._flying[key]
                if linger and self._linger > 0:
                    self._landed.pop(key, None)
                    self._landed[key] = flight
            done = flight.done  # a follower that joins from now on finds the flight settled
        if done is not None:
            done.set()

    def detach(self, key: Hashable) -> None:
        """Cut ``key``'s flight loose (it was invalidated): later callers start a run of their own.

        Callers that joined it already still get its outcome; its leader finds it detached when
        it settles, and neither lingers it nor ends a newer flight of the same key.
        """
        with self._lock:
            self._flying.pop(key, None)
            self._landed.pop(key, None)

    def detach_all(self) -> None:
        """Cut every flight loose (the function's cache was cleared)."""
        with self._lock:
            self._flying.clear()
            self._landed.clear()

    def _prune(self) -> None:
        deadline = self._clock() - self._linger
        landed = self._landed
        while landed:
            key = next(iter(landed))
            if landed[key].settled_at > deadline:
                return
            del landed[key]


class FlightTables:
    """One cache's single flights: one table for threads, one per event loop for coroutines.

    A table of a loop is made on first use there and forgotten with the loop.
    """

    __slots__ = ("_clock", "_linger", "_loops", "label", "thread")

    def __init__(self, label: str, *, linger: float, clock: Callable[[], float]) -> None:
        self.label = label  # (whose flights: named when a call would wait on itself)
        self._linger = linger
        self._clock = clock
        self.thread: Flights[threading.Event] = Flights(threading.Event, linger, clock)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flights[asyncio.Event]] = (
            weakref.WeakKeyDictionary()
        )

    def of_loop(self) -> Flights[asyncio.Event]:
        """Return the table of the running event loop."""
        loop = asyncio.get_running_loop()
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops.setdefault(loop, Flights(asyncio.Event, self._linger, self._clock))
        return flights

    def detach(self, keys: Iterable[Hashable] | None) -> None:
        """Cut the runs of ``keys`` (None: of every key) loose from later callers, in every table."""
        for flights in self._all():
            if keys is None:
                flights.detach_all()
            else:
                for key in keys:
                    flights.detach(key)

    def after_fork(self) -> None:
        """Start the child of a fork() with empty tables: no parent thread will settle a flight."""
        self.thread = Flights(threading.Event, self._linger, self._clock)
        self._loops = weakref.WeakKeyDictionary()

    def _all(self) -> list[Flights[Any]]:
        while True:
            try:  # an event loop on another thread may add its table while we copy
                return [self.thread, *self._loops.values()]
            except RuntimeError:
                continue
