"""TagNotes: which L1 keys each tag digest stands for, bounded, pruned without losing a drop."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from tiercache._decorator.tag_names import TagNotes
from tiercache._l1.lru import LocalCache


def _local(max_entries: int = 2) -> LocalCache:
    return LocalCache(max_entries, 60.0, lambda: 0.0)


def test_take_returns_and_forgets_the_keys_noted_under_any_tag() -> None:
    notes = TagNotes(_local())
    notes.note(["a", "b"], "k1", lambda: None)
    notes.note(["b"], "k2", lambda: None)
    assert notes.noted("a", "k1") and notes.noted("b", "k2") and len(notes) == 3
    assert notes.take(["b", "unknown"]) == {"k1", "k2"}
    assert notes.take(["b"]) == set() and notes.noted("a", "k1") and len(notes) == 1


def test_pruning_keeps_what_l1_holds_and_loses_track_before_anyone_can_look() -> None:
    """Past the bound, notes of keys L1 let go are forgotten, and leases voided under the lock."""
    local = _local(max_entries=2)
    local.set("held", 1)
    notes = TagNotes(local)
    seen_locked: list[bool] = []
    taken: list[set[object]] = []
    takers: list[threading.Thread] = []

    def lose_track() -> None:  # an invalidation's take() now must wait until leases are void
        seen_locked.append(notes._lock.locked() and len(notes) == 1)  # pruned to what L1 holds
        taker = threading.Thread(target=lambda: taken.append(notes.take(["t"])))
        taker.start()
        taker.join(0.05)
        seen_locked.append(taker.is_alive())  # still waiting for the lock
        takers.append(taker)

    notes.note(["t"], "held", lose_track)
    pruned_at = 2 * 2 + 1024  # notes beyond this many prune
    for n in range(pruned_at):
        notes.note(["t"], n, lose_track)
    assert seen_locked == [True, True]  # pruned once
    takers[0].join()
    assert taken == [{"held"}]  # the invalidation found what L1 holds, after the pruning


@given(st.lists(st.tuples(st.sets(st.sampled_from("abcd"), min_size=1), st.integers(0, 20)), max_size=60))
def test_every_note_is_found_by_one_take_of_its_tag(notes_made: list[tuple[set[str], int]]) -> None:
    """Below the bound, a take of a tag returns exactly the keys noted under it since the last take."""
    notes = TagNotes(_local(max_entries=1000))
    expected: dict[str, set[int]] = {}
    for tags, key in notes_made:
        notes.note(sorted(tags), key, lambda: None)
        for tag in tags:
            expected.setdefault(tag, set()).add(key)
    for tag in "abcd":
        assert notes.take([tag]) == expected.get(tag, set())
    assert len(notes) == 0
