"""@tiered_cache_many: one entry per id, one MGET, one run for the missing ids, one write pipeline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tests.support.tiers import L2S, TIERS, client_for, ttls
from tiercache import NOT_NONE, UnkeyableArgumentError, tiered_cache_many
from tiercache._core.shells import settle_background
from tiercache._decorator.batch import CHUNK
from tiercache._l2 import stores


class Counter:
    """Counts the L2 round trips the stores make, by operation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ops: list[str] = []
        for name in ("read", "read_many", "write", "write_many", "write_many_if_unchanged"):
            for store in (stores.SyncStore, stores.AsyncStore):
                original = getattr(store, name)
                monkeypatch.setattr(store, name, self._counting(name, original))

    def _counting(self, name: str, original: Any) -> Any:
        def counted(store: Any, *args: Any, **kwargs: Any) -> Any:
            self.ops.append(name)
            return original(store, *args, **kwargs)

        return counted

    def take(self) -> list[str]:
        seen, self.ops = self.ops, []
        return seen


@pytest.mark.parametrize("l2", TIERS)
def test_each_id_is_its_own_entry(l2: str, request: pytest.FixtureRequest) -> None:
    client_for(request, l2)
    asked: list[list[int]] = []

    @tiered_cache_many(name=f"users-{l2}", **ttls(l2))
    def load_users(ids: list[int], detail: str = "basic") -> dict[int, str]:
        asked.append(list(ids))
        return {i: f"user{i}/{detail}" for i in ids if i != 404}

    assert load_users([1, 2, 3]) == {1: "user1/basic", 2: "user2/basic", 3: "user3/basic"}
    assert load_users([3, 4, 404, 4]) == {3: "user3/basic", 4: "user4/basic"}
    assert asked == [[1, 2, 3], [4, 404]]  # only the missing ids, each once
    assert load_users([1], detail="full") == {1: "user1/full"}  # other arguments key each id too
    stats = load_users.cache_stats()
    assert (stats.calls, stats.misses, stats.l1_hits + stats.l2_hits) == (7, 6, 1)
    load_users.cache_invalidate([2, 3])
    assert load_users([1, 2, 3]) == {1: "user1/basic", 2: "user2/basic", 3: "user3/basic"}
    assert asked[-1] == [2, 3]


@pytest.mark.parametrize("l2", L2S)
@pytest.mark.parametrize("count", [1, 10, 100])
def test_one_read_and_one_write_pipeline_per_call(
    l2: str, count: int, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold: one MGET and one pipeline; warm in L2 (a fresh L1): one MGET; warm in L1: none."""
    client_for(request, l2)
    counter = Counter(monkeypatch)

    @tiered_cache_many(ttl_l1=60, ttl_l2=600, name=f"rt-{l2}-{count}")
    def load(ids: list[int]) -> dict[int, int]:
        return {i: i * 2 for i in ids}

    ids = list(range(count))
    assert load(ids) == {i: i * 2 for i in ids}
    assert counter.take() == ["read_many", "write_many_if_unchanged"]
    load.__tiercache__.local.clear()
    assert load(ids) == {i: i * 2 for i in ids}
    assert counter.take() == ["read_many"]
    assert load(ids) == {i: i * 2 for i in ids}
    assert counter.take() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_batches(l2: str, request: pytest.FixtureRequest) -> None:
    client_for(request, l2)
    asked: list[list[str]] = []

    @tiered_cache_many(name=f"async-batch-{l2}", cache_if=NOT_NONE, **ttls(l2))
    async def load(names: list[str]) -> dict[str, str | None]:
        asked.append(list(names))
        await asyncio.sleep(0)
        return {name: (None if name.startswith("ghost") else name.upper()) for name in names}

    assert await load(["a", "ghost1"]) == {"a": "A", "ghost1": None}
    assert await load(["a", "ghost1", "b"]) == {"a": "A", "ghost1": None, "b": "B"}
    assert asked == [["a", "ghost1"], ["ghost1", "b"]]  # cache_if kept the None out
    assert load.cache_stats().not_cached == 2
    await load.cache_invalidate(["a"])
    await load(["a"])
    assert asked[-1] == ["a"]


@pytest.mark.asyncio
@pytest.mark.parametrize("l2", TIERS)
async def test_async_batch_invalidation_and_clear_not_awaited_still_happen(
    l2: str, request: pytest.FixtureRequest
) -> None:
    client_for(request, l2)
    asked: list[list[str]] = []

    @tiered_cache_many(name=f"unawaited-{l2}", **ttls(l2))
    async def load(names: list[str]) -> dict[str, str]:
        asked.append(list(names))
        return {name: name.upper() for name in names}

    await load(["a", "b", "c"])
    load.cache_invalidate(["a", "b"])  # a forgotten await: was a no-op
    await settle_background(5)
    await load(["a", "b", "c"])
    assert asked[-1] == ["a", "b"]
    load.cache_clear()
    await settle_background(5)
    await load(["a", "b", "c"])
    assert asked[-1] == ["a", "b", "c"]


@pytest.mark.parametrize("l2", L2S)
def test_an_invalidation_during_the_run_keeps_that_id_out(l2: str, request: pytest.FixtureRequest) -> None:
    """Per id, the write is conditional on the token read: the invalidated id is refused."""
    client_for(request, l2)
    entered, release = threading.Event(), threading.Event()
    version = {"v": 1}

    @tiered_cache_many(ttl_l1=60, ttl_l2=600, name=f"race-batch-{l2}")
    def load(ids: list[str]) -> dict[str, str]:
        seen = dict(version)
        entered.set()
        assert release.wait(5)
        return {i: f"{i}@v{seen['v']}" for i in ids}

    result: list[dict[str, str]] = []
    caller = threading.Thread(target=lambda: result.append(load(["x", "y"])))
    caller.start()
    assert entered.wait(5)
    version["v"] = 2
    load.cache_invalidate(["x"])
    release.set()
    caller.join(5)
    assert result == [{"x": "x@v1", "y": "y@v1"}]
    entered.clear()
    release.set()
    assert load(["x", "y"]) == {"x": "x@v2", "y": "y@v1"}  # x recomputed, y kept
    load.__tiercache__.local.clear()
    assert load(["x", "y"]) == {"x": "x@v2", "y": "y@v1"}
    assert load.cache_stats().l2_writes_refused == 1


def test_redis_down_degrades_to_l1_and_direct_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's default L2 is a port nothing listens on: no error, counted, L1 still serves."""
    asked: list[list[int]] = []

    @tiered_cache_many(ttl_l1=60, ttl_l2=600, name="down-batch")
    def load(ids: list[int]) -> dict[int, int]:
        asked.append(list(ids))
        return {i: -i for i in ids}

    assert load([1, 2]) == {1: -1, 2: -2}
    assert load([1, 2]) == {1: -1, 2: -2}
    assert asked == [[1, 2]]
    assert load.cache_stats().l2_errors >= 1


def test_bad_uses_name_the_function() -> None:
    with pytest.raises(TypeError, match=r"tiered_cache_many\(\): \['lock'\] apply to single calls"):
        tiered_cache_many(lock=True)

    @tiered_cache_many(ttl_l2=None)
    def listing(ids: list[int]) -> list[int]:
        return list(ids)

    with pytest.raises(TypeError, match=r"listing: must return a mapping of id -> value, not list"):
        listing([1])
    with pytest.raises(TypeError, match=r"listing: ids must be a collection of ids, not str"):
        listing("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("l2", L2S)
def test_planted_bytes_under_an_id_are_a_miss_and_get_replaced(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """Garbage, a huge length, another type of key: read as misses, overwritten by the conditional write."""
    client = client_for(request, l2)

    @tiered_cache_many(ttl_l1=None, ttl_l2=600, name=f"planted-batch-{l2}")
    def load(ids: list[int]) -> dict[int, int]:
        return {i: i + 100 for i in ids}

    cache = load.__tiercache__
    load([0])  # learn the generation
    client.set(cache.keys.redis_key_for((1,)), b"\x00garbage\xff" * 20)
    client.set(cache.keys.redis_key_for((2,)), b"\x92\xdd\xff\xff\xff\xff")  # msgpack claiming 4 G items
    client.rpush(cache.keys.redis_key_for((3,)), b"a list, not a string")
    assert load([1, 2, 3, 4]) == {1: 101, 2: 102, 3: 103, 4: 104}
    assert load([1, 2, 3, 4]) == {1: 101, 2: 102, 3: 103, 4: 104}
    stats = load.cache_stats()
    assert stats.misses == 5 and stats.l2_hits == 4


def test_an_id_too_long_to_be_a_key_is_named() -> None:
    @tiered_cache_many(ttl_l2=None, name="long-ids")
    def load(ids: list[str]) -> dict[str, int]:
        return {i: len(i) for i in ids}

    assert load(["short"]) == {"short": 5}
    with pytest.raises(UnkeyableArgumentError, match=r"long-ids"):
        load(["x" * 100_000])


def test_batches_get_the_decorators_checks_of_the_function() -> None:
    """The same checks as @tiered_cache's, naming tiered_cache_many()."""
    with pytest.raises(ValueError, match=r"tiered_cache_many\(\) on .*: ignore names \['nope'\]"):

        @tiered_cache_many(ttl_l2=None, ignore="nope")
        def load(ids: list[int]) -> dict[int, int]:
            return {}

    with pytest.raises(TypeError, match=r"tiered_cache_many\(\) on .*: cannot cache a generator function"):

        @tiered_cache_many(ttl_l2=None)
        def generate(ids: list[int]) -> Any:
            yield {}


def test_a_batch_of_many_ids_goes_to_redis_in_bounded_chunks(
    real_l2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 ids: reads and writes of at most CHUNK keys each, every id written and read back.

    One MGET of every id outlasted the L2 timeout (0 hits, every id recomputed, the breaker open
    for the whole process) and held Redis for every other client meanwhile.
    """
    sizes: dict[str, list[int]] = {"read_many": [], "write_many_if_unchanged": [], "invalidate": []}
    for name in sizes:
        original = getattr(stores.SyncStore, name)

        def sized(store: Any, items: Any, *args: Any, _name: str = name, _original: Any = original) -> Any:
            sizes[_name].append(len(items))
            return _original(store, items, *args)

        monkeypatch.setattr(stores.SyncStore, name, sized)
    ids = list(range(20_000))

    @tiered_cache_many(ttl_l1=None, ttl_l2=600, name="batch.chunks")
    def load(ids: list[int]) -> dict[int, int]:
        return {i: i * 2 for i in ids}

    assert load(ids) == {i: i * 2 for i in ids}
    assert load(ids) == {i: i * 2 for i in ids}
    stats = load.cache_stats()
    assert stats.misses == 20_000 and stats.l2_hits == 20_000 and stats.l2_errors == 0
    assert max(sizes["read_many"]) <= CHUNK and max(sizes["write_many_if_unchanged"]) <= CHUNK
    assert sum(sizes["write_many_if_unchanged"]) == 20_000
    load.cache_invalidate(ids)  # (one command of every id would hold Redis as long)
    assert max(sizes["invalidate"]) <= CHUNK and sum(sizes["invalidate"]) == 20_000
    assert load([0, 19_999]) == {0: 0, 19_999: 39_998} and load.cache_stats().misses == 20_002


@pytest.mark.parametrize("ids", [[1, True], [1, 1.0], [True, 1.0, 1]])
def test_ids_a_mapping_cannot_tell_apart_are_refused(fake_l2: object, ids: list[Any]) -> None:
    """1, True and 1.0 are one key of the returned dict but three entries of single calls."""

    @tiered_cache_many(name="batch.equal-ids")
    def load(ids: list[Any]) -> dict[Any, str]:
        return {i: type(i).__name__ for i in ids}

    with pytest.raises(TypeError, match=r"batch.equal-ids: ids .* are equal as keys of a dict"):
        load(ids)
    assert load([1, 2]) == {1: "int", 2: "int"}
