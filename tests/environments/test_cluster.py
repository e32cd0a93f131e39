"""L2 on a real 3-primary Redis Cluster: the decorator, the adapter, coherence, and a primary killed."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster

import tiercache
from tiercache import (
    MultiTierCache,
    MultiTierCacheAdapter,
    MultiTierCacheSettings,
    tiered_cache,
    tiered_cache_many,
)
from tiercache._decorator.tag_names import digest_of, tag_key
from tiercache._tools import cli as _cli
from tiercache._tools.redis_process import RedisClusterProcesses

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    nodes = RedisClusterProcesses(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield nodes
    nodes.stop()


@pytest.fixture
def on_cluster(cluster: RedisClusterProcesses) -> str:
    tiercache.configure(redis_url=cluster.url, timeout=0.5, connect_timeout=0.5)
    return cluster.url


def counted(**options: Any) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @tiered_cache(ttl_l1=None, name="cluster.square", **options)
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    return square, runs


def test_decorator_spreads_keys_over_primaries_and_reads_them_back(
    on_cluster: str, cluster: RedisClusterProcesses
) -> None:
    square, runs = counted()
    assert [square(n) for n in range(30)] == [n * n for n in range(30)]
    assert [square(n) for n in range(30)] == [n * n for n in range(30)]
    assert len(runs) == 30 and square.cache_stats().l2_hits == 30
    holders = {cluster.primary_of(square.cache_key(n)).port for n in range(30)}
    assert len(holders) == 3  # the keys really are spread: reads crossed slots
    square.cache_invalidate(3)
    square(3)
    square.cache_clear()  # a new generation, on whichever primary holds its key
    square(4)
    assert runs[-2:] == [3, 4] and square.cache_stats().l2_errors == 0


def test_async_reads_coalesce_across_slots(on_cluster: str) -> None:
    @tiered_cache(ttl_l1=None, name="cluster.double")
    async def double(n: int) -> int:
        return 2 * n

    async def scenario() -> list[int]:
        await asyncio.gather(*(double(n) for n in range(50)))
        return await asyncio.gather(*(double(n) for n in range(50)))

    assert asyncio.run(scenario()) == [2 * n for n in range(50)]
    stats = double.cache_stats()
    assert stats.l2_hits == 50 and stats.l2_errors == 0


def test_invalidation_reaches_other_l1s_across_the_cluster(on_cluster: str) -> None:
    source = {"a": 1}

    def make() -> Any:
        @tiered_cache(ttl_l1=3600, name="cluster.lookup")
        def lookup(key: str) -> int:
            return source[key]

        return lookup

    one, other = make(), make()
    assert one("a") == other("a") == 1
    source["a"] = 2
    one.cache_invalidate("a")
    deadline = time.monotonic() + 2
    while other("a") != 2:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_clients_passed_to_configure(cluster: RedisClusterProcesses) -> None:
    port = cluster.nodes[1].port
    sync_client = redis.cluster.RedisCluster(host="127.0.0.1", port=port)
    tiercache.configure(
        redis_client=sync_client,
        async_redis_client=lambda: redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port),
    )
    square, _ = counted()

    @tiered_cache(ttl_l1=None, name="cluster.triple")
    async def triple(n: int) -> int:
        return 3 * n

    async def twice() -> list[int]:
        await asyncio.gather(*(triple(n) for n in range(20)))
        return await asyncio.gather(*(triple(n) for n in range(20)))

    assert [square(n) for n in range(20)] == [square(n) for n in range(20)]
    assert asyncio.run(twice()) == [3 * n for n in range(20)]
    assert square.cache_stats().l2_hits == 20 and triple.cache_stats().l2_hits == 20
    sync_client.close()


@pytest.mark.parametrize("kind", [MultiTierCache, MultiTierCacheAdapter])
def test_adapter_batches_cross_slots(cluster: RedisClusterProcesses, kind: type) -> None:
    # A loaded CI machine can take longer than the adapter's 0.1 s default to answer a cluster's first
    # commands; this test is about slots, not timeouts.
    settings = MultiTierCacheSettings(
        l2_url=cluster.url,
        namespace=f"cl-{kind.__name__}",
        l1_enabled=False,
        l2_timeout=2,
        l2_connect_timeout=2,
    )

    async def run(call: Any) -> Any:
        return await call if asyncio.iscoroutine(call) else call

    async def scenario() -> None:
        writer, reader = kind(settings), kind(settings)
        items = {f"k{i}": i for i in range(40)}
        await run(writer.set_many(items))
        assert await run(reader.get_many(list(items))) == items
        for key in ("k1", "k2", "k30"):
            await run(writer.delete(key))
        assert set(await run(reader.get_many(list(items)))) == set(items) - {"k1", "k2", "k30"}
        await run(writer.clear())
        # Another process learns of a clear from its announcement (or, at the latest, from its
        # next generation check, 0.5 s on): milliseconds here.
        deadline = time.monotonic() + 1
        while await run(reader.get_many(list(items))) != {}:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert (await run(reader.get_metrics()))["l2_errors"] == 0

    asyncio.run(scenario())


def test_a_killed_primary_degrades_and_recovers(on_cluster: str, cluster: RedisClusterProcesses) -> None:
    square, _ = counted()
    for n in range(30):
        square(n)
    victim = cluster.primary_of(square.cache_key(0))
    on_victim = [n for n in range(30) if cluster.primary_of(square.cache_key(n)) is victim]
    victim.kill()
    started = time.monotonic()
    assert [square(n) for n in range(30)] == [n * n for n in range(30)]  # every caller still served
    during = time.monotonic() - started
    stats = square.cache_stats()
    assert stats.l2_errors >= 1 and stats.errors == 0
    victim.restart()
    cluster.wait_ok()
    deadline = time.monotonic() + 10
    while True:  # the breaker closes, the cluster client finds the node again: L2 is used again
        before = square.cache_stats().l2_hits
        square(on_victim[0])
        square(on_victim[0])
        if square.cache_stats().l2_hits > before:
            break
        assert time.monotonic() < deadline, "L2 did not come back"
        time.sleep(0.1)
    recovered = time.monotonic() - started
    print(f"\nprimary killed: 30 calls took {during:.2f}s; L2 hits again {recovered:.2f}s after the kill")
    assert not square.cache_stats().degraded


def test_cli_stats_and_flush_scan_every_primary(
    on_cluster: str,
    cluster: RedisClusterProcesses,
    isolated_settings: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tiercache stats` and `flush` on redis+cluster:// see the keys of all three primaries."""
    square, _ = counted()
    for n in range(30):
        square(n)
    assert _cli.main(["stats", "--redis-url", cluster.url, "--namespace", isolated_settings, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["functions"]
    assert [(entry["function"], entry["keys"]) for entry in found] == [("cluster.square", 30)]
    assert _cli.main(["flush", "--redis-url", cluster.url, "--namespace", isolated_settings, "--yes"]) == 0
    assert "deleted 30 keys" in capsys.readouterr().out
    assert _cli.main(["stats", "--redis-url", cluster.url, "--namespace", isolated_settings, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["functions"] == []


def test_batch_reads_and_writes_group_by_slot(on_cluster: str, cluster: RedisClusterProcesses) -> None:
    """tiered_cache_many on a cluster: ids spread over every primary, one call each way."""
    asked: list[list[int]] = []

    @tiered_cache_many(ttl_l1=None, ttl_l2=600, name="cluster.load")
    def load(ids: list[int]) -> dict[int, int]:
        asked.append(list(ids))
        return {i: i * 3 for i in ids}

    ids = list(range(40))
    assert load(ids) == {i: i * 3 for i in ids}
    assert load(ids) == {i: i * 3 for i in ids}
    assert asked == [ids]
    stats = load.cache_stats()
    assert (stats.misses, stats.l2_hits, stats.l2_errors) == (40, 40, 0)
    holders = {cluster.primary_of(load.__tiercache__.keys.redis_key_for((n,))).port for n in ids}
    assert len(holders) == 3
    load.cache_invalidate([5, 6])
    assert load([5, 6, 7]) == {5: 15, 6: 18, 7: 21}
    assert asked[-1] == [5, 6]


def test_async_batch_on_a_cluster(on_cluster: str) -> None:
    asked: list[list[int]] = []

    @tiered_cache_many(ttl_l1=None, ttl_l2=600, name="cluster.aload")
    async def load(ids: list[int]) -> dict[int, int]:
        asked.append(list(ids))
        return {i: -i for i in ids}

    async def scenario() -> None:
        ids = list(range(30))
        assert await load(ids) == {i: -i for i in ids}
        await load.cache_invalidate([3, 4])  # tombstones: the rewrite goes through the script
        assert await load(ids) == {i: -i for i in ids}
        assert asked == [ids, [3, 4]]
        assert load.cache_stats().l2_errors == 0

    asyncio.run(scenario())


def test_tags_across_slots_sync_and_async(on_cluster: str, cluster: RedisClusterProcesses) -> None:
    """Entries and their tags' keys spread over the primaries: one read each, one SET per tag."""
    db = {n: n for n in range(20)}
    runs: list[int] = []

    def parity(n: int) -> list[str]:
        return ["even" if n % 2 == 0 else "odd", f"n:{n}"]

    @tiered_cache(ttl_l1=None, name="cluster.tagged", tags=parity)
    def value(n: int) -> int:
        runs.append(n)
        return db[n]

    @tiered_cache(ttl_l1=None, name="cluster.tagged", tags=parity)
    async def avalue(n: int) -> int:
        runs.append(n)
        return db[n]

    assert [value(n) for n in range(20)] == list(range(20))

    async def before() -> list[int]:
        return list(await asyncio.gather(*(avalue(n) for n in range(20))))

    assert asyncio.run(before()) == list(range(20))  # from L2: the sync calls wrote them
    assert len(runs) == 20
    ports = {cluster.primary_of(value.cache_key(n)).port for n in range(20)}
    assert len(ports) == 3
    for n in range(20):
        db[n] = -n
    tiercache.invalidate_tags("even")
    assert [value(n) for n in range(20)] == [-n if n % 2 == 0 else n for n in range(20)]

    async def after() -> list[int]:
        await tiercache.ainvalidate_tags("odd")
        return list(await asyncio.gather(*(avalue(n) for n in range(20))))

    assert asyncio.run(after()) == [-n for n in range(20)]
    assert len(runs) == 40


def test_a_cluster_that_fails_to_come_up_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that raises half-way stops every node it started."""
    cluster = RedisClusterProcesses(tmp_path / "cluster")

    def raising(timeout: float = 0.0) -> None:
        raise RuntimeError("the cluster did not become ok")

    monkeypatch.setattr(cluster, "wait_ok", raising)
    with pytest.raises(RuntimeError):
        cluster.start()
    assert all(node.process is not None and node.process.poll() is not None for node in cluster.nodes)


def test_a_cluster_missing_one_primary_serves_the_others(tmp_path: Path) -> None:
    """1 of 3 primaries gone (``cluster-require-full-coverage no``, as the docs advise): keys on the
    other two still hit L2, their invalidations are not deferred, and no process reads an
    invalidated value from them.

    Before: one breaker for the whole cluster, opened by the dead primary and kept open by a probe
    that wanted every primary: no L2 hit, every invalidation deferred, and another process read
    the old value from a live primary after the invalidation had returned.
    """
    cluster = RedisClusterProcesses(tmp_path / "cluster").start()
    try:
        tiercache.configure(redis_url=cluster.url, timeout=0.25, connect_timeout=0.25)
        square, _ = counted()
        generation_holder = cluster.primary_of(f"{square.cache_key(0).rsplit(':', 1)[0]}:gen")
        victim = next(node for node in cluster.nodes if node is not generation_holder)
        keys = range(60)
        for n in keys:
            square(n)
        live = [n for n in keys if cluster.primary_of(square.cache_key(n)) is not victim]
        dead = [n for n in keys if n not in live]
        assert live and dead
        victim.kill()
        assert [square(n) for n in dead] == [n * n for n in dead]  # every caller still served
        before = square.cache_stats().l2_hits
        deadline = time.monotonic() + 5
        while square.cache_stats().l2_hits - before < len(live):  # the live primaries answer again
            assert time.monotonic() < deadline, "no L2 hits from the live primaries"
            for n in live:
                square(n)
        assert not square.cache_stats().degraded  # the cluster is not down, one primary is
        square.cache_invalidate(live[0])
        assert square.cache_stats().pending_invalidations == 0  # it reached its (live) primary
        other_process = tiered_cache(ttl_l1=None, name="cluster.square")(lambda n: "computed")
        assert other_process(live[0]) == "computed"
        square.cache_invalidate(dead[0])  # kept for the dead primary's return...
        assert square.cache_stats().pending_invalidations == 1
        before = square.cache_stats().l2_hits
        square(live[1])
        assert square.cache_stats().l2_hits == before + 1  # ...and the other keys still use L2
    finally:
        cluster.stop()


def test_strings_planted_past_the_bound_are_refused_as_they_arrive(
    on_cluster: str, cluster: RedisClusterProcesses
) -> None:
    """As on one server (tests/behaviour/security/test_oversized_replies.py): redis-py's cluster
    clients take no parser, so theirs are given one; before, a 64 MiB value under a hot key was
    read whole on every call, and could time out and take every function off L2."""
    huge = 64 << 20
    square, runs = counted()

    @tiered_cache(ttl_l1=None, name="cluster.acube")
    async def acube(n: int) -> int:
        runs.append(-n)
        return n**3

    @tiered_cache(ttl_l1=None, name="cluster.tagged", tags=lambda n: [f"n:{n}"])
    def tagged(n: int) -> int:
        runs.append(100 + n)
        return n

    square(0), asyncio.run(acube(0)), tagged(0)  # (connected, settings resolved)
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    client.set(square.cache_key(7), b"\xa7" * huge)
    client.set(acube.cache_key(7), b"\xa7" * huge)
    client.set(tag_key(tagged.__tiercache__.namespace, digest_of("n:7")), b"t" * huge)
    tracemalloc.start()
    assert (square(7), asyncio.run(acube(7)), tagged(7)) == (49, 343, 7)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < huge // 2
    assert (square(7), asyncio.run(acube(7)), tagged(7)) == (49, 343, 7)  # L2 hits: replaced
    assert runs.count(7) == runs.count(-7) == runs.count(107) == 1
    for function in (square, acube, tagged):
        stats = function.cache_stats()
        assert stats.l2_errors == 0 and not stats.degraded
    client.close()
