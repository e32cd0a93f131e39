"""The bytes around an L2 value: generation, token, deadline, tombstones; hostile bytes are errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiercache._l2.codec import DecodeError
from tiercache._l2.envelope import (
    ABSENT,
    FOREIGN_TOKEN,
    FORMAT_VERSION,
    MAX_GENERATION,
    NO_TOKEN,
    generation_from,
    new_token,
    open_current,
    open_envelope,
    prefix_of,
    seal,
    token_of,
    tombstone,
)

tokens = st.binary(min_size=8, max_size=8)
generations = st.integers(min_value=0, max_value=MAX_GENERATION - 1)


@given(body=st.binary(max_size=64), generation=generations, token=tokens, fresh=st.integers(-(2**62), 2**62))
def test_envelope_round_trip(body: bytes, generation: int, token: bytes, fresh: int) -> None:
    """What is sealed opens to the same generation, token, deadline and body."""
    envelope = open_envelope(seal(body, generation, token, fresh))
    assert (envelope.generation, envelope.token, envelope.fresh_until_ms) == (generation, token, fresh)
    assert (bytes(envelope.body), envelope.signed, envelope.tombstone) == (body, False, False)


@given(body=st.binary(max_size=64), generation=generations, token=tokens)
def test_the_prefix_tells_current_values_apart(body: bytes, generation: int, token: bytes) -> None:
    """Only a value of the same generation and signing mode starts with the prefix."""
    sealed = seal(body, generation, token, 5)
    opened = open_current(sealed, prefix_of(generation))
    assert opened is not None and opened[0] == 5 and bytes(opened[1]) == body
    assert open_current(sealed, prefix_of(generation + 1)) is None
    assert open_current(sealed, prefix_of(generation, signed=True)) is None
    assert open_current(tombstone(token), prefix_of(0)) is None


@given(body=st.binary(max_size=64), generation=generations, token=tokens)
def test_the_token_is_read_where_the_conditional_write_reads_it(
    body: bytes, generation: int, token: bytes
) -> None:
    """Values and tombstones carry their token at the same offsets; absent and foreign bytes differ."""
    assert token_of(seal(body, generation, token, 0)) == token
    assert token_of(tombstone(token)) == token
    assert open_envelope(tombstone(token)).tombstone
    assert token_of(None) == ABSENT
    assert token_of(b"\x80\x04pickle") == FOREIGN_TOKEN
    older_format = b"tc" + bytes([FORMAT_VERSION - 1]) + seal(body, generation, token, 0)[3:]
    assert token_of(older_format) == FOREIGN_TOKEN


def test_new_tokens_are_random_and_never_the_absent_one() -> None:
    seen = {new_token() for _ in range(1000)}
    assert len(seen) == 1000 and NO_TOKEN not in seen


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"tc", "shorter"),
        (b"xx" + seal(b"b", 0, NO_TOKEN, 0)[2:], "magic"),
        (b"tc" + bytes([FORMAT_VERSION + 1]) + seal(b"b", 0, NO_TOKEN, 0)[3:], "format version"),
        (seal(b"", 1, NO_TOKEN, 0)[:-4], "shorter"),
        (seal(b"", 1, NO_TOKEN, 0, signed=True), "MAC"),
    ],
)
def test_envelope_refuses_foreign_newer_and_truncated_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        open_envelope(payload)


@given(st.binary(max_size=64))
def test_open_envelope_raises_nothing_but_decode_error(payload: bytes) -> None:
    try:
        open_envelope(payload)
    except DecodeError:
        pass


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 0),
        (b"0", 0),
        (b"17", 17),
        (str(MAX_GENERATION - 1).encode(), MAX_GENERATION - 1),
        (str(MAX_GENERATION).encode(), MAX_GENERATION),  # the ceiling, where clears stop
        (b"9" * 20, MAX_GENERATION),  # (any number past it reads as it)
        (b"9" * 21, None),
        (b"x" * 256, None),
        (b"-1", None),
        (b"1e9", None),
        (b" 1", None),
        (b"", None),
        (bytes(8), None),
    ],
)
def test_only_a_short_decimal_number_is_a_generation(raw: bytes | None, expected: int | None) -> None:
    """Whatever else Redis holds under a generation key is malformed (a miss), never an exception;
    a number from the ceiling up is the ceiling (see envelope.MAX_GENERATION)."""
    assert generation_from(raw) == expected


@given(st.binary(max_size=300))
def test_generation_from_raises_nothing(raw: bytes) -> None:
    generation_from(raw)
