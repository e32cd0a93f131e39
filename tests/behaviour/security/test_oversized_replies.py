"""Strings planted in Redis past every max_value_bytes are refused as they arrive, not read whole.

Someone who can write the shared Redis planted 256 MB under a value key (four readers: +1.46 GB
peak, 17 s), 32 MB under a tag key (~180 ms on every tagged call, never repaired), 256 MB under a
generation key (2.4 s per re-read). Here a reply past the bound stops at the bound, its connection
is dropped, and the key is read again by length and first bytes only: a value is a miss that the
next write replaces, a tag token is reclaimed, a generation rewritten; the breaker is not told.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.utils import HIREDIS_AVAILABLE

import tiercache
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._decorator.function import LINGER
from tiercache._decorator.tag_names import digest_of, tag_key
from tiercache._l2 import oversized
from tiercache._l2.endpoint import live_endpoints
from tiercache._l2.envelope import HEADER_SIZE, generation_from, token_of
from tiercache._l2.oversized import BOUND, OVERSIZED_PREFIX, Oversized
from tiercache._l2.replies import OversizedReply, abounded_parser, bounded_parser
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.redis_server

MiB = 1 << 20
PARSERS = [(hiredis, protocol) for hiredis in (False, True) for protocol in (2, 3)]


def parser_id(kind: tuple[bool, int]) -> str:
    return f"{'hiredis' if kind[0] else 'python'}-resp{kind[1]}"


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> int:
    """A 1 MiB bound for the parser tests (the process's own is at least 8 MiB and an envelope)."""
    monkeypatch.setattr(BOUND, "bytes", MiB)
    return MiB


def planted(kind: tuple[bool, int], bound: int, server: RedisProcess) -> tuple[bool, int]:
    """Skip a hiredis case without hiredis; plant a 48 MiB bomb, a string of the bound, a small one."""
    hiredis, protocol = kind
    if hiredis and not HIREDIS_AVAILABLE:
        pytest.skip("hiredis is not installed")
    server.client().mset({"bomb": b"x" * (48 * MiB), "fits": b"y" * bound, "small": b"z"})
    return hiredis, protocol


def traced_peak(work: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``work``; return what it returned or raised, and the most Python memory it held at once."""
    tracemalloc.start()
    try:
        try:
            outcome: Any = work()
        except Exception as exc:  # (the outcome under test)
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", PARSERS, ids=parser_id)
def test_sync_parsers_stop_at_the_bound_and_the_client_goes_on(
    kind: tuple[bool, int], small_bound: int, redis_server: RedisProcess
) -> None:
    hiredis, protocol = planted(kind, small_bound, redis_server)
    client = redis.Redis.from_url(
        redis_server.url, protocol=protocol, parser_class=bounded_parser(protocol, hiredis=hiredis)
    )
    try:
        outcome, peak = traced_peak(lambda: client.get("bomb"))
        assert isinstance(outcome, OversizedReply) and peak < 8 * MiB  # (unbounded: 48 MiB and more)
        assert isinstance(traced_peak(lambda: client.mget(["small", "bomb"]))[0], OversizedReply)
        # The dropped connection left nothing behind: the next replies are the right ones.
        assert client.get("small") == b"z"
        assert client.get("fits") == b"y" * small_bound  # the bound itself is allowed
        # Many strings under the bound make a reply past it: each string counts, not the reply.
        assert client.mget(["fits"] * 6) == [b"y" * small_bound] * 6
    finally:
        client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", PARSERS, ids=parser_id)
async def test_async_parsers_stop_at_the_bound_and_the_client_goes_on(
    kind: tuple[bool, int], small_bound: int, redis_server: RedisProcess
) -> None:
    hiredis, protocol = planted(kind, small_bound, redis_server)
    client = redis.asyncio.Redis.from_url(
        redis_server.url, protocol=protocol, parser_class=abounded_parser(protocol, hiredis=hiredis)
    )
    try:
        tracemalloc.start()
        with pytest.raises(OversizedReply):
            await client.get("bomb")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * MiB
        assert await client.get("small") == b"z"
        assert await client.mget(["fits"] * 6) == [b"y" * small_bound] * 6
    finally:
        await client.aclose()


def test_what_a_string_past_the_bound_reads_as_is_nothing_the_tiers_take_for_theirs() -> None:
    genuine = b"\xa7\xce\x01\x00" + bytes(8) + b"TOKEN-12" + b"x" * 100
    marker = Oversized(genuine[:OVERSIZED_PREFIX], 300 * MiB)
    assert len(marker) < HEADER_SIZE and marker.size == 300 * MiB
    assert token_of(marker) == token_of(genuine)  # so a conditional write can still replace it
    assert generation_from(Oversized(b"1" * OVERSIZED_PREFIX, 300 * MiB)) is None  # no generation
    assert len(marker) != 8  # no tag token (they are 8 bytes)


# -- what the caches do with them (the process's own bound: the default 8 MiB and an envelope) ----

BIG = 12 * MiB
HUGE = 64 * MiB


@pytest.fixture(autouse=True)
def unguarded() -> Iterator[None]:
    """Each test finds its endpoint unguarded: an earlier one's planted key armed it for a minute."""
    for endpoint in live_endpoints():
        endpoint.guard.until = 0.0
    yield
    for endpoint in live_endpoints():
        endpoint.guard.until = 0.0


@pytest.fixture
def watched(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        yield caplog


def counted(name: str) -> tuple[Any, list[str]]:
    """Return an L2-only function, and the list of the users it ran for."""
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, name=name)
    def lookup(user: str) -> str:
        runs.append(user)
        return f"role of {user}"

    return lookup, runs


def no_breaker(function: Any) -> None:
    stats = function.cache_stats()
    assert not stats.degraded and stats.l2_errors == 0


def test_a_planted_value_past_the_bound_is_a_miss_then_replaced(
    real_l2: str, redis_server: RedisProcess, watched: pytest.LogCaptureFixture
) -> None:
    assert BOUND.bytes < BIG
    # (under tracemalloc, on a loaded machine, the default timeout can open the breaker: not the point)
    tiercache.configure(redis_url=redis_server.url, timeout=5.0, connect_timeout=5.0)
    lookup, runs = counted("oversized.value")

    lookup("warm")
    client = redis_server.client()
    client.set(lookup.cache_key("ann"), b"\xa7" * HUGE)
    answer, peak = traced_peak(lambda: lookup("ann"))
    assert answer == "role of ann" and runs == ["warm", "ann"]
    assert peak < HUGE // 2  # read up to the bound (8 MiB), not whole (64 MiB)
    assert len(client.get(lookup.cache_key("ann")) or b"") < 1000  # replaced by ours
    assert lookup("ann") == "role of ann" and runs == ["warm", "ann"]  # an L2 hit now
    no_breaker(lookup)
    assert lookup.cache_stats().l2_rejected == 1
    assert any(f"{HUGE} bytes, over max_value_bytes" in r.getMessage() for r in watched.records)


def test_a_genuine_value_past_the_bound_keeps_its_token_and_is_replaced(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """A value of ours too large for this process (written by one with a larger max_value_bytes,
    or planted back with a real token): the conditional write compares its real token."""

    @tiered_cache(ttl_l1=None, name="oversized.token")
    def lookup(user: str) -> str:
        return f"role of {user}"

    lookup("ann")
    client = redis_server.client()
    key = lookup.cache_key("ann")
    ours = client.get(key) or b""
    client.set(key, ours + b"\x00" * BIG)  # (its token is the one Redis's conditional write reads)
    time.sleep(LINGER * 2)  # (else the call joins the first one's flight, lingering without an L1)
    assert lookup("ann") == "role of ann"
    assert len(client.get(key) or b"") < 1000
    no_breaker(lookup)


@pytest.mark.asyncio
async def test_async_callers_read_past_a_planted_value_as_a_miss(
    real_l2: str, redis_server: RedisProcess
) -> None:
    # (as its sync twin: under tracemalloc, on a loaded machine, the default timeout can open the
    # breaker, and a call then runs without reading: not the point)
    tiercache.configure(redis_url=redis_server.url, timeout=5.0, connect_timeout=5.0)
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, name="oversized.async")
    async def lookup(user: str) -> str:
        runs.append(user)
        return f"role of {user}"

    await lookup("warm")
    client = redis_server.client()
    for name in ("ann", "bob", "cy"):
        client.set(lookup.cache_key(name), b"\xa7" * BIG)
    # Concurrent reads share one MGET (see AsyncStore): the whole batch is read again, bounded.
    assert await asyncio.gather(*(lookup(n) for n in ("ann", "bob", "cy", "warm"))) == [
        "role of ann",
        "role of bob",
        "role of cy",
        "role of warm",
    ]
    assert sorted(runs) == ["ann", "bob", "cy", "warm"]
    assert all(len(client.get(lookup.cache_key(n)) or b"") < 1000 for n in ("ann", "bob", "cy"))
    # Found one: the endpoint's reads ask lengths first for a while (see oversized.Guard).
    assert lookup.__tiercache__.endpoint().guard.until
    client.set(lookup.cache_key("dan"), b"\xa7" * BIG)
    assert await lookup("dan") == "role of dan" and await lookup("dan") == "role of dan"
    assert runs.count("dan") == 1 and client.strlen(lookup.cache_key("dan")) < 1000
    no_breaker(lookup)


def test_a_planted_generation_past_the_bound_is_rewritten(real_l2: str, redis_server: RedisProcess) -> None:
    lookup, runs = counted("oversized.generation")

    lookup("warm")
    lookup.cache_clear()  # (the generation key exists from here on)
    generation_key = lookup.__tiercache__.generation_key
    client = redis_server.client()
    client.set(generation_key, b"7" * BIG)
    lookup.__tiercache__.remote.forget_generation()  # (a process that starts now reads it at once)
    assert lookup("ann") == "role of ann"
    assert lookup("bob") == "role of bob"
    held = client.get(generation_key) or b""
    assert len(held) < 21 and held.isdigit()  # rewritten
    assert lookup("ann") == "role of ann" and runs.count("ann") == 1  # values reach L2 again
    no_breaker(lookup)
    assert lookup.cache_stats().l2_corrupt >= 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_planted_tag_token_past_the_bound_is_reclaimed(
    mode: str, real_l2: str, redis_server: RedisProcess
) -> None:
    # (under tracemalloc, on a loaded machine, the default timeout can open the breaker: not the point)
    tiercache.configure(redis_url=redis_server.url, timeout=5.0, connect_timeout=5.0)
    runs: list[str] = []

    def body(user: str) -> str:
        runs.append(user)
        return f"profile of {user}"

    if mode == "sync":
        profile: Any = tiered_cache(ttl_l1=None, name="oversized.tags", tags=lambda user: [f"user:{user}"])(
            body
        )
        call = profile
    else:

        async def abody(user: str) -> str:
            return body(user)

        profile = tiered_cache(ttl_l1=None, name="oversized.atags", tags=lambda user: [f"user:{user}"])(abody)

        def call(user: str) -> str:
            return asyncio.run(profile(user))

    profile.cache_key("x")  # (resolves the function's settings)
    key = tag_key(profile.__tiercache__.namespace, digest_of("user:ann"))
    client = redis_server.client()
    client.set(key, b"t" * HUGE)
    answer, peak = traced_peak(lambda: call("ann"))
    assert answer == call("ann") == "profile of ann"
    assert peak < HUGE // 2  # read up to the bound, and replaced without being copied back
    assert runs == ["ann"]  # the second call was an L2 hit: the entry reached Redis
    assert len(client.get(key) or b"") == 8  # a token again
    stats = profile.cache_stats()
    assert stats.l2_corrupt == 1 and stats.l2_errors == 0 and not stats.degraded
    tiercache.close()


def test_the_adapter_reads_a_planted_value_past_the_bound_as_a_miss(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    settings = MultiTierCacheSettings(l2_url=real_l2, namespace=isolated_settings, l1_enabled=False)
    cache = MultiTierCache(settings)
    cache.set("session", {"user": "ann"})
    client = redis_server.client()
    keys = [k for k in client.scan_iter(f"{isolated_settings}*") if b"gen" not in k]
    assert keys
    for key in keys:
        client.set(key, b"\xa7" * BIG)
    assert cache.get("session") is None
    cache.set("session", {"user": "bob"})
    assert cache.get("session") == {"user": "bob"}
    metrics = cache.get_metrics()
    assert not metrics["degraded"] and metrics["l2_errors"] == 0
    cache.close()


def test_the_bound_grows_with_the_largest_max_value_bytes(
    real_l2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = BOUND.bytes
    monkeypatch.setattr(BOUND, "bytes", before)  # (put back after: the other tests plant past 8 MiB)

    @tiered_cache(max_value_bytes=before * 2, name="oversized.larger")
    def blob() -> bytes:
        return b""

    blob()
    assert BOUND.bytes >= before * 2 and oversized.FLOOR <= before


# -- strings too long for Redis to send before the timeout ------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path).start()
    yield server
    tiercache.close()
    server.stop()


def test_a_read_that_timed_out_has_its_keys_asked_their_length(own_server: RedisProcess) -> None:
    """Redis copies a whole string into its output buffer before sending a byte of it: reads of a
    256 MB key time out, and the parser never sees its length. The keys of a read that timed out
    are asked their length in the background (READ_BOUNDED copies nothing); one past the bound
    guards the endpoint's reads, which then repair it."""
    tiercache.configure(redis_url=own_server.url)
    lookup, runs = counted("oversized.suspect")
    lookup("warm")
    endpoint = lookup.__tiercache__.endpoint()
    client = own_server.client()
    key = lookup.cache_key("ann")
    assert BOUND.bytes < BIG
    client.setrange(key, BIG - 1, b"x")  # (made in Redis: nothing this size crosses the wire)
    own_server.pause()  # the read times out, as one of a 256 MB string does
    try:
        assert lookup("ann") == "role of ann"
    finally:
        own_server.resume()
    deadline = time.monotonic() + 5
    while not endpoint.guard.until and time.monotonic() < deadline:
        time.sleep(0.02)
    assert endpoint.guard.until  # the background ask found it
    while client.strlen(key) > 1000 and time.monotonic() < deadline:
        assert lookup("ann") == "role of ann"  # (the breaker the timeout opened may still be open)
        time.sleep(0.05)
    assert client.strlen(key) < 1000  # repaired by a guarded read's miss
    ran = len(runs)
    assert lookup("ann") == "role of ann" and len(runs) == ran  # an L2 hit now


def test_strings_too_long_to_send_in_time_are_repaired_all_the_same(own_server: RedisProcess) -> None:
    """256 MiB under four value keys and the generation key, read by four threads at once: every
    read times out at first (before: for good, the breaker opening and closing, nothing
    repaired); within a few rounds every key holds what the cache wrote."""
    tiercache.configure(redis_url=own_server.url)
    lookup, _ = counted("oversized.giant")
    lookup(-1)
    lookup.cache_clear()
    client = own_server.client()
    generation_key = lookup.__tiercache__.generation_key
    for key in [lookup.cache_key(n) for n in range(4)] + [generation_key]:
        client.setrange(key, (256 << 20) - 1, b"7")
    lookup.__tiercache__.remote.forget_generation()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers: list[Any] = [None] * 4

        def call(n: int) -> None:
            answers[n] = lookup(n)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == ["role of 0", "role of 1", "role of 2", "role of 3"]
        sizes = [client.strlen(lookup.cache_key(n)) for n in range(4)] + [client.strlen(generation_key)]
        if max(sizes) < 1000:
            break
        time.sleep(0.2)
    assert max(sizes) < 1000, sizes


@pytest.mark.parametrize("asked", ["", "?protocol=2", "?protocol=3"])
def test_the_bounded_parser_speaks_the_protocol_of_its_connection(
    asked: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    """redis-py swaps in a RESP3 parser only for its own RESP2 one: ours is chosen by the
    protocol the connection speaks (the URL's, else redis-py's default: 3 from redis-py 8)."""
    from redis._parsers import _AsyncRESP3Parser, _RESP3Parser  # noqa: PLC0415

    from tiercache._l2.deployments import endpoint_for_url  # noqa: PLC0415

    endpoint = endpoint_for_url(f"{redis_server.url}{asked}", timeout=1.0, connect_timeout=1.0)
    try:
        client = endpoint.store().client
        assert client.set("protocol-check", b"x") and client.get("protocol-check") == b"x"
        connection = client.connection_pool.get_connection()
        try:
            speaks = int(connection.protocol or 2)
            if not HIREDIS_AVAILABLE:
                assert isinstance(connection._parser, _RESP3Parser) == (speaks == 3)
            assert type(connection._parser).__module__ == "tiercache._l2.replies"
        finally:
            client.connection_pool.release(connection)

        async def async_check() -> None:
            store = endpoint.astore()
            assert await store.client.get("protocol-check") == b"x"
            connection = await store.client.connection_pool.get_connection()
            try:
                if not HIREDIS_AVAILABLE:
                    assert isinstance(connection._parser, _AsyncRESP3Parser) == (speaks == 3)
                assert type(connection._parser).__module__ == "tiercache._l2.replies"
            finally:
                await store.client.connection_pool.release(connection)

        asyncio.run(async_check())
    finally:
        endpoint.close()


def test_a_length_ask_leaves_no_store_behind_and_never_reopens_a_closed_endpoint(
    redis_server: RedisProcess,
) -> None:
    """The ask runs on a client of its own, closed after: it made a sync store (a pool, kept
    open) in processes that only await, and reopened an endpoint closed meanwhile (a listener
    and a prober running on after tiercache.close())."""
    from tiercache._l2.deployments import endpoint_for_url  # noqa: PLC0415

    client = redis_server.client()
    client.setrange("asked", BIG - 1, b"x")
    endpoint = endpoint_for_url(redis_server.url, timeout=1.0, connect_timeout=1.0)
    try:
        endpoint.checks.suspect(["asked"])
        deadline = time.monotonic() + 5
        while endpoint.checks.asking and time.monotonic() < deadline:
            time.sleep(0.01)
        assert endpoint.guard.until and endpoint.stores.sync_store is None  # found, with no store made
        endpoint.guard.until = 0.0
        endpoint.close()
        endpoint.checks._suspected_at = -10.0
        endpoint.checks.suspect(["asked"])
        while endpoint.checks.asking and time.monotonic() < deadline:
            time.sleep(0.01)
        assert endpoint.closed and endpoint.stores.sync_store is None and not endpoint.guard.until
    finally:
        endpoint.close()
        client.delete("asked")
