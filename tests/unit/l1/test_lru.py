"""L1: an exact LRU with per-entry expiry, checked against a model; a fake clock, no sleeping."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.support.clock import Clock
from tiercache._l1.lru import MISSING, LocalCache


class LRUModel(RuleBasedStateMachine):
    """LocalCache against an OrderedDict model: same hits, same evictions, same expiries."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(now=1000.0)
        self.cache = LocalCache(max_entries=4, ttl=10.0, clock=self.clock)
        self.model: OrderedDict[int, tuple[Any, float]] = OrderedDict()

    keys = st.integers(min_value=0, max_value=7)

    @rule(key=keys, value=st.integers(), ttl=st.one_of(st.none(), st.floats(min_value=0.5, max_value=20)))
    def set(self, key: int, value: int, ttl: float | None) -> None:
        self.cache.set(key, value, ttl)
        lifetime = 10.0 if ttl is None else min(ttl, 10.0)
        self.model.pop(key, None)
        self.model[key] = (value, self.clock.now + lifetime)
        while len(self.model) > 4:
            self.model.popitem(last=False)

    @rule(key=keys)
    def get(self, key: int) -> None:
        expected = MISSING
        entry = self.model.pop(key, None)
        if entry is not None and entry[1] > self.clock.now:
            self.model[key] = entry
            expected = entry[0]
        got = self.cache.get(key)
        if expected is MISSING:
            assert got is MISSING
        else:
            assert got == expected

    @rule(key=keys)
    def delete(self, key: int) -> None:
        assert self.cache.delete(key) == (self.model.pop(key, None) is not None)

    @rule(seconds=st.floats(min_value=0, max_value=8))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    @invariant()
    def same_keys_in_the_same_order(self) -> None:
        assert list(self.cache.data) == list(self.model)
        assert len(self.cache) <= 4


TestLRUModel = LRUModel.TestCase
TestLRUModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_expiry_is_measured_from_the_write() -> None:
    clock = Clock(now=1000.0)
    cache = LocalCache(max_entries=10, ttl=5.0, clock=clock)
    cache.set("k", "v")
    clock.now += 4.9
    assert cache.get("k") == "v"  # a hit does not extend the lifetime
    clock.now += 0.2
    assert cache.get("k") is MISSING
    assert len(cache) == 0


def test_a_drop_since_keeps_the_droppers_own_write_unless_another_came_between() -> None:
    """delete_since: the set of a key voids every lease but its own, unless the key was dropped
    (another process's change) since the set began; then it keeps nothing."""
    cache = LocalCache(max_entries=10, ttl=60.0)
    since, reader = cache.lease(), cache.lease()
    own = cache.delete_since("k", since)
    assert own is not None
    assert not cache.set("k", "old", lease=reader)  # a read from before the set: refused
    assert cache.set("k", "mine", lease=own) and cache.get("k") == "mine"
    since = cache.lease()
    cache.delete("k")  # heard while the set wrote Redis
    assert cache.delete_since("k", since) is None
    since = cache.lease()
    cache.delete("other")  # another key's drop is not this one's
    assert cache.delete_since("k", since) is not None
    since = cache.lease()
    cache.clear()
    assert cache.delete_since("k", since) is None
    own = cache.delete_since("k", cache.lease())
    cache.delete("k")  # after the drop, before the write
    assert own is not None and not cache.set("k", "mine", lease=own)


def test_zero_entries_stores_nothing() -> None:
    cache = LocalCache(max_entries=0, ttl=5.0)
    cache.set("k", "v")
    assert cache.get("k") is MISSING


def test_none_is_a_value() -> None:
    cache = LocalCache(max_entries=2, ttl=5.0)
    cache.set("k", None)
    assert cache.get("k") is None


def test_concurrent_readers_and_writers_keep_the_bound_and_raise_nothing() -> None:
    cache = LocalCache(max_entries=50, ttl=60.0)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(20_000):
                key = (seed * 7919 + i) % 200
                if i % 3:
                    cache.get(key)
                else:
                    cache.set(key, i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 50


def test_tinylfu_keeps_popular_entries_that_one_hit_wonders_would_push_out() -> None:
    lru = LocalCache(max_entries=10, ttl=60.0)
    tiny = LocalCache(max_entries=10, ttl=60.0, policy="tinylfu")
    for cache in (lru, tiny):
        for _ in range(5):  # ten popular keys, missed (and so counted) a few times each
            for key in range(10):
                cache.delete(key)
                cache.set(key, key)
        for stranger in range(100, 200):  # a scan of keys seen once
            cache.set(stranger, stranger)
    assert sum(lru.get(k) is not MISSING for k in range(10)) == 0  # LRU lost them all
    assert sum(tiny.get(k) is not MISSING for k in range(10)) == 10  # TinyLFU kept them


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=300))
def test_tinylfu_respects_the_bound_and_serves_only_what_was_set(ops: list[tuple[int, bool]]) -> None:
    cache = LocalCache(max_entries=8, ttl=60.0, policy="tinylfu")
    written: dict[int, int] = {}
    for step, (key, write) in enumerate(ops):
        if write:
            cache.set(key, step)
            written[key] = step
        else:
            got = cache.get(key)
            assert got is MISSING or got == written[key]
        assert len(cache) <= 8


def test_tinylfu_beats_lru_on_a_skewed_stream() -> None:
    rng = random.Random(7)
    keys = [int(rng.paretovariate(1.0)) for _ in range(30_000)]
    rates = {}
    for policy in ("lru", "tinylfu"):
        cache = LocalCache(max_entries=100, ttl=1e9, policy=policy)
        hits = 0
        for key in keys:
            if cache.get(key) is MISSING:
                cache.set(key, key)
            else:
                hits += 1
        rates[policy] = hits / len(keys)
    assert rates["tinylfu"] > rates["lru"]
