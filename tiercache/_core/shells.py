"""The two thin loops that drive flows: one blocks, one awaits.

They only perform the operations a flow yields (``ops``) and wait on single flights; every
decision (which tier, what to record, what to write back) stays in the flows. Keep the two side
by side and alike.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import contextvars
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Generator, Hashable
from typing import Any, Final

from tiercache import _background
from tiercache._core import tracing as _tracing
from tiercache._core.flights import ABANDONED, Flight, Flights, Settled, waiting, waits_on_itself
from tiercache._core.ops import (
    Await,
    Command,
    Compute,
    Flow,
    Join,
    Land,
    Op,
    Outcome,
    Overran,
    Sleep,
    Spawn,
)
from tiercache._errors import ReentrantCallError
from tiercache._l2.errors import RemoteUnavailable

__all__ = [
    "COMPUTE_THREAD",
    "Started",
    "afinish",
    "arun",
    "astart",
    "run",
    "running_computations",
    "settle_background",
]

#: The name of the threads that run sync functions with a ``compute_timeout``.
COMPUTE_THREAD = "tiercache-compute"


#: What a computation runs inside while nobody traces.
_NO_SPAN: Final = contextlib.nullcontext()


def _abandon(flights: Flights[Any] | None, key: Hashable, flight: Flight[Any] | None) -> None:
    # The flow stopped before it landed its flight (KeyboardInterrupt, a cancelled task, a bug):
    # such an interruption belongs to the caller it hit, so followers run the function themselves.
    if flights is not None and flight is not None and flight.settled is None:
        flights.settle(key, flight, ABANDONED)


def run(flow: Flow) -> Any:  # noqa: PLR0912 - one frame for every op: no helpers
    """Drive ``flow`` to its end in the calling thread and return its result."""
    flights: Flights[threading.Event] | None = None
    flight: Flight[threading.Event] | None = None
    key: Hashable = None
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if type(op) is Command:  # the common case first: L2 work
                try:
                    store = _store_for(op)
                    tracer = _tracing.tracer()
                    if tracer is None:
                        reply = getattr(store, op.kind.method)(*op.args)  # (op.perform(store), a frame less)
                    else:
                        with _tracing.l2_span(tracer, op) as record:
                            reply = record(op.perform(store))
                except Exception as exc:
                    error = _blamed(op, exc)
                continue
            if type(op) is Compute:  # here, not in a helper: each frame per level limits recursion
                call, function = op.call, op.function
                tracer = _tracing.tracer()
                try:
                    with _NO_SPAN if tracer is None else _tracing.compute_span(tracer, op):
                        reply = (
                            _compute_within(function, call.args, call.kwargs, op.timeout)
                            if op.timeout is not None
                            else function(*call.args)
                            if call.kwargs is None
                            else function(*call.args, **call.kwargs)
                        )
                except Exception as exc:
                    error = exc
                continue
            if isinstance(op, Join):
                flights, key = op.flights.thread, op.key
                flight, reply = _join(flights, key, op.flights.label)
                continue
            if isinstance(op, Land):
                if flights is not None and flight is not None:
                    flights.settle(op.key, flight, op.settled, linger=op.linger)
                continue
            try:
                reply = _perform(op)
            except Exception as exc:
                error = exc
    except StopIteration as stop:
        return stop.value
    finally:
        if flight is not None:  # (most calls lead no flight: no call, no frame)
            _abandon(flights, key, flight)


def _store_for(op: Command) -> Any:
    """Return the sync store to perform ``op`` on; on a cluster, fail at once where a primary is down."""
    store = op.endpoint.store()
    if op.endpoint.nodes is not None:  # (keys of a primary that failed lately: see _l2.nodes)
        op.endpoint.nodes.check(store.client, op.names())
    return store


def _blamed(op: Command, error: Exception) -> Exception:
    """Return what a failed L2 operation raises: on a cluster, maybe that one primary is down."""
    nodes = op.endpoint.nodes
    if nodes is None or type(error) is not RemoteUnavailable:
        return error
    return nodes.blame(op.endpoint.store().client, op.names(), error, op.endpoint.ping_node)


async def _astore_for(op: Command) -> Any:
    """Return the running loop's store to perform ``op`` on (see _store_for)."""
    endpoint = op.endpoint
    store = endpoint.astore()  # (may fail too: an endpoint with no async client)
    if store.openings_seen != endpoint.openings:  # (store() checks this itself)
        await store.drop_idle_connections()  # the breaker opened: they may be dead
    if endpoint.nodes is not None:
        endpoint.nodes.check(store.client, op.names())
    return store


async def _ablamed(op: Command, error: Exception) -> Exception:
    """``_blamed`` for coroutines."""
    nodes = op.endpoint.nodes
    if nodes is None or type(error) is not RemoteUnavailable:
        return error
    blamed: Exception = await nodes.ablame(
        op.endpoint.astore().client, op.names(), error, op.endpoint.aping_node
    )
    return blamed


def _join(
    flights: Flights[threading.Event], key: Hashable, label: str
) -> tuple[Flight[threading.Event] | None, Settled | None]:
    me = threading.get_ident()
    while True:
        flight, leader = flights.join(key, me)
        if leader:
            return flight, None
        if flight.settled is None and flight.done is not None:
            _wait_on(me, flight, label)
            try:
                flight.done.wait()
            finally:
                waiting.pop(me, None)
        if flight.settled is not ABANDONED:
            return None, flight.settled


def _wait_on(me: Hashable, flight: Flight[Any], label: str) -> None:
    """Note that ``me`` waits on ``flight``, unless that wait would come back to ``me``.

    Noted first, checked second: of two threads closing a cycle at once, one sees the other's
    note at least (both may raise; neither waits for ever).
    """
    waiting[me] = flight
    if waits_on_itself(me, flight):
        del waiting[me]
        raise ReentrantCallError(label)


def _compute_within(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None, timeout: float
) -> Any:
    """Run ``function`` on a thread of its own and wait ``timeout`` seconds for it.

    Raise Overran, holding the run's future, if it takes longer: the caller may go on without
    it. The thread runs in a copy of the caller's context (contextvars), as a task would.
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def compute() -> None:  # (the thread's body)
        future.set_running_or_notify_cancel()
        try:
            result = context.run(function, *args, **(kwargs or {}))
        except BaseException as exc:  # handed to whoever waits for the outcome
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=compute, name=COMPUTE_THREAD, daemon=True).start()
    done, _ = concurrent.futures.wait((future,), timeout)
    if not done:  # (not future.result(timeout): the function may raise TimeoutError itself)
        raise Overran(future)
    return future.result()


def _perform(op: Op) -> Any:
    # (L2 operations and Compute never get here: ``run()`` performs them itself, first.)
    if isinstance(op, Sleep):
        return time.sleep(op.seconds)
    if isinstance(op, Spawn):
        flow = op.flow
        if op.after is not None:  # no background thread waits for the run: it starts when it ends
            op.after.add_done_callback(lambda _: _background.submit(lambda: run(flow), op.dropped))
            return None
        return _background.submit(lambda: run(flow), op.dropped)
    if isinstance(op, Outcome):
        return _outcome(op.pending)  # (done: its flow was spawned after it)
    if isinstance(op, Await):
        done, _ = concurrent.futures.wait((op.pending,), op.timeout)
        if not done:
            raise Overran(op.pending)
        return _outcome(op.pending)
    raise TypeError(f"{op!r} belongs to the loop, not to _perform")


def _outcome(pending: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> Any:
    """Return the value of a finished run that overran, or raise how it ended, as an Exception.

    A run that ended by SystemExit in its thread, or by cancellation, interrupted nobody who
    waits here: it is thrown into the flow like any failure of the function, so the flow can
    let go of the key.
    """
    if pending.cancelled():
        raise RuntimeError("the run was cancelled")
    error = pending.exception()
    if error is not None and not isinstance(error, Exception):
        raise RuntimeError(f"the run ended with {error!r}") from error
    return pending.result()


async def arun(  # noqa: PLR0912 - one branch per kind of op, as in run()
    flow: Flow,
    flights: Flights[asyncio.Event] | None = None,
    flight: Flight[asyncio.Event] | None = None,
    key: Hashable = None,
) -> Any:
    """Drive ``flow`` to its end on the running loop and return its result."""
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if type(op) is Command:  # the common case first, as in run()
                try:
                    store = await _astore_for(op)
                    tracer = _tracing.tracer()
                    if tracer is None:
                        reply = await getattr(store, op.kind.method)(*op.args)  # (as in run())
                    else:
                        with _tracing.l2_span(tracer, op) as record:
                            reply = record(await op.perform(store))
                except Exception as exc:
                    error = await _ablamed(op, exc)
                continue
            if isinstance(op, Join):
                table = op.flights.of_loop()
                led, reply = await _ajoin(table, op.key, op.flights.label)
                if led is None:
                    continue
                # Lead from a task of its own: cancelling this caller must not cancel the run
                # that its followers are waiting for.
                task = asyncio.ensure_future(arun(flow, table, led, op.key))
                task.add_done_callback(_retrieve_exception)
                led.leader = task
                me = asyncio.current_task()
                waiting[me] = led  # (this task waits on the run: a cycle through it is seen)
                try:
                    return await asyncio.shield(task)
                finally:
                    waiting.pop(me, None)
            if isinstance(op, Land):
                if flights is not None and flight is not None:
                    flights.settle(op.key, flight, op.settled, linger=op.linger)
                continue
            try:
                reply = await _aperform(op)
            except Exception as exc:
                error = exc
    except StopIteration as stop:
        return stop.value
    finally:
        if flight is not None:  # (most calls lead no flight: no call, no frame)
            _abandon(flights, key, flight)


async def _ajoin(
    flights: Flights[asyncio.Event], key: Hashable, label: str
) -> tuple[Flight[asyncio.Event] | None, Settled | None]:
    me = asyncio.current_task()
    while True:
        flight, leader = flights.join(key)
        if leader:
            return flight, None
        if flight.settled is None and flight.done is not None:
            _wait_on(me, flight, label)
            try:
                await flight.done.wait()
            finally:
                waiting.pop(me, None)
        if flight.settled is not ABANDONED:
            return None, flight.settled


async def _aperform(op: Op) -> Any:
    # (L2 operations never get here: ``arun()`` performs them itself, first.)
    if isinstance(op, Compute):
        call = op.call
        tracer = _tracing.tracer()
        with _NO_SPAN if tracer is None else _tracing.compute_span(tracer, op):
            running = (
                op.function(*call.args) if call.kwargs is None else op.function(*call.args, **call.kwargs)
            )
            if op.timeout is None:
                return await running
            return await _acompute_within(running, op.timeout)
    if isinstance(op, Sleep):
        return await asyncio.sleep(op.seconds)
    if isinstance(op, Spawn):
        _keep(asyncio.ensure_future(arun(op.flow)))  # (after a run: its flow awaits the Outcome)
        return None
    if isinstance(op, Outcome):
        await asyncio.wait((op.pending,))  # (never raises: the outcome is read below)
        return _outcome(op.pending)
    if isinstance(op, Await):
        done, _ = await asyncio.wait((op.pending,), timeout=op.timeout)  # (the run goes on if not)
        if not done:
            raise Overran(op.pending)
        return _outcome(op.pending)
    raise TypeError(f"{op!r} belongs to the loop, not to _aperform")


async def _acompute_within(running: Any, timeout: float) -> Any:
    """Await ``running`` for ``timeout`` seconds; past it raise Overran, holding its task."""
    task = asyncio.ensure_future(running)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except BaseException:  # the caller was cancelled: nobody will take the run over
        task.cancel()
        raise
    if not done:
        _keep(task)
        raise Overran(task)
    return task.result()


def astart(flow: Flow) -> Started:
    """Start ``flow`` now and return what to await for its end (an async ``cache_clear()``...).

    Its local part (an L1 drop) runs before this returns; what follows runs as a task of the
    running loop, kept until it ends, so a caller that forgets ``await`` loses nothing; with no
    loop running (``asyncio.run(f.cache_clear())``, or sync code) it runs here, to its end.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return Started(None, run(flow))
    try:
        first = next(flow)
    except StopIteration as stop:
        return Started(None, stop.value)
    # The Redis parts of one owner's started flows go in the order they were started: each task
    # would otherwise race the last, and a set started after a clear could reach Redis first
    # (and be cleared) when the clear's first command happens to be the slower one.
    owner = getattr(first, "owner", None)
    previous = None if owner is None else _last_started.get(owner)
    task = asyncio.ensure_future(
        arun(_resumed(first, flow)) if previous is None or previous.done() else _after(previous, first, flow)
    )
    if owner is not None:
        _last_started[owner] = task
        task.add_done_callback(lambda done: _forget_started(owner, done))
    _keep(task)
    return Started(task)


#: The last flow each owner (a cache) started, while it runs: the next one waits for its end.
_last_started: weakref.WeakKeyDictionary[Any, asyncio.Future[Any]] = weakref.WeakKeyDictionary()


async def afinish(flow: Flow, owner: object) -> Any:
    """Drive ``flow`` to its end even if the caller is cancelled meanwhile; return its result.

    For the changes an awaiting caller makes (an adapter's set, delete, clear; invalidating a
    tag): one stopped half-way has done its L1 part and not its Redis part, or written Redis and
    not heard the reply (this process then keeps the value it replaced), and a value the caller
    replaced or dropped is served again. A cancelled caller stops waiting; its flow goes on as a
    task (as Django's async cache methods run on in their thread), and the owner's later changes
    begin after it, in the order they were made. Changes whose callers are still waiting run
    side by side, as they always did.
    """
    loop = asyncio.get_running_loop()
    left = _left_running.get(owner)
    if left:  # (a task of a loop that was closed under it never ends: only this loop's count)
        left.difference_update([task for task in left if task.get_loop().is_closed()])
        left = {task for task in left if task.get_loop() is loop}
    outcome: asyncio.Future[Any] = loop.create_future()
    # (The task hands its result to ``outcome`` itself: through asyncio.shield, a change took
    # three loop turns more than awaited in the caller; this way one, where tasks start eagerly.)
    work = arun(flow) if not left else _after_all(tuple(left), flow)
    task = _start_task(loop, _settle(work, outcome))
    try:
        return await outcome  # (cancelling the caller cancels this future, never the task)
    except asyncio.CancelledError:
        if not task.done():
            _keep(task)
            running = _left_running.setdefault(owner, set())
            running.add(task)
            task.add_done_callback(running.discard)
        raise


async def _settle(work: Coroutine[Any, Any, Any], outcome: asyncio.Future[Any]) -> None:
    try:
        value = await work
    except Exception as exc:  # (a cancelled caller's: nobody is left to raise it to)
        if not outcome.done():
            outcome.set_exception(exc)
    except BaseException:  # the task was cancelled (the loop is closing): so is the wait
        outcome.cancel()
        raise
    else:
        if not outcome.done():
            outcome.set_result(value)


if sys.version_info >= (3, 12):

    def _start_task(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.Task(work, loop=loop, eager_start=True)  # (its first step runs now, here)

else:

    def _start_task(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return loop.create_task(work)


async def _after_all(previous: tuple[asyncio.Future[Any], ...], flow: Flow) -> Any:
    await asyncio.wait(previous)  # (their outcomes are their own)
    return await arun(flow)


#: An owner's changes whose callers were cancelled, while they run: its next changes wait.
_left_running: weakref.WeakKeyDictionary[Any, set[asyncio.Future[Any]]] = weakref.WeakKeyDictionary()


def _forget_started(owner: Any, task: asyncio.Future[Any]) -> None:
    # (A task kept after its end would keep its owner: a value the weak key cannot outlive.)
    if _last_started.get(owner) is task:
        del _last_started[owner]


async def _after(previous: asyncio.Future[Any], first: Op, flow: Flow) -> Any:
    """Drive ``flow`` (its ``first`` op taken) once ``previous`` ended, however it ended."""
    if not previous.done() and previous.get_loop() is asyncio.get_running_loop():
        await asyncio.wait([previous])  # (its outcome is its own caller's)
    return await arun(_resumed(first, flow))


def _resumed(first: Op, flow: Flow) -> Flow:
    """Go on with ``flow``, whose first op was taken: yield it, then the rest as ``flow`` does."""
    op = first
    while True:
        try:
            reply = yield op
        except BaseException as exc:  # (thrown in by the shell: passed on, as yield from would)
            try:
                op = flow.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            op = flow.send(reply)
        except StopIteration as stop:
            return stop.value


class Started(collections.abc.Coroutine[Any, Any, Any]):
    """Work already started (a task) or done (its value), standing in for a coroutine.

    Await it, or hand it to ``asyncio.run``, ``create_task`` or ``gather``. Never awaited, it is
    no loss and no "never awaited" warning: the work goes on without it.
    """

    __slots__ = ("_steps", "_task", "_value")

    def __init__(self, task: asyncio.Future[Any] | None, value: Any = None) -> None:
        self._task = task
        self._value = value
        self._steps: Generator[Any, None, Any] | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        if self._task is None:
            return self._value
        # Shielded: a caller cancelled while it waits (a request timing out, a client gone)
        # stops waiting, never the change, which would otherwise stop half-way (its L1 part
        # done, Redis never told), leaving Redis, and this process's next call, the old value.
        return (yield from asyncio.shield(self._task))

    def send(self, value: Any) -> Any:
        if self._steps is None:
            self._steps = self.__await__()
        return self._steps.send(value)

    def throw(self, *error: Any) -> Any:
        if self._steps is None:
            self._steps = self.__await__()
        return self._steps.throw(*error)

    def close(self) -> None:
        if self._steps is not None:
            self._steps.close()


_background_tasks: set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Future[Any]) -> None:
    _background_tasks.add(task)  # the loop keeps only a weak reference to its tasks
    task.add_done_callback(_background_tasks.discard)


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # The leader may have been cancelled with nobody left awaiting: mark the outcome as seen.
    if not task.cancelled():
        task.exception()


async def settle_background(timeout: float) -> int:
    """Wait up to ``timeout`` s for the running loop's background tasks, then cancel the rest.

    Return how many were cancelled. (A refresh cancelled here changes nothing: the next call
    refreshes; a run past its ``compute_timeout`` is the caller's function, cancelled like any
    task the loop is left with when it shuts down.)
    """
    loop = asyncio.get_running_loop()
    mine = [task for task in _background_tasks if task.get_loop() is loop]
    if not mine:
        return 0
    _, pending = await asyncio.wait(mine, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)  # (a task may take its time to unwind)
    return len(pending)


def running_computations() -> int:
    """Return how many sync runs past their ``compute_timeout`` still run on their threads."""
    return sum(thread.name == COMPUTE_THREAD and thread.is_alive() for thread in threading.enumerate())
