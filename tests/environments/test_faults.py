"""Redis dies, stalls or lies, and no caller notices: each fault on a real redis-server we own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tiercache
from tests.support.faults import Caller, Record, black_hole, collector_paused, expected, until
from tests.support.servers import configured_server
from tiercache._l2 import breaker as _breaker
from tiercache._l2.codec import encode_value
from tiercache._l2.coherence import JOIN_WAIT
from tiercache._l2.envelope import FORMAT_VERSION, NO_TOKEN, open_envelope, seal
from tiercache._tools.redis_process import RedisProcess, free_port

pytestmark = pytest.mark.slow

TIMEOUT = 0.1
CONNECT_TIMEOUT = 0.25


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to kill, stop or pause."""
    with configured_server(tmp_path, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT) as process:
        yield process


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def keys(prefix: str, count: int, distinct: int | None = None) -> list[str]:
    return [f"{prefix}{i % (distinct or count)}" for i in range(count)]


def in_l2(server: RedisProcess, caller: Caller, key: str) -> bool:
    """Whether Redis holds a value (not nothing, nor the tombstone of an invalidation) for ``key``."""
    raw = server.client().get(caller.function.cache_key(key))
    return raw is not None and not open_envelope(raw).tombstone


def test_unreachable_at_start_calls_work_from_the_first_call(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    tiercache.configure(redis_url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout=CONNECT_TIMEOUT)
    caller = Caller(mode)
    record = caller.calls(keys("k", 300, distinct=30))
    assert record.problems == []
    assert record.worst < CONNECT_TIMEOUT
    stats = caller.function.cache_stats()
    assert stats.l2_errors == 1 and stats.degraded and stats.l1_hits == 270
    assert len([r for r in caplog.records if "is unavailable" in r.getMessage()]) == 1


def test_a_hanging_connect_costs_one_caller_one_connect_timeout(mode: str) -> None:
    with black_hole() as port:
        tiercache.configure(redis_url=f"redis://127.0.0.1:{port}/0", connect_timeout=CONNECT_TIMEOUT)
        caller = Caller(mode)
        record = caller.calls(keys("k", 100))
    assert record.problems == []
    first, rest = record.latencies[0], record.latencies[1:]
    # The first call also waits briefly for the invalidation channel (JOIN_WAIT), sync callers
    # only. The bounds are the claim's own, not the machine's: one connect timeout, never two,
    # and no other caller waits one (a loaded CI runner stalls a call for tens of ms anyway).
    assert JOIN_WAIT < CONNECT_TIMEOUT / 2
    assert CONNECT_TIMEOUT * 0.8 < first < 2 * CONNECT_TIMEOUT
    assert max(rest) < CONNECT_TIMEOUT / 2  # the circuit is open: nobody waits
    assert caller.function.cache_stats().l2_errors == 1


def test_killed_and_restarted_redis_is_never_seen_by_callers(
    server: RedisProcess, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caller = Caller(mode, ttl_l1=None)  # every call needs L2, so the outage is felt everywhere
    warm = caller.calls(keys("warm", 20))
    assert caller.function.cache_stats().l2_errors == 0
    server.kill()
    during = caller.calls(keys("during", 200, distinct=50))
    assert during.problems == [] and warm.problems == []
    assert caller.function.cache_stats().degraded
    server.restart()
    restarted = time.monotonic()

    def writes_and_reads_again() -> bool:
        # (both: the first call of a round can be the breaker's trial that meets a server still
        # starting, and the second the first to write; the next round then reads it back)
        probe, hits = f"back-{time.monotonic()}", caller.function.cache_stats().l2_hits
        caller.calls([probe, probe])
        return in_l2(server, caller, probe) and caller.function.cache_stats().l2_hits > hits

    recovery = until(writes_and_reads_again, timeout=3.0, step=0.02)
    assert time.monotonic() - restarted < 2.0, f"recovered after {recovery:.2f}s"
    stats = caller.function.cache_stats()
    assert not stats.degraded and stats.l2_hits >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unavailable" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


def test_a_stalled_redis_costs_a_caller_at_most_one_timeout(server: RedisProcess, mode: str) -> None:
    caller = Caller(mode, ttl_l1=None)
    caller.calls(keys("warm", 10))
    server.pause()  # SIGSTOP: connections stay open, nothing answers
    try:
        during = caller.calls(keys("during", 100, distinct=20))
    finally:
        server.resume()
    assert during.problems == []
    assert during.worst < TIMEOUT + 0.06, f"worst call took {during.worst:.3f}s"
    assert sum(latency > TIMEOUT / 2 for latency in during.latencies) == 1  # the one that hit the stall
    assert until(lambda: not caller.function.cache_stats().degraded, timeout=2.0) < 2.0


def test_client_pause_is_a_stall_too(server: RedisProcess, mode: str) -> None:
    caller = Caller(mode, ttl_l1=None)
    caller.calls(keys("warm", 10))
    server.client().client_pause(1500)
    during = caller.calls(keys("during", 50, distinct=10))
    assert during.problems == []
    assert during.worst < TIMEOUT + 0.06
    assert caller.function.cache_stats().degraded


def test_concurrent_coroutines_each_wait_one_timeout_at_most(server: RedisProcess) -> None:
    caller = Caller("async", ttl_l1=None)

    async def burst() -> list[float]:
        async def one(key: str) -> float:
            started = time.perf_counter()
            assert await caller.function(key) == expected(key)
            return time.perf_counter() - started

        return await asyncio.gather(*(one(f"k{i}") for i in range(100)))

    server.pause()
    try:
        with collector_paused():  # (a full collection alone can outlast the timeout: see there)
            latencies = asyncio.run(burst())
    finally:
        server.resume()
    # One timeout each: their reads were coalesced into two MGETs, not a hundred connections.
    # (Under two timeouts: a loaded machine can add tens of milliseconds to the one.)
    assert max(latencies) < 1.8 * TIMEOUT


def test_threads_never_see_redis_die_and_come_back(server: RedisProcess) -> None:
    caller = Caller("sync", ttl_l1=None)
    stop = threading.Event()
    records = [Record() for _ in range(8)]

    def work(record: Record) -> None:
        n = 0
        while not stop.is_set():
            caller.calls([f"t{n % 40}"], record)
            n += 1

    threads = [threading.Thread(target=work, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    server.kill()
    time.sleep(0.3)
    server.restart()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert [p for r in records for p in r.problems] == []
    assert sum(r.calls for r in records) > 100
    assert not caller.function.cache_stats().degraded


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00\x01not ours at all", id="foreign-bytes"),
        pytest.param(b"pickle\x80\x04\x95", id="pickle-ish"),
        pytest.param(seal(encode_value(expected("k")), 0, NO_TOKEN, 2**62)[:-5], id="truncated"),
        pytest.param(b"tc" + bytes([FORMAT_VERSION + 1]) + seal(b"", 0, NO_TOKEN, 0)[3:], id="newer-format"),
    ],
)
def test_garbage_in_redis_is_a_miss_counted_logged_once_and_overwritten(
    server: RedisProcess, mode: str, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caller = Caller(mode, ttl_l1=None)
    client = server.client()
    for key in ("k", "j"):
        client.set(caller.function.cache_key(key), garbage)
    assert caller.calls(["k", "j", "k"]).problems == []
    stats = caller.function.cache_stats()
    assert stats.l2_corrupt == 2 and stats.misses == 2 and stats.l2_hits == 1
    assert client.get(caller.function.cache_key("k")).startswith(b"tc\x02")  # ours now
    assert len([r for r in caplog.records if "unreadable L2 entry" in r.getMessage()]) == 1


def test_a_key_of_another_redis_type_is_overwritten(server: RedisProcess, mode: str) -> None:
    caller = Caller(mode, ttl_l1=None)
    caller.calls(["warm"])  # the generation is known: the next write is a plain SET NX GET
    client = server.client()
    client.rpush(caller.function.cache_key("k"), "someone", "else's", "list")
    assert caller.calls(["k", "k"]).problems == []
    assert client.type(caller.function.cache_key("k")) == b"string"
    assert not caller.function.cache_stats().degraded  # an error reply is not an outage


def test_invalidation_during_an_outage_is_replayed_after_it(server: RedisProcess) -> None:
    """Otherwise the old value would come back from Redis once it answers again."""
    writer, reader = Caller("sync", name="faults.shared"), Caller("sync", name="faults.shared")
    writer.calls(["k"])
    assert in_l2(server, writer, "k")
    server.pause()
    try:
        writer.calls(["x"])  # a read times out: the circuit opens
        writer.function.cache_invalidate("k")  # circuit open: deferred, never sent
    finally:
        server.resume()
    # Replayed in the background once Redis answers: the writer need not call again.
    until(lambda: not in_l2(server, writer, "k"), timeout=2.0)
    assert writer.function.cache_stats().pending_invalidations == 0
    assert reader.calls(["k"]).problems == [] and reader.runs == 1


def test_clear_during_an_outage_is_replayed_after_it(server: RedisProcess) -> None:
    writer = Caller("sync")
    writer.calls(["a", "b"])
    server.kill()
    writer.function.cache_clear()
    server.restart()
    until(lambda: not writer.function.cache_stats().degraded, timeout=2.0)
    writer.calls(["c"])  # replays the clear first
    generation_key = writer.function.__tiercache__.generation_key
    assert server.client().get(generation_key) is not None


def test_breaker_state_changes_are_logged_once_each(
    server: RedisProcess, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_breaker, "LOG_EVERY", 0.0)  # two outages in a row: both logged in full
    caller = Caller("sync", ttl_l1=None)
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        for _ in range(2):
            server.kill()
            caller.calls(keys("x", 50))
            server.restart()
            until(lambda: not caller.function.cache_stats().degraded, timeout=2.0)
        # The probe thread logs "is back" just after it closes the breaker, which is what until() saw.
        until(lambda: sum("is back" in r.getMessage() for r in caplog.records) >= 2, timeout=2.0)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unavailable" in m for m in messages) == 2
    assert sum("is back" in m for m in messages) == 2
    assert caller.function.cache_stats().degraded_seconds > 0


def test_recovery_after_a_long_outage_is_within_two_seconds(server: RedisProcess) -> None:
    """After a long outage the prober's backoff is at its ceiling; recovery still takes < 2 s."""
    caller = Caller("sync", ttl_l1=None)
    caller.calls(keys("warm", 5))
    server.kill()
    assert caller.calls(keys("k", 20)).problems == []  # the breaker opens
    time.sleep(3)  # backoff doubles 0.1, 0.2, 0.4, 0.8 to its 1 s ceiling
    assert caller.calls(keys("k", 20)).problems == []
    server.restart()
    restarted = time.monotonic()

    def writes_again() -> bool:
        key = f"back-{time.monotonic()}"
        caller.calls([key])
        return in_l2(server, caller, key)

    until(writes_again, timeout=3.0, step=0.02)
    assert time.monotonic() - restarted < 2.0
