"""Hypothesis strategies for the values tiercache keys on and stores, and a typed equality."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]

timezones = st.one_of(
    st.none(),
    st.just(dt.UTC),
    st.builds(
        dt.timezone,
        st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: dt.timedelta(minutes=m)),
    ),
    st.sampled_from(ZONES).map(zoneinfo.ZoneInfo),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(timezones=timezones),
    st.dates(),
    st.times(timezones=st.one_of(st.none(), st.just(dt.UTC))),
    st.timedeltas(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
)

hashables = st.recursive(
    scalars,
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=4)),
    max_leaves=8,
)

values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


def normal_form(value: Any) -> Any:
    """Return a hashable form equal for two values exactly when they are the same typed value.

    Written independently of tiercache's key encoder, as the oracle it is checked against:
    types are part of the form (1, 1.0 and True differ), dict and set order is not.
    """
    kind = type(value)
    if kind is float:
        return ("float", struct.pack(">d", math.nan if math.isnan(value) else value))
    if kind in (list, tuple):
        return (kind.__name__, tuple(normal_form(item) for item in value))
    if kind is dict:
        return ("dict", frozenset((normal_form(k), normal_form(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(normal_form(item) for item in value))
    if kind in (dt.datetime, dt.time):
        tz = value.tzinfo
        return (kind.__name__, value.isoformat(), value.fold, repr(tz))
    if kind is Decimal:
        return ("Decimal", str(value))
    if kind is uuid.UUID:
        return ("UUID", value.bytes)
    return (kind.__name__, value)


def same_typed(a: Any, b: Any) -> bool:
    """Return whether ``a == b`` with the same types all the way down (round-trip check)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if a != b:
            return False
        by_key = {normal_form(k): (k, v) for k, v in b.items()}
        for k, v in a.items():
            other_key, other_value = by_key[normal_form(k)]
            if not (same_typed(k, other_key) and same_typed(v, other_value)):
                return False
        return True
    if isinstance(a, (set, frozenset)):
        return {normal_form(x) for x in a} == {normal_form(x) for x in b}
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.fold == b.fold and repr(a.tzinfo) == repr(b.tzinfo)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return bool(a == b)
