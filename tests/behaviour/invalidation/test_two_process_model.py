"""L1 + L2, as two processes share them, against a model: a call never returns a value older than
the last invalidation of its key (or clear, or tag) said is gone, nor one the data source never held.

Hypothesis drives calls, changes to the data (with and without invalidating), invalidations,
clears, tag invalidations and sets (two threads at once, too) from either process, L1 expiry on a
fake clock, and a process restart. The second "process" is a second cache of the same function on
the same Redis: its own L1, its own origin on the invalidation channel. After an invalidation the
machine waits until the announcement reached the other L1s, which is the documented cross-process
window; a process that hears nothing and keeps no L1 gets no such wait (its reads of Redis must be
right at once), and one with stale_ttl may serve a stale value only when its function fails, and
never one an invalidation dropped.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import tiercache
from tests.support.clock import Clock
from tests.support.concurrency import at_once
from tiercache import NO_VALUE, tiered_cache
from tiercache._decorator.function import LINGER

KEYS = st.sampled_from(["a", "b", "c"])
PROCESSES = st.sampled_from([0, 1])
TTL_L1 = 10.0
TTL_L2 = 600.0
_examples = itertools.count()
REFRESHES: list[int] = []  # refreshes ahead seen, so the test knows they happened


class TwoProcesses(RuleBasedStateMachine):
    """The data source, two processes caching it, and what each call may return."""

    #: Options of the cached function beyond the TTLs (a subclass refreshes ahead), and those of
    #: the second process alone (a subclass makes it deaf).
    options: dict[str, Any] = {}  # noqa: RUF012 - read only
    second: dict[str, Any] = {}  # noqa: RUF012 - read only

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.name = f"model.lookup.{next(_examples)}"
        self.db = {"a": 0, "b": 0, "c": 0}
        # The oldest version a call may return: the data as it was at the key's last invalidation.
        self.floor = dict(self.db)
        self.down = False  # the data source fails (stale_ttl may then answer, within the floor)
        self.processes = [self._process(0), self._process(1)]

    def _process(self, index: int) -> Any:
        def lookup(key: str) -> tuple[str, int]:
            if self.down:
                raise ConnectionError("the data source is down")
            return key, self.db[key]

        options = {"ttl_l1": TTL_L1, "ttl_l2": TTL_L2, **self.options, **(self.second if index else {})}
        return tiered_cache(name=self.name, clock=self.clock, **options)(lookup)

    def _heard(self, keys: list[str] | None, actor: int | None) -> None:
        """Wait until the L1s of the processes other than ``actor`` (None: any process, a tag) no
        longer hold what was invalidated: the documented cross-process window."""
        deadline = time.monotonic() + 2
        for index, process in enumerate(self.processes):
            data = process.__tiercache__.local.data
            while index != actor and any(  # (an entry past ttl_l1 is no longer served as fresh)
                entry[1] > self.clock.now for key, entry in list(data.items()) if keys is None or key in keys
            ):
                assert time.monotonic() < deadline, "the announcement never arrived"
                time.sleep(0.001)

    @rule(process=PROCESSES, key=KEYS)
    def call(self, process: int, key: str) -> None:
        try:
            got_key, version = self.processes[process](key)
        except ConnectionError:
            assert self.down, "only a failing data source may fail a call"
            return
        assert got_key == key
        assert self.floor[key] <= version <= self.db[key], (
            f"{key}: got version {version}, the data is at {self.db[key]}, invalidated at {self.floor[key]}"
        )

    @rule(key=KEYS)
    def change_quietly(self, key: str) -> None:
        """The data changes and nobody says so: cached older versions stay allowed."""
        self.db[key] += 1

    @rule(process=PROCESSES, key=KEYS)
    def change_and_invalidate(self, process: int, key: str) -> None:
        self.db[key] += 1
        self.processes[process].cache_invalidate(key)
        self.floor[key] = self.db[key]
        self._heard([key], process)

    @rule(process=PROCESSES, key=KEYS)
    def change_and_set(self, process: int, key: str) -> None:
        """The writer puts the new version in itself: from now on nothing older is served."""
        self.db[key] += 1
        self.processes[process].cache_set((key, self.db[key]), key)
        self.floor[key] = self.db[key]
        self._heard([key], process)

    @rule(process=PROCESSES, key=KEYS)
    def change_and_set_from_two_threads(self, process: int, key: str) -> None:
        """Two threads set two new versions at once: either may win, but nothing older, and this
        process's answer is what Redis holds (what a process that just started reads)."""
        first, second = self.db[key] + 1, self.db[key] + 2
        self.db[key] = second
        setter = self.processes[process]
        at_once(
            [lambda version=version: setter.cache_set((key, version), key) for version in (first, second)]
        )
        self.floor[key] = first
        self._heard([key], process)
        if self.down:
            return
        here = setter(key)
        fresh = self._process(process)(key)
        assert here == fresh, f"{key}: this process answers {here}, Redis holds {fresh}"

    @rule(process=PROCESSES, key=KEYS)
    def peek(self, process: int, key: str) -> None:
        found = self.processes[process].cache_get(key)
        if found is not NO_VALUE:
            assert self.floor[key] <= found[1] <= self.db[key], (
                f"{key}: peeked {found}, floor {self.floor[key]}"
            )

    @rule(process=PROCESSES, change=st.booleans())
    def clear(self, process: int, change: bool) -> None:
        # (No wait for the new generation to be heard: every read of Redis fetches it.)
        if change:
            for key in self.db:
                self.db[key] += 1
        self.processes[process].cache_clear()
        self.floor = dict(self.db)
        self._heard(None, process)

    @rule(seconds=st.sampled_from([0.5, 3.0, TTL_L1 + 0.1, 310.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(process=PROCESSES)
    def restart(self, process: int) -> None:
        """A fresh process: nothing in its L1, everything from L2 or the source."""
        self.processes[process] = self._process(process)

    @invariant()
    def nothing_refused_or_corrupt(self) -> None:
        for process in self.processes:
            stats = process.cache_stats()
            assert stats.l2_corrupt == stats.l2_errors == 0
            # Redis times its TTLs in real seconds: once the test's clock has gone past ttl_l2,
            # an entry Redis still holds is past its deadline, which reads as a replay (refused).
            assert stats.l2_rejected == 0 or self.clock.now > TTL_L2
            REFRESHES.append(stats.refreshes_ahead)


class TwoProcessesRefreshingAhead(TwoProcesses):
    """The same, with background refreshes of entries in the last half of their life racing it all."""

    options = {"refresh_ahead": 0.5}  # noqa: RUF012 - read only


class TwoProcessesTagged(TwoProcesses):
    """The same, every entry tagged ``item:<key>`` and ``all``, and tags invalidated too."""

    options = {"tags": lambda key: [f"item:{key}", "all"]}  # noqa: RUF012 - read only

    @rule(key=KEYS)
    def change_and_invalidate_the_tag(self, key: str) -> None:
        self.db[key] += 1
        tiercache.invalidate_tags(f"item:{key}")
        self.floor[key] = self.db[key]
        self._heard([key], None)

    @rule()
    def change_all_and_invalidate_the_shared_tag(self) -> None:
        for key in self.db:
            self.db[key] += 1
        tiercache.invalidate_tags("all")
        self.floor = dict(self.db)
        self._heard(None, None)


class TwoProcessesOneDeaf(TwoProcesses):
    """The second process hears no announcement (a delayed or lost channel) and keeps no L1: its
    reads of Redis must be right the moment an invalidation, a clear or a set returns."""

    second = {"coherent": False, "ttl_l1": None}  # noqa: RUF012 - read only

    def _heard(self, keys: list[str] | None, actor: int | None) -> None:
        if actor == 1:  # it announces nothing either: the other's L1 keeps to ttl_l1 (documented)
            self.clock.now += TTL_L1 + 0.1
        super()._heard(keys, actor)
        # Without an L1, a run's result answers late callers for LINGER (0.1 s), heard or not.
        self.clock.now += LINGER


class TwoProcessesFailSafe(TwoProcesses):
    """With stale_ttl the data source fails now and then: a stale value may answer, never one an
    invalidation dropped, even where this process did not hear of it."""

    options = {"stale_ttl": 300.0}  # noqa: RUF012 - read only
    second = {"coherent": False}  # noqa: RUF012 - read only (its L1 holds stale copies unheard)

    @rule(process=PROCESSES, key=KEYS)
    def call_while_the_source_fails(self, process: int, key: str) -> None:
        self.down = True
        try:
            self.call(process, key)
        finally:
            self.down = False

    def _heard(self, keys: list[str] | None, actor: int | None) -> None:
        # The deaf second process keeps what it holds until ttl_l1 (and announces nothing): let
        # L1s pass that first; its copies, stale now, must still never be served once Redis says
        # they were invalidated.
        self.clock.now += TTL_L1 + 0.1
        if actor != 0:
            super()._heard(keys, 1)  # (only the first process hears: wait for its L1 alone)


MACHINES = [
    TwoProcesses,
    TwoProcessesRefreshingAhead,
    TwoProcessesTagged,
    TwoProcessesOneDeaf,
    TwoProcessesFailSafe,
]


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("backend", ["fake_l2", "real_l2"])
def test_two_processes_never_serve_what_an_invalidation_dropped(
    backend: str, machine: type[TwoProcesses], request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(backend)
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=30, deadline=None)
    )
