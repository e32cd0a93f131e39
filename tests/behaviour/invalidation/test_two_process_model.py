"""L1 + L2, as two processes share them, against a model: a call never returns a value older than
the last invalidation of its key (or clear) said is gone, nor one the data source never held.

Hypothesis drives calls, changes to the data (with and without invalidating), invalidations and
clears from either process, L1 expiry on a fake clock, and a process restart. The second
"process" is a second cache of the same function on the same Redis: its own L1, its own origin
on the invalidation channel. After an invalidation the machine waits until the announcement
reached the other L1, which is the documented cross-process window.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.support.clock import Clock
from tiercache import NO_VALUE, tiered_cache

KEYS = st.sampled_from(["a", "b", "c"])
PROCESSES = st.sampled_from([0, 1])
TTL_L1 = 10.0
TTL_L2 = 600.0
_examples = itertools.count()
REFRESHES: list[int] = []  # refreshes ahead seen, so the test knows they happened


class TwoProcesses(RuleBasedStateMachine):
    """The data source, two processes caching it, and what each call may return."""

    #: Options of the cached function beyond the TTLs (a subclass refreshes ahead).
    options: dict[str, Any] = {}  # noqa: RUF012 - read only

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.name = f"model.lookup.{next(_examples)}"
        self.db = {"a": 0, "b": 0, "c": 0}
        # The oldest version a call may return: the data as it was at the key's last invalidation.
        self.floor = dict(self.db)
        self.processes = [self._process(), self._process()]

    def _process(self) -> Any:
        def lookup(key: str) -> tuple[str, int]:
            return key, self.db[key]

        return tiered_cache(ttl_l1=TTL_L1, ttl_l2=TTL_L2, name=self.name, clock=self.clock, **self.options)(
            lookup
        )

    def _heard(self, keys: list[str] | None, *, by: list[Any] | None = None) -> None:
        """Wait until the other processes' L1s (``by``: these) no longer hold what was invalidated."""
        deadline = time.monotonic() + 2
        for process in self.processes if by is None else by:
            data = process.__tiercache__.local.data
            while any(key in data for key in keys) if keys is not None else data:
                assert time.monotonic() < deadline, "the announcement never arrived"
                time.sleep(0.001)

    @rule(process=PROCESSES, key=KEYS)
    def call(self, process: int, key: str) -> None:
        got_key, version = self.processes[process](key)
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
        self._heard([key])

    @rule(process=PROCESSES, key=KEYS)
    def change_and_set(self, process: int, key: str) -> None:
        """The writer puts the new version in itself: from now on nothing older is served."""
        self.db[key] += 1
        self.processes[process].cache_set((key, self.db[key]), key)
        self.floor[key] = self.db[key]
        self._heard([key], by=[other for index, other in enumerate(self.processes) if index != process])

    @rule(process=PROCESSES, key=KEYS)
    def peek(self, process: int, key: str) -> None:
        found = self.processes[process].cache_get(key)
        if found is not NO_VALUE:
            assert self.floor[key] <= found[1] <= self.db[key], (
                f"{key}: peeked {found}, floor {self.floor[key]}"
            )

    @rule(process=PROCESSES)
    def clear(self, process: int) -> None:
        self.processes[process].cache_clear()
        self.floor = dict(self.db)
        self._heard(None)
        # An empty L1 is not proof of hearing a clear: a process that learned the generation
        # without keeping anything (a peek, a miss) must also have heard of the new one, or be
        # due to read it (the documented window: the announcement, else GENERATION_RECHECK).
        generation = self.processes[process].__tiercache__.known_generation()
        deadline = time.monotonic() + 2
        for other in self.processes:
            cache = other.__tiercache__
            endpoint = cache.endpoint()
            while endpoint is not None and not (
                cache.known_generation() >= generation or cache.generation_key_if_due(endpoint)
            ):
                assert time.monotonic() < deadline, "the clear's announcement never arrived"
                time.sleep(0.001)

    @rule(seconds=st.sampled_from([0.5, 3.0, TTL_L1 + 0.1, 310.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(process=PROCESSES)
    def restart(self, process: int) -> None:
        """A fresh process: nothing in its L1, everything from L2 or the source."""
        self.processes[process] = self._process()

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


@pytest.mark.parametrize("machine", [TwoProcesses, TwoProcessesRefreshingAhead])
@pytest.mark.parametrize("backend", ["fake_l2", "real_l2"])
def test_two_processes_never_serve_what_an_invalidation_dropped(
    backend: str, machine: type[TwoProcesses], request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(backend)
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=30, deadline=None)
    )
