"""The L2 codec: exact round trips for the supported types, a closed set of extensions."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import logging
import pickle
import uuid
import zoneinfo
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import msgpack
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.strategies import same_typed, values
from tiercache import register_type, tiered_cache
from tiercache._l2.codec import DecodeError, UnencodableError, decode_value, encode_pickled, encode_value
from tiercache.testing import forget_local_caches


@given(values)
@settings(max_examples=400)
def test_values_round_trip_equal_and_of_the_same_types(value: Any) -> None:
    """None, bool, ints of any size, float, str, bytes, list, tuple, dict, set, frozenset,
    datetime (naive and aware), date, time, timedelta, Decimal, UUID, nested anyhow."""
    assert same_typed(decode_value(encode_value(value)), value)


@pytest.mark.parametrize(
    "value",
    [
        {(1, "a"): [(), ((),)], frozenset({(1, 2)}): {None}},
        2**64,
        -(2**63) - 1,
        2**64 - 1,
        dt.datetime(2024, 3, 31, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")),
        dt.time(23, 59, 59, 999999, tzinfo=dt.UTC),
        Decimal("1.10"),
        Decimal("-0"),
        float("inf"),
        -0.0,
    ],
)
def test_edge_values_round_trip(value: Any) -> None:
    assert same_typed(decode_value(encode_value(value)), value)


def test_timezone_utc_comes_back_as_the_singleton() -> None:
    back = decode_value(encode_value(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    assert back.tzinfo is dt.UTC


class Plain:
    pass


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Plain(), "test_codec.Plain"),
        ([1, {"k": Plain()}], "test_codec.Plain"),
        (Color.RED, "test_codec.Color"),
        (OrderedDict(a=1), "collections.OrderedDict"),
        (1 + 2j, "builtins.complex"),
        (dt.datetime(2020, 1, 1, tzinfo=dt.tzinfo()), "tzinfo datetime.tzinfo"),
    ],
)
def test_foreign_types_are_refused_with_their_name(value: Any, type_name: str) -> None:
    """Subclasses and other types are not silently turned into something else."""
    with pytest.raises(UnencodableError) as caught:
        encode_value(value)
    assert caught.value.type_name.endswith(type_name)


def test_a_str_with_a_lone_surrogate_is_refused_for_what_it_is(
    fake_l2: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(UnencodableError, match=r"lone surrogate \('\\ud800'\)") as caught:
        encode_value({"name": ["ok", "bad\ud800"]})  # deep inside: still named
    assert caught.value.type_name == "str"

    @tiered_cache(name="codec.surrogates")
    def echo(key: str) -> str:
        return key + "\udc00"

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert echo("k") == "k\udc00"  # kept in L1, served from there
    assert echo.cache_stats().unencodable == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "lone surrogate ('\\udc00')" in line and "a str value" not in line and "register_type" not in line


class Money:
    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount, other.currency)

    __hash__ = None  # type: ignore[assignment]


def test_registered_types_round_trip_and_nest() -> None:
    register_type(Money, lambda m: [m.amount, m.currency], lambda f: Money(*f), name="test.Money")
    value = {"price": Money(Decimal("9.99"), "EUR"), "list": [Money(Decimal("1"), "USD")]}
    assert decode_value(encode_value(value)) == value


class Marked(str):
    """A str subclass whose str() is itself, as Django's SafeString."""

    def __str__(self) -> str:
        return self


class Blob(bytes):
    pass


def test_a_subclass_of_str_or_bytes_registers_with_str_or_bytes_as_its_encoder() -> None:
    """register_type(SafeString, str, mark_safe) recursed 32 times (str() of one is itself) and
    said "a values nested more than 32 deep value is kept in L1 only"."""
    register_type(Marked, str, Marked, name="test.Marked")
    register_type(Blob, bytes, Blob, name="test.Blob")
    value = {"html": Marked("<b>hi</b>"), "raw": Blob(b"\x00\x01"), "plain": "x"}
    back = decode_value(encode_value(value))
    assert back == value and type(back["html"]) is Marked and type(back["raw"]) is Blob
    assert type(back["plain"]) is str


class Shape:
    def __init__(self, sides: int) -> None:
        self.sides = sides


class Square(Shape):
    pass


class Triangle:
    pass


class Wedge(Triangle):
    pass


def test_a_base_registered_with_its_subclasses_encodes_them_and_only_then() -> None:
    register_type(Shape, lambda s: s.sides, Shape, name="test.Shape", subclasses=True)
    register_type(Triangle, lambda _: 3, lambda _: Triangle(), name="test.Triangle")
    back = decode_value(encode_value([Square(4), Shape(5)]))
    assert [type(shape) for shape in back] == [Shape, Shape] and [s.sides for s in back] == [4, 5]
    with pytest.raises(UnencodableError) as caught:
        encode_value(Wedge())  # (registered without subclasses: a subclass is foreign)
    assert caught.value.type_name.endswith("Wedge")


def test_values_nested_too_deep_are_named_as_such(fake_l2: Any, caplog: pytest.LogCaptureFixture) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = (deep,)
    with pytest.raises(UnencodableError) as caught:
        encode_value(deep)
    assert caught.value.type_name == "tuple" and "nested more than 32 deep" in caught.value.reason

    @tiered_cache(name="codec.deep")
    def nest() -> Any:
        return deep

    with caplog.at_level(logging.WARNING, logger="tiercache"):
        nest()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "codec.deep: a value is kept in L1 only: values nested more than 32 deep"


def test_register_type_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="register_type"):
        register_type("Money", str, str)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="register_type"):
        register_type(Money, "x", str)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Price:
    amount: Decimal
    currency: str


@dataclasses.dataclass
class Listing:
    sku: str
    price: Price
    extra: Any = None
    tag_count: int = dataclasses.field(init=False, default=0)  # (computed: not stored)

    def __post_init__(self) -> None:
        self.tag_count = len(self.sku)


register_type(Price, name="test.Price")
register_type(Listing, name="test.Listing")


@given(st.text(), values)
def test_a_dataclass_registers_without_an_encoder_and_round_trips_nested(sku: str, extra: Any) -> None:
    """register_type(SomeDataclass): stored as its init fields by name, rebuilt by the class."""
    value = [Listing(sku, Price(Decimal("9.99"), "EUR"), extra)]
    (back,) = decode_value(encode_value(value))
    assert type(back) is Listing and type(back.price) is Price
    assert back.sku == sku and back.price == value[0].price and same_typed(back.extra, extra)
    assert back.tag_count == len(sku)  # (rebuilt by __post_init__, as the class builds it)


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_function_returning_a_registered_dataclass_is_an_l2_hit_elsewhere(
    l2: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(l2)

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"codec.listing.{l2}")
    def listing(sku: str) -> Listing:
        return Listing(sku, Price(Decimal("1.50"), "EUR"))

    first = listing("a")
    forget_local_caches()  # (as another process finds it: L2 only)
    again = listing("a")
    assert again == first and again is not first and type(again.price) is Price
    assert listing.cache_stats().l2_hits == 1 and listing.cache_stats().unencodable == 0


def test_a_registered_dataclass_reads_entries_written_before_a_field_was_added() -> None:
    """A deploy adds a field with a default: the entries the old version wrote still read."""

    @dataclasses.dataclass
    class Before:
        name: str

    @dataclasses.dataclass
    class After:
        name: str
        region: str = "eu"

    register_type(Before, name="test.Versioned")
    written = encode_value(Before("s3"))
    register_type(After, name="test.Versioned")
    assert decode_value(written) == After("s3", "eu")


@pytest.mark.parametrize(
    "fields",
    [["9.99", "EUR"], {"amount": 1, "currency": "EUR", "planted": 1}, {"amount": 1}],
)
def test_foreign_fields_under_a_registered_dataclass_are_a_decode_error(fields: Any) -> None:
    """What another writer put under the name (a list, a field the class lacks or needs): a miss."""
    payload = msgpack.packb(msgpack.ExtType(11, msgpack.packb(["test.Price", fields])))
    with pytest.raises(DecodeError):
        decode_value(payload)


class Owner(pydantic.BaseModel):
    id: uuid.UUID
    name: str


class Order(pydantic.BaseModel):
    """What a FastAPI service returns: nested models, times, decimals, optional fields."""

    model_config = pydantic.ConfigDict(extra="allow")

    owner: Owner
    placed: dt.datetime
    total: Decimal
    lines: list[str] = []
    note: str | None = None


register_type(Order, name="test.Order")


@given(
    st.text(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.lists(st.text(max_size=5), max_size=3),
    st.none() | st.text(max_size=5),
)
def test_a_pydantic_model_registers_without_an_encoder_and_round_trips(
    name: str, placed: dt.datetime, total: Decimal, lines: list[str], note: str | None
) -> None:
    """register_type(SomeModel): stored as its JSON, rebuilt by validating it."""
    order = Order(owner=Owner(id=uuid.uuid4(), name=name), placed=placed, total=total, lines=lines, note=note)
    (back,) = decode_value(encode_value([order]))
    assert type(back) is Order and type(back.owner) is Owner and back == order


def test_a_pydantic_model_keeps_its_extra_fields_and_refuses_foreign_payloads() -> None:
    order = Order(
        owner=Owner(id=uuid.uuid4(), name="ada"), placed=dt.datetime(2026, 12, 8), total=1, gift=True
    )
    assert decode_value(encode_value(order)).model_extra == {"gift": True}
    for foreign in ({"owner": 1}, '{"owner": 1}', "not json"):
        payload = msgpack.packb(msgpack.ExtType(11, msgpack.packb(["test.Order", foreign])))
        with pytest.raises(DecodeError):
            decode_value(payload)


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_function_returning_a_registered_pydantic_model_is_an_l2_hit_elsewhere(
    l2: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(l2)

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"codec.order.{l2}")
    async def order(name: str) -> Order:
        return Order(owner=Owner(id=uuid.uuid4(), name=name), placed=dt.datetime.now(dt.UTC), total=3)

    first = asyncio.run(order("a"))
    forget_local_caches()  # (as another process finds it: L2 only)
    again = asyncio.run(order("a"))
    assert again == first and again is not first and type(again.owner) is Owner
    assert order.cache_stats().l2_hits == 1 and order.cache_stats().unencodable == 0


def test_only_a_dataclass_or_a_pydantic_model_registers_without_an_encoder() -> None:
    with pytest.raises(TypeError, match=r"register_type\(\): encode and decode must be callables"):
        register_type(Money)


def test_a_dataclass_needing_an_init_only_argument_is_refused_at_registration() -> None:
    """Nothing stores an InitVar: every read would fail to rebuild it. Refused when registered."""

    @dataclasses.dataclass
    class Salted:
        digest: str
        salt: dataclasses.InitVar[str]

    with pytest.raises(TypeError, match=r"Salted\(\) needs salt, which it does not keep as fields"):
        register_type(Salted, name="test.Salted")


def test_unregistered_type_name_on_the_wire_is_a_decode_error_not_an_import() -> None:
    payload = msgpack.packb(msgpack.ExtType(11, msgpack.packb(["os.system", "echo pwned"])))
    with pytest.raises(DecodeError, match="not registered"):
        decode_value(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x01",  # truncated array
        msgpack.packb(msgpack.ExtType(99, b"")),  # unknown extension
        msgpack.packb(msgpack.ExtType(5, b"\x01")),  # datetime with a bad body
        msgpack.packb(msgpack.ExtType(2, msgpack.packb([[1]]))),  # set of an unhashable
        pickle.dumps({"a": 1}),
        b"\xd9\x02\xff\xfe",  # invalid UTF-8 in a str
    ],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_value(payload)


@given(st.binary(max_size=256))
@settings(max_examples=500)
def test_decoding_arbitrary_bytes_raises_nothing_but_decode_error(payload: bytes) -> None:
    try:
        decode_value(payload)
    except DecodeError:
        pass


@given(values)
def test_asking_for_pickles_changes_nothing_for_what_msgpack_carries(value: Any) -> None:
    assert same_typed(decode_value(encode_value(value), pickled=True), value)


@given(st.binary(max_size=300))
def test_bytes_that_are_not_a_pickle_of_ours_are_never_unpickled(raw: bytes) -> None:
    """Only one whole extension value of the pickle code, its length exact, is unpickled."""
    try:
        decode_value(raw, pickled=True)
    except DecodeError:
        pass
    packed = msgpack.packb(msgpack.ExtType(12, raw))
    for truncated_or_longer in (packed[:-1], packed + b"\x00", b"\x91" + packed):
        with pytest.raises(DecodeError):
            decode_value(truncated_or_longer, pickled=True)


def test_a_pickled_value_is_opened_only_when_asked_for() -> None:
    from fractions import Fraction  # noqa: PLC0415

    body = encode_pickled(Fraction(2, 3))
    assert decode_value(body, pickled=True) == Fraction(2, 3)
    with pytest.raises(DecodeError, match="unknown extension code 12"):
        decode_value(body)
    with pytest.raises(DecodeError, match="unreadable pickled value"):
        decode_value(msgpack.packb(msgpack.ExtType(12, b"not a pickle" * 30)), pickled=True)
    with pytest.raises(pickle.PickleError):
        encode_pickled(_Unpicklable())


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise pickle.PickleError("no")
