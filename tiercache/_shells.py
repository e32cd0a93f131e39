"""The two thin loops that drive ``_flow`` generators: one blocks, one awaits.

They only perform the I/O a flow yields and wait on single flights; every decision (which tier,
what to record, what to write back) stays in the flow. Keep the two side by side and alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from . import _background
from ._flight import ABANDONED, Flight, Flights, Settled
from ._flow import (
    AcquireLock,
    Compute,
    Delete,
    Flow,
    Join,
    Land,
    NewGeneration,
    Op,
    Read,
    ReleaseLock,
    Sleep,
    Spawn,
    Write,
)

if TYPE_CHECKING:
    from ._function import FunctionCache

__all__ = ["run_async", "run_sync"]


def _abandon(flights: Flights[Any], key: Hashable, flight: Flight[Any] | None) -> None:
    # The flow stopped before it landed its flight (KeyboardInterrupt, a cancelled task, a bug):
    # such an interruption belongs to the caller it hit, so followers run the function themselves.
    if flight is not None and flight.settled is None:
        flights.settle(key, flight, ABANDONED)


def run_sync(flow: Flow, cache: FunctionCache) -> Any:
    """Drive ``flow`` to its end in the calling thread and return its result."""
    flights = cache.thread_flights
    flight: Flight[threading.Event] | None = None
    key: Hashable = None
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if isinstance(op, Join):
                key = op.key
                flight, reply = _join_sync(flights, key)
                continue
            if isinstance(op, Land):
                if flight is not None:
                    flights.settle(op.key, flight, op.settled, linger=op.linger)
                continue
            try:
                reply = _perform_sync(op, cache)
            except Exception as exc:
                error = exc
    except StopIteration as stop:
        return stop.value
    finally:
        _abandon(flights, key, flight)


def _join_sync(
    flights: Flights[threading.Event], key: Hashable
) -> tuple[Flight[threading.Event] | None, Settled | None]:
    while True:
        flight, leader = flights.join(key)
        if leader:
            return flight, None
        flight.done.wait()
        if flight.settled is not ABANDONED:
            return None, flight.settled


def _perform_sync(op: Op, cache: FunctionCache) -> Any:  # noqa: PLR0911 - one per operation; a table would lose mypy's narrowing
    if isinstance(op, Read):
        return op.endpoint.sync_store().read(op.key, op.generation_key)
    if isinstance(op, Compute):
        call = op.call
        if call.kwargs is None:
            return cache.function(*call.args)
        return cache.function(*call.args, **call.kwargs)
    if isinstance(op, Write):
        return op.endpoint.sync_store().write(op.key, op.payload, op.ttl_ms)
    if isinstance(op, Delete):
        return op.endpoint.sync_store().delete(op.keys)
    if isinstance(op, NewGeneration):
        return op.endpoint.sync_store().set_generation(op.generation_key, op.token)
    if isinstance(op, AcquireLock):
        return op.endpoint.sync_store().acquire_lock(op.key, op.token, op.ttl_ms)
    if isinstance(op, ReleaseLock):
        return op.endpoint.sync_store().release_lock(op.key, op.token)
    if isinstance(op, Sleep):
        return time.sleep(op.seconds)
    if isinstance(op, Spawn):
        flow = op.flow
        return _background.submit(lambda: run_sync(flow, cache))
    raise AssertionError(f"unknown flow operation {op!r}")


async def run_async(
    flow: Flow, cache: FunctionCache, flight: Flight[asyncio.Event] | None = None, key: Hashable = None
) -> Any:
    """Drive ``flow`` to its end on the running loop and return its result."""
    flights = cache.loop_flights()
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            op = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if isinstance(op, Join):
                led, reply = await _join_async(flights, op.key)
                if led is None:
                    continue
                # Lead from a task of its own: cancelling this caller must not cancel the run
                # that its followers are waiting for.
                task = asyncio.ensure_future(run_async(flow, cache, led, op.key))
                task.add_done_callback(_retrieve_exception)
                return await asyncio.shield(task)
            if isinstance(op, Land):
                if flight is not None:
                    flights.settle(op.key, flight, op.settled, linger=op.linger)
                continue
            try:
                reply = await _perform_async(op, cache)
            except Exception as exc:
                error = exc
    except StopIteration as stop:
        return stop.value
    finally:
        _abandon(flights, key, flight)


async def _join_async(
    flights: Flights[asyncio.Event], key: Hashable
) -> tuple[Flight[asyncio.Event] | None, Settled | None]:
    while True:
        flight, leader = flights.join(key)
        if leader:
            return flight, None
        await flight.done.wait()
        if flight.settled is not ABANDONED:
            return None, flight.settled


async def _perform_async(op: Op, cache: FunctionCache) -> Any:  # noqa: PLR0911 - as _perform_sync
    if isinstance(op, Read):
        return await op.endpoint.async_store().read(op.key, op.generation_key)
    if isinstance(op, Compute):
        call = op.call
        if call.kwargs is None:
            return await cache.function(*call.args)
        return await cache.function(*call.args, **call.kwargs)
    if isinstance(op, Write):
        return await op.endpoint.async_store().write(op.key, op.payload, op.ttl_ms)
    if isinstance(op, Delete):
        return await op.endpoint.async_store().delete(op.keys)
    if isinstance(op, NewGeneration):
        return await op.endpoint.async_store().set_generation(op.generation_key, op.token)
    if isinstance(op, AcquireLock):
        return await op.endpoint.async_store().acquire_lock(op.key, op.token, op.ttl_ms)
    if isinstance(op, ReleaseLock):
        return await op.endpoint.async_store().release_lock(op.key, op.token)
    if isinstance(op, Sleep):
        return await asyncio.sleep(op.seconds)
    if isinstance(op, Spawn):
        task = asyncio.ensure_future(run_async(op.flow, cache))
        _background_tasks.add(task)  # the loop keeps only a weak reference to its tasks
        task.add_done_callback(_background_tasks.discard)
        return None
    raise AssertionError(f"unknown flow operation {op!r}")


_background_tasks: set[asyncio.Future[Any]] = set()


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # The leader may have been cancelled with nobody left awaiting: mark the outcome as seen.
    if not task.cancelled():
        task.exception()
