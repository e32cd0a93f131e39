"""The subscription's Python reply reader: what hiredis reads, however the bytes arrive."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.utils import HIREDIS_AVAILABLE

from tiercache._l2.inbox import ReplyError, RespReader

line = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
scalars = st.one_of(
    st.tuples(st.just("bulk"), st.binary(max_size=300)),
    st.tuples(st.just("null"), st.none()),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("simple"), line),
    st.tuples(st.just("error"), st.text("abcXYZ 01-_:", max_size=12).map(lambda t: b"ERR " + t.encode())),
)
replies = st.recursive(
    scalars,
    lambda inner: st.tuples(st.sampled_from(["array", "push"]), st.lists(inner, max_size=4)),
    max_leaves=10,
)


def wire(reply: tuple[str, Any]) -> bytes:
    kind, value = reply
    if kind in {"array", "push"}:
        return b"%c%d\r\n" % (b"*" if kind == "array" else b">", len(value)) + b"".join(map(wire, value))
    if kind == "bulk":
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return {"null": lambda: b"$-1\r\n", "int": lambda: b":%d\r\n" % value}.get(
        kind, lambda: (b"+" if kind == "simple" else b"-") + value + b"\r\n"
    )()


def expected(reply: tuple[str, Any]) -> Any:
    kind, value = reply
    if kind in {"array", "push"}:
        return [expected(item) for item in value]
    if kind == "error":
        return ("error", value.decode())
    return value


def plain(reply: Any) -> Any:
    """A reply as comparable data (errors are instances of each reader's own class)."""
    if isinstance(reply, list):
        return [plain(item) for item in reply]
    if isinstance(reply, Exception):
        return ("error", str(reply))
    return reply


def read_all(reader: Any, data: bytes, cuts: list[int]) -> list[Any]:
    found = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        reader.feed(data[start:end])
        while (reply := reader.gets()) is not False:
            found.append(reply)
    return found


@given(st.lists(replies, min_size=1, max_size=6), st.data())
def test_replies_read_the_same_however_they_are_cut(sent: list[tuple[str, Any]], data: st.DataObject) -> None:
    stream = b"".join(map(wire, sent))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=8)))
    reader = RespReader()
    assert [plain(reply) for reply in read_all(reader, stream, cuts)] == [expected(reply) for reply in sent]
    assert reader.len() == 0
    if HIREDIS_AVAILABLE:
        import hiredis  # noqa: PLC0415 - only where the extra is installed

        assert [plain(reply) for reply in read_all(hiredis.Reader(), stream, cuts)] == [
            expected(reply) for reply in sent
        ]


def test_a_reply_not_whole_yet_is_held_unparsed() -> None:
    reader = RespReader()
    reader.feed(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$10\r\nabc")
    assert reader.gets() is False and reader.len() == 33
    reader.feed(b"defghij\r\n:1\r\n")
    assert reader.gets() == [b"message", b"ch", b"abcdefghij"]
    assert reader.gets() == 1 and reader.gets() is False and reader.len() == 0


def test_errors_are_returned_and_garbage_raises() -> None:
    reader = RespReader()
    reader.feed(b"-NOPERM this user has no permissions to access the channel\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError) and str(error).startswith("NOPERM")
    for garbage in (b"?what\r\n", b"$twelve\r\n", b":1.5\r\n"):
        reader = RespReader()
        reader.feed(garbage)
        with pytest.raises(ValueError, match=r"."):
            reader.gets()
