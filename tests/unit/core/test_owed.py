"""Owed: a replay forgets only what it covered, whatever was deferred while it ran."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tiercache._core.owed import MAX_PENDING_KEYS, Owed

_KEYS = st.sampled_from(["a", "b", "c", "d"])
# defer keys | defer a clear | a replay looks (snapshots) | the oldest look's replay lands
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("keys"), st.lists(_KEYS, min_size=1, max_size=3)),
        st.tuples(st.just("clear"), st.none()),
        st.tuples(st.just("look"), st.none()),
        st.tuples(st.just("land"), st.none()),
    ),
    max_size=40,
)


@given(_STEPS)
def test_what_was_deferred_after_a_replay_looked_stays_owed(steps: list[tuple[str, object]]) -> None:
    owed = Owed()
    model_keys: dict[str, int] = {}  # key -> deferral number
    model_clears: list[int] = []
    number = 0
    looks = []
    for step, argument in steps:
        if step == "keys":
            number += 1
            owed.defer(keys=tuple(argument))  # type: ignore[arg-type]
            model_keys.update(dict.fromkeys(argument, number))  # type: ignore[call-overload]
        elif step == "clear":
            number += 1
            owed.defer(clear=True)
            model_clears.append(number)
            model_keys.clear()
        elif step == "look":
            looks.append(owed.pending())
        elif looks:
            seen = looks.pop(0)
            owed.repaired(clears=seen.clears, keys=seen.keys, upto=seen.mark)
            if seen.clears:
                model_clears = [n for n in model_clears if n > seen.mark]
            for key in seen.keys:
                if model_keys.get(key, seen.mark + 1) <= seen.mark:
                    del model_keys[key]
    for key in "abcd":
        assert owed.covers(key) == bool(model_clears or key in model_keys), key
    assert owed.any == bool(model_clears or model_keys) and len(owed) == len(model_keys) + len(model_clears)


def test_too_many_keys_become_one_clear() -> None:
    owed = Owed()
    owed.defer(keys=tuple(f"k{n}" for n in range(MAX_PENDING_KEYS)))
    owed.defer(keys=("one-more",))
    pending = owed.pending()
    assert (pending.clears, pending.keys) == (1, ()) and owed.covers("anything")


def test_a_generation_floor_covers_every_key_until_a_replay_tells_redis() -> None:
    owed = Owed()
    owed.floor()
    seen = owed.pending()
    assert seen.floor and owed.covers("k") and owed.any
    owed.repaired(floor=True, upto=seen.mark)
    assert not owed.covers("k") and not owed.any
