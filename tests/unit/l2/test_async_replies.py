"""Replies read off an asyncio connection by its hiredis reader, timed by one timer per pool.

A connection here is the two things ``read_reply`` reads: a parser with a hiredis reader, and the
asyncio stream redis-py would have it read from, fed by hand. The real connections are in
tests/behaviour/tiers/test_wire_async.py (a paused redis-server, dropped connections, RESP3
pushes).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
from redis.utils import HIREDIS_AVAILABLE

from tiercache._l2 import async_replies
from tiercache._l2.async_replies import ReadTimer, read_reply, reads_here
from tiercache._l2.oversized import BOUND
from tiercache._l2.replies import NOT_ENOUGH_DATA, OversizedReply, abounded_parser

hiredis = pytest.importorskip("hiredis")


def connection_on(stream: asyncio.StreamReader) -> Any:
    def parse_error(message: str) -> redis.ResponseError:
        return redis.ResponseError(message)

    reader = hiredis.Reader(replyError=parse_error, notEnoughData=NOT_ENOUGH_DATA)
    parser = SimpleNamespace(_reader=reader, _stream=stream, _connected=True, _read_size=65536)
    return SimpleNamespace(_parser=parser, _reader=stream, _writer=object())


def test_a_reply_is_read_whole_across_reads_and_an_error_reply_is_raised() -> None:
    async def main() -> list[Any]:
        stream = asyncio.StreamReader()
        connection, timer = connection_on(stream), ReadTimer(5.0)
        reading = asyncio.ensure_future(read_reply(connection, timer))
        for chunk in (b"$5\r\nhel", b"lo\r\n-ERR no such thing\r\n"):
            await asyncio.sleep(0)
            stream.feed_data(chunk)
        first = await reading
        with pytest.raises(redis.ResponseError, match="no such thing"):
            await read_reply(connection, timer)  # (already in the reader: no read, no deadline)
        return [first, timer._reads]

    assert asyncio.run(main()) == [b"hello", {}]


def test_a_reply_that_never_comes_times_out_within_the_timeout_and_a_quarter() -> None:
    async def main() -> float:
        stream = asyncio.StreamReader()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            await read_reply(connection_on(stream), ReadTimer(0.2))
        with pytest.raises(redis.TimeoutError):  # the stream stays failed: it is dropped
            await stream.read(1)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.2 <= took < 0.2 * 1.25 + 0.5  # (never early; late only by a tick and a busy machine)


def test_a_reply_that_came_after_its_deadline_passed_is_not_returned() -> None:
    """The timer fails the stream on the turn the reply arrives, before the reader resumes.

    The reply is whole, but its stream is failed: were it returned, the connection would go back
    to the pool and fail the next command read from it. It is a timeout, and the connection
    is dropped.
    """

    async def main() -> None:
        stream = asyncio.StreamReader()
        timer = ReadTimer(5.0)
        reading = asyncio.ensure_future(read_reply(connection_on(stream), timer))
        await asyncio.sleep(0)  # (waiting for its reply now)
        stream.feed_data(b"+OK\r\n")  # the reply arrives ...
        timer._reads[stream] = 0.0  # ... and, on the same turn, the timer finds it overdue
        timer._check()
        with pytest.raises(redis.TimeoutError):
            await reading
        assert timer._reads == {} and timer._handle is None

    asyncio.run(main())


def test_a_cancelled_read_leaves_no_deadline_and_the_timer_stops_ticking() -> None:
    async def main() -> None:
        stream = asyncio.StreamReader()
        timer = ReadTimer(0.004)
        reading = asyncio.ensure_future(read_reply(connection_on(stream), timer))
        await asyncio.sleep(0)
        assert list(timer._reads) == [stream] and timer._handle is not None
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert timer._reads == {}
        await asyncio.sleep(0.05)  # (a tick or more: it finds nothing under way, and stops)
        assert timer._handle is None
        assert stream.exception() is None  # (nobody's read is failed by a read that left)

    asyncio.run(main())


def test_one_timer_keeps_many_reads_and_fails_only_the_overdue() -> None:
    async def main() -> list[Any]:
        slow, quick = asyncio.StreamReader(), asyncio.StreamReader()
        timer = ReadTimer(0.1)
        reads = [asyncio.ensure_future(read_reply(connection_on(s), timer)) for s in (slow, quick)]
        await asyncio.sleep(0.05)
        quick.feed_data(b":1\r\n")
        return await asyncio.gather(*reads, return_exceptions=True)

    slow_reply, quick_reply = asyncio.run(main())
    assert isinstance(slow_reply, redis.TimeoutError) and quick_reply == 1


def test_a_timer_ticks_at_most_every_millisecond() -> None:
    assert ReadTimer(0.0001)._tick == async_replies.MIN_TICK and ReadTimer(0.1)._tick == 0.025


def test_a_string_past_the_bound_is_refused_before_the_next_read() -> None:
    async def main() -> None:
        stream = asyncio.StreamReader()
        reading = asyncio.ensure_future(read_reply(connection_on(stream), None))
        await asyncio.sleep(0)
        stream.feed_data(b"$%d\r\n" % (BOUND.bytes * 4) + b"x" * (BOUND.bytes + 8192))
        with pytest.raises(OversizedReply):
            await asyncio.wait_for(reading, 5)  # (not refused: it would wait for the rest)
        assert stream._buffer == b""  # (that read was the last: the rest is never asked for)

    asyncio.run(main())


def test_no_timer_means_no_timeout() -> None:
    async def main() -> Any:
        stream = asyncio.StreamReader()
        reading = asyncio.ensure_future(read_reply(connection_on(stream), None))
        await asyncio.sleep(0.05)
        stream.feed_data(b"+late\r\n")
        return await reading

    assert asyncio.run(main()) == b"late"


def test_a_timer_left_armed_on_a_loop_that_stopped_still_times_out_reads_on_the_next() -> None:
    timer = ReadTimer(0.05)

    async def never_answered() -> None:
        with pytest.raises(redis.TimeoutError):
            await read_reply(connection_on(asyncio.StreamReader()), timer)

    async def cut_short() -> None:
        reading = asyncio.ensure_future(read_reply(connection_on(asyncio.StreamReader()), timer))
        await asyncio.sleep(0)
        reading.cancel()  # (its loop then stops with the timer's next tick still pending)

    asyncio.run(cut_short())
    assert timer._handle is not None
    asyncio.run(asyncio.wait_for(never_answered(), 5))


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="redis-py does not take this hiredis (older than 3.2)")
def test_only_connections_that_read_as_redis_py_plainly_does_are_read_here() -> None:
    """A Sentinel-managed connection keeps its read_response: it turns READONLY into a failover."""
    hiredis_parser = abounded_parser(2, hiredis=True)
    plain = redis.asyncio.Connection(parser_class=hiredis_parser)
    pool = redis.asyncio.sentinel.SentinelConnectionPool("mymaster", None)  # type: ignore[arg-type]
    managed = redis.asyncio.sentinel.SentinelManagedConnection(
        connection_pool=pool, parser_class=hiredis_parser
    )
    python_parsed = redis.asyncio.Connection(parser_class=abounded_parser(2, hiredis=False))
    assert [reads_here(c) for c in (plain, managed, python_parsed)] == [True, False, False]
