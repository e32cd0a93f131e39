"""Refresh-ahead across a hot key's expiry, and a batch call's Redis round trips.

Refresh-ahead: threads call one hot key at a steady pace while its entry expires again and
again (a short TTL, a 50 ms function); every call's latency is kept. Without refresh-ahead the
callers at each expiry wait for the function; with it, a hit near the end starts the refresh
and nobody waits.

Batch: round trips are counted where redis-py writes to its socket (one packed command or one
pipeline each), for a cold call, a call answered by L2 (an empty L1, as in a new process), and
the same ids as single-id calls.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis.connection

import tiercache
from tiercache import tiered_cache, tiered_cache_many

COMPUTE_SECONDS = 0.05
TTL_SECONDS = 0.25
THREADS = 8
PACE_SECONDS = 0.005  # ~1,600 calls a second in all: each expiry is over 1% of the calls
RUN_SECONDS = 3.0


@dataclass(frozen=True)
class HotKeyRow:
    label: str
    calls: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    slow_calls: int  # calls over 10 ms
    runs: int  # times the function ran


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def hot_key(refresh_ahead: float | None, label: str) -> HotKeyRow:
    runs = 0

    @tiered_cache(
        ttl_l1=TTL_SECONDS,
        ttl_l2=TTL_SECONDS,
        refresh_ahead=refresh_ahead,
        coherent=False,
        name=f"bench.hot.{label.replace(' ', '_')}",
    )
    def exchange_rate(currency: str) -> float:
        nonlocal runs
        runs += 1
        time.sleep(COMPUTE_SECONDS)
        return 1.1

    exchange_rate("EUR")
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    stop = time.monotonic() + RUN_SECONDS

    def caller(mine: list[float]) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            exchange_rate("EUR")
            mine.append((time.perf_counter() - started) * 1000)
            time.sleep(PACE_SECONDS)

    threads = [threading.Thread(target=caller, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(ms for mine in latencies for ms in mine)
    return HotKeyRow(
        label,
        len(ordered),
        statistics.median(ordered),
        _quantile(ordered, 0.99),
        _quantile(ordered, 0.999),
        ordered[-1],
        sum(ms > 10 for ms in ordered),
        runs,
    )


def hot_key_rows() -> list[HotKeyRow]:
    return [hot_key(None, "without refresh_ahead"), hot_key(0.3, "refresh_ahead=0.3")]


@dataclass(frozen=True)
class BatchRow:
    ids: int
    batch_cold: int
    batch_from_l2: int
    single_cold: int
    single_from_l2: int
    batch_cold_ms: float
    single_cold_ms: float


@contextmanager
def _counting_sends() -> Iterator[list[int]]:
    """Count socket writes of redis-py's sync connections (one per command or pipeline)."""
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: object, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)  # type: ignore[arg-type]

    redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def batch_rows() -> list[BatchRow]:
    rows = []
    for count in (1, 10, 100):

        @tiered_cache_many(ttl_l1=600, ttl_l2=600, coherent=False, name=f"bench.batch.{count}")
        def load_users(ids: list[int]) -> dict[int, dict[str, int]]:
            return {i: {"id": i} for i in ids}

        @tiered_cache(ttl_l1=600, ttl_l2=600, coherent=False, name=f"bench.single.{count}")
        def load_user(user_id: int) -> dict[str, int]:
            return {"id": user_id}

        ids = list(range(count))
        tiercache.configure()  # (the same settings: opens nothing, keeps the namespace)
        load_user(-1)  # connect and learn the generation before counting
        load_users([-1])
        with _counting_sends() as sent:
            started = time.perf_counter()
            load_users(ids)
            batch_ms = (time.perf_counter() - started) * 1000
            batch_cold, sent[0] = sent[0], 0
            load_users.__tiercache__.local.clear()
            load_users(ids)
            batch_from_l2, sent[0] = sent[0], 0
            started = time.perf_counter()
            for user_id in ids:
                load_user(user_id)
            single_ms = (time.perf_counter() - started) * 1000
            single_cold, sent[0] = sent[0], 0
            load_user.__tiercache__.local.clear()
            for user_id in ids:
                load_user(user_id)
            single_from_l2 = sent[0]
        rows.append(
            BatchRow(count, batch_cold, batch_from_l2, single_cold, single_from_l2, batch_ms, single_ms)
        )
    return rows


if __name__ == "__main__":  # python -m benchmarks.policies, against TIERCACHE_REDIS_URL
    for row in hot_key_rows():
        print(row)
    for batch in batch_rows():
        print(batch)
