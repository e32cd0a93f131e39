"""The invalidation guarantee: once ``cache_invalidate()`` / ``cache_clear()`` returns, no call made
after it gets the old value, in this process (any thread or task) or, through L2, in any other.

Each scenario an outside review reproduced is here, sync and async, against the suite's real
redis-server; the concurrent ones as bounded stress loops that count stale results.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import tiercache
from tests.support.delay_proxy import DelayProxy
from tests.support.races import race_worker as start_race_worker
from tests.support.races import stale_samples
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._tools.redis_process import RedisProcess

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"invalidation.{prefix}.{next(_names)}"


@pytest.fixture(params=["l1", "l1+l2"])
def tiers(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "l1":
        return {"ttl_l1": 600, "ttl_l2": None}
    request.getfixturevalue("real_l2")
    return {"ttl_l1": 600, "ttl_l2": 600}


# -- 1. a call made after the invalidate never joins a run that began before it ----------------


def tagged_if(how: str) -> dict[str, Any]:
    """``tags=`` for the tag invalidation (``how == "tags"``); no tags for the others."""
    return {"tags": lambda key: [f"item:{key}"]} if how == "tags" else {}


@pytest.mark.parametrize("how", ["invalidate", "clear", "tags"])
def test_a_call_after_invalidate_starts_its_own_run_sync(tiers: dict[str, Any], how: str) -> None:
    """The 200 ms run that read v1 finishes after the invalidate: later calls get v2, and keep it."""
    db = {"x": "v1"}
    body_started = threading.Event()

    @tiered_cache(name=unique("join"), **tiers, **tagged_if(how))
    def f(key: str) -> str:
        value = db[key]
        body_started.set()
        time.sleep(0.2)
        return value

    early: list[str] = []
    thread = threading.Thread(target=lambda: early.append(f("x")))
    thread.start()
    assert body_started.wait(5)
    time.sleep(0.05)
    db["x"] = "v2"
    if how == "invalidate":
        f.cache_invalidate("x")
    elif how == "clear":
        f.cache_clear()
    else:
        tiercache.invalidate_tags("item:x")
    assert f("x") == "v2"
    thread.join()
    assert early == ["v1"]  # it started before the invalidate: the old value is its to keep
    assert f("x") == "v2"  # but the old run stored nothing, in L1 or L2
    fresh = tiered_cache(name=f.cache_parameters()["name"], **tiers, **tagged_if(how))(
        lambda key: "recomputed"
    )
    assert fresh("x") in ("v2", "recomputed")


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["invalidate", "clear", "tags"])
async def test_a_call_after_invalidate_starts_its_own_run_async(tiers: dict[str, Any], how: str) -> None:
    """The async twin: a task awaiting a 200 ms run does not hand its v1 to calls made later."""
    db = {"x": "v1"}
    body_started = asyncio.Event()

    @tiered_cache(name=unique("ajoin"), **tiers, **tagged_if(how))
    async def f(key: str) -> str:
        value = db[key]
        body_started.set()
        await asyncio.sleep(0.2)
        return value

    early = asyncio.ensure_future(f("x"))
    await asyncio.wait_for(body_started.wait(), 5)
    await asyncio.sleep(0.05)
    db["x"] = "v2"
    if how == "invalidate":
        await f.cache_invalidate("x")
    elif how == "clear":
        await f.cache_clear()
    else:
        await tiercache.ainvalidate_tags("item:x")
    assert await f("x") == "v2"
    assert await early == "v1"
    assert await f("x") == "v2"


# -- 2. concurrent L1 hits never resurrect an invalidated entry --------------------------------


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads every 0.1 ms, not 5: more interleavings per trial, and quick stops."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


def _resurrection_trial(tiers: dict[str, Any], how: str, duration: float) -> bool:
    """Hit f(1) from 4 threads while another changes the truth and invalidates; return if stale."""
    db = {"v": 0}

    @tiered_cache(name=unique("hits"), **tiers)
    def f(key: int) -> int:
        return db["v"]

    stop = threading.Event()

    def hit() -> None:
        while not stop.is_set():
            f(1)

    hitters = [threading.Thread(target=hit) for _ in range(4)]
    for thread in hitters:
        thread.start()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        db["v"] += 1
        f.cache_invalidate(1) if how == "invalidate" else f.cache_clear()
    stop.set()
    for thread in hitters:
        thread.join()
    return f(1) != db["v"]


@pytest.mark.parametrize("how", ["invalidate", "clear"])
@pytest.mark.usefixtures("fine_switching")
def test_concurrent_l1_hits_never_resurrect_an_invalidated_entry(tiers: dict[str, Any], how: str) -> None:
    """100 trials of 4 hitting threads against an invalidating one: the last value is always current."""
    stale = sum(_resurrection_trial(tiers, how, duration=0.03) for _ in range(100))
    assert stale == 0, f"{stale} of 100 trials ended on an invalidated value"


@pytest.mark.usefixtures("fine_switching")
def test_concurrent_async_l1_hits_never_resurrect_an_invalidated_entry(tiers: dict[str, Any]) -> None:
    """Event loops on 4 threads hit the async twin while a fifth loop invalidates it."""
    stale = 0
    for _ in range(100):
        db = {"v": 0}

        @tiered_cache(name=unique("ahits"), **tiers)
        async def f(key: int) -> int:
            return db["v"]

        stop = threading.Event()

        async def hit() -> None:
            while not stop.is_set():
                await f(1)

        async def invalidate() -> None:
            deadline = time.monotonic() + 0.03
            while time.monotonic() < deadline:
                db["v"] += 1
                await f.cache_invalidate(1)

        hitters = [threading.Thread(target=asyncio.run, args=(hit(),)) for _ in range(4)]
        for thread in hitters:
            thread.start()
        asyncio.run(invalidate())
        stop.set()
        for thread in hitters:
            thread.join()
        stale += asyncio.run(f(1)) != db["v"]
    assert stale == 0, f"{stale} of 100 trials ended on an invalidated value"


# -- 3. an invalidation in another process is not undone by a write already on its way ----------


@pytest.fixture
def race_worker(redis_server: RedisProcess, isolated_settings: str) -> Iterator[subprocess.Popen[str]]:
    """Process A, talking to Redis through a proxy that delays what it sends by 30 ms."""
    with start_race_worker(redis_server, isolated_settings) as worker:
        yield worker


@pytest.mark.parametrize("command", ["compute", "acompute"], ids=["sync", "async"])
def test_a_write_already_on_its_way_cannot_undo_another_processes_invalidate(
    race_worker: subprocess.Popen[str],
    redis_server: RedisProcess,
    real_l2: str,
    isolated_settings: str,
    command: str,
) -> None:
    """A computes from v1; B sets v2 and invalidates as A's body returns; A's write lands 30 ms late."""
    b_side = tiered_cache(ttl_l1=600, ttl_l2=600, name="race.lookup")(lambda key: "unused")
    stale = stale_samples(
        race_worker,
        redis_server,
        isolated_settings,
        command,
        b_side.cache_invalidate,
        lambda: tiered_cache(ttl_l1=None, ttl_l2=600, name="race.lookup")(lambda key: "recomputed"),
    )
    assert stale == [], f"{len(stale)} of 20 samples left v1 in Redis after the invalidate"


def test_the_race_without_added_latency(real_l2: str) -> None:
    """The same race between two caches of one function, 200 times, with no delay: never stale."""
    name = unique("nodelay")
    truth = {"v": 0}
    returned = threading.Event()

    def body(key: str) -> int:
        value = truth["v"]
        returned.set()
        return value

    a_side = tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(body)
    b_side = tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(lambda key: truth["v"])
    reader = tiered_cache(ttl_l1=None, ttl_l2=600, name=name)(lambda key: "recomputed")
    stale = 0
    for sample in range(200):
        key = f"k{sample}"
        returned.clear()
        thread = threading.Thread(target=a_side, args=(key,))
        thread.start()
        assert returned.wait(5)
        truth["v"] += 1
        b_side.cache_invalidate(key)
        thread.join()
        stale += reader(key) not in (truth["v"], "recomputed")
    assert stale == 0, f"{stale} of 200 samples left an invalidated value in Redis"


def test_the_proxy_delays_commands(redis_server: RedisProcess) -> None:
    """The delay proxy does hold commands back (else the race tests would prove nothing)."""
    with DelayProxy(redis_server.port, to_server=0.05) as proxy:
        client = redis.Redis(port=proxy.port, socket_timeout=2)
        client.ping()
        started = time.monotonic()
        client.set(f"proxy-{uuid.uuid4().hex}", "x")
        assert time.monotonic() - started >= 0.05
        client.close()


# -- the adapter keeps the same promise ---------------------------------------------------------


@pytest.mark.parametrize("tiers_on", ["l1", "l1+l2"])
@pytest.mark.usefixtures("fine_switching")
def test_concurrent_adapter_gets_never_resurrect_a_deleted_key(
    tiers_on: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    """4 threads get() while another sets and deletes: once delete() returns, get() is None."""
    settings = MultiTierCacheSettings(
        l2_enabled=tiers_on == "l1+l2", l2_url=redis_server.url, namespace=f"{isolated_settings}-adapter"
    )
    stale = 0
    with MultiTierCache(settings) as cache:
        for trial in range(100):
            key = f"k{trial}"
            stop = threading.Event()

            def get(key: str = key, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    cache.get(key)

            getters = [threading.Thread(target=get) for _ in range(4)]
            for thread in getters:
                thread.start()
            deadline = time.monotonic() + 0.03
            version = 0
            while time.monotonic() < deadline:
                version += 1
                cache.set(key, version)
                cache.delete(key)
            stop.set()
            for thread in getters:
                thread.join()
            stale += cache.get(key) is not None
    assert stale == 0, f"{stale} of 100 trials found a deleted key again"


def test_a_clear_waiting_for_redis_is_replayed_before_any_read_even_if_redis_returns_meanwhile(
    fake_l2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced: the breaker refuses the replay of a deferred clear, then closes (its probe found Redis
    back) before the same call's read. The read must not go ahead with the clear still pending:
    Redis still holds the old generation's values."""
    db = {"v": 1}

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=unique("deferred"))
    def f(key: int) -> int:
        return db["v"]

    assert f(1) == 1  # in L1 and L2
    breaker = f.__tiercache__.endpoint().breaker
    fake_l2.connected = False
    db["v"] = 2
    f.cache_clear()  # cannot reach Redis: L1 dropped, the clear waits for Redis
    assert len(f.__tiercache__.owed) == 1
    fake_l2.connected = True
    allow = breaker.allow

    def refuses_once_then_closes() -> bool:
        monkeypatch.setattr(breaker, "allow", allow)
        breaker.success()  # (as the probe thread would, a moment after this answer)
        return False

    monkeypatch.setattr(breaker, "allow", refuses_once_then_closes)
    assert f(1) == 2
    assert f(2) == 2 and len(f.__tiercache__.owed) == 0  # (the next read replayed the clear)
    f.__tiercache__.local.clear()
    assert f(1) == 2  # and Redis no longer answers with the old generation's value


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("action", ["invalidate", "clear"])
def test_an_invalidation_redis_missed_reaches_it_once_back_with_no_further_call(
    mode: str, action: str, tmp_path: Any
) -> None:
    """Redis stalls under the invalidation (it times out, and is remembered); once Redis answers
    again it is replayed in the background: the process that made it may never call again, and
    until the replay every other process reads the old value from Redis."""
    server = RedisProcess(tmp_path).start()
    try:
        tiercache.configure(redis_url=server.url)
        db = {"v": 1}
        name = unique("missed")
        if mode == "sync":
            f: Any = tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(lambda key: db["v"])
            call, act = f, (f.cache_invalidate if action == "invalidate" else lambda _key: f.cache_clear())
        else:

            async def body(key: int) -> int:
                return db["v"]

            f = tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(body)

            def call(key: int) -> int:
                return asyncio.run(f(key))  # type: ignore[no-any-return]

            def act(key: int) -> None:
                asyncio.run(f.cache_invalidate(key) if action == "invalidate" else f.cache_clear())

        assert call(1) == 1
        assert server.client().get(f.cache_key(1)) is not None  # the old value, in Redis
        server.pause()
        try:
            db["v"] = 2
            act(1)  # times out: nothing raised, the invalidation remembered
            assert f.cache_stats().pending_invalidations == 1
        finally:
            server.resume()
        deadline = time.monotonic() + 5
        while f.cache_stats().pending_invalidations:  # (and no call of f meanwhile)
            assert time.monotonic() < deadline, "never replayed without a call"
            time.sleep(0.01)
        # Another process, which never held the value: it reads Redis, which no longer has it.
        other: Any = tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(lambda key: db["v"])
        assert other(1) == 2
    finally:
        server.stop()


@pytest.mark.parametrize("action", ["delete", "clear"])
def test_an_adapter_delete_redis_missed_reaches_it_once_back_with_no_further_call(
    action: str, tmp_path: Any
) -> None:
    """As for functions: Django's cache.delete() during a stall is in Redis once it answers."""
    server = RedisProcess(tmp_path).start()
    try:
        namespace = unique("missed-adapter")
        writer = MultiTierCache(MultiTierCacheSettings(l2_url=server.url, namespace=namespace))
        writer.set("k", "old")
        server.pause()
        try:
            writer.delete("k") if action == "delete" else writer.clear()  # times out: remembered
            assert writer.get_metrics()["pending_invalidations"] == 1
        finally:
            server.resume()
        deadline = time.monotonic() + 5
        while writer.get_metrics()["pending_invalidations"]:  # (no call of the writer meanwhile)
            assert time.monotonic() < deadline, "never replayed without a call"
            time.sleep(0.01)
        reader = MultiTierCache(MultiTierCacheSettings(l2_url=server.url, namespace=namespace))
        assert reader.get("k") is None
        writer.close()
        reader.close()
    finally:
        server.stop()


def test_a_replay_forgets_only_the_invalidations_it_covered(fake_l2: Any) -> None:
    """Two replays of the same deferred invalidations may overlap (a caller's, the background's),
    and a key or a clear may be deferred again while one is under way: neither is lost."""

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=unique("numbered"))
    def f(key: int) -> int:
        return key

    cache = f.__tiercache__  # (deferrals noted and replays marked by hand: no Redis is owed)
    cache.owed.defer(keys=("k1", "k2"))
    first = cache.owed.pending()
    second = cache.owed.pending()  # (a second replayer's copy of the same)
    cache.owed.defer(keys=("k2",))  # deferred again while the replays are under way
    cache.owed.repaired(keys=first.keys, upto=first.mark)
    cache.owed.repaired(keys=second.keys, upto=second.mark)
    assert cache.owed.pending()[:3] == (0, False, ("k2",))
    cache.owed.defer(clear=True)
    third = cache.owed.pending()
    cache.owed.defer(clear=True)  # a clear after the replay looked
    cache.owed.repaired(clears=third.clears, upto=third.mark)
    cache.owed.repaired(clears=third.clears, upto=third.mark)  # (the same replay, twice)
    assert cache.owed.pending().clears == 1
    last = cache.owed.pending()
    cache.owed.repaired(clears=last.clears, keys=last.keys, upto=last.mark)
    assert cache.owed.pending()[:3] == (0, False, ()) and not cache.owed.any


# -- 5. a clear is final for every other process's Redis read -----------------------------------


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_process_that_has_not_heard_of_a_clear_never_reads_the_old_value_from_redis(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """The reader read the generation a moment ago and hears no announcement (delayed, or lost)."""
    request.getfixturevalue(l2)
    db = {"k": "v1"}
    name = unique("clear-unheard")
    clearer = tiered_cache(name=name, ttl_l1=None)(lambda key: db[key])
    reader = tiered_cache(name=name, ttl_l1=None, coherent=False)(lambda key: db[key])
    assert clearer("k") == "v1" and reader("k") == "v1"
    assert reader.cache_stats().l2_hits == 1  # read from Redis, with its generation
    db["k"] = "v2"
    clearer.cache_clear()
    assert reader("k") == "v2"


def test_an_adapter_that_has_not_heard_of_a_clear_never_reads_the_old_value_from_redis(real_l2: str) -> None:
    """As above, for the adapters' clear(): the reader keeps nothing in L1, so it reads Redis."""
    namespace = unique("adapter-clear")
    clearer = MultiTierCache(MultiTierCacheSettings(l2_url=real_l2, namespace=namespace))
    reader = MultiTierCache(
        MultiTierCacheSettings(
            l2_url=real_l2, namespace=namespace, coherent=False, write_back_l1_on_l2_hit=False
        )
    )
    clearer.set("k", "v1")
    assert reader.get("k") == "v1"
    clearer.clear()
    assert reader.get("k") is None
