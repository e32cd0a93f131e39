"""Canonical, process-independent encoding of call arguments, and the digests built from it.

Pure: knows nothing of caches, tiers or Redis. The same arguments give the same bytes in every
process, on every machine and under every ``PYTHONHASHSEED``; Python's ``hash()`` is never used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import math
import pathlib
import struct
import uuid
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tiercache._l2.layout import DIGEST_LENGTH

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "EXACT_TYPES",
    "KEY_FORMAT",
    "UnkeyableArgumentError",
    "canonical_bytes",
    "digest",
    "encoding_of",
    "shallow_key",
]

#: Bumped whenever the byte layout below changes, so old L2 entries are simply never found again.
KEY_FORMAT = 1

#: Types whose values may serve as an L1 key as they are: no two values of distinct types among
#: these compare equal, so a raw tuple of them is as "typed" as the canonical bytes would be.
#: bool and float are left out on purpose: ``1 == True == 1.0`` in Python.
EXACT_TYPES: frozenset[type] = frozenset({str, int, bytes, type(None)})


class _Shallow:
    """Marks a shallow key (see shallow_key): no raw or canonical L1 key begins with it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<shallow key>"


_SHALLOW = _Shallow()
_SHAPED: frozenset[type] = frozenset({list, tuple, set, frozenset})
#: Items a shallow key holds at most: past them the canonical encoding decides, and refuses
#: what passes max_key_bytes after bounded work (a shallow key would hash it all, every call).
SHALLOW_MAX_ITEMS = 4096


def shallow_key(values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Return a typed L1 key for call values that are exact types or flat containers of them.

    A dict, list, tuple, set or frozenset whose items are all of EXACT_TYPES keys as its type
    and a frozenset (dict items, sets) or tuple (sequences) of them: built and hashed in C, so
    an L1 hit with a 1,000-item dict costs what hashing it costs, not a canonical encoding.
    Still typed: no two EXACT_TYPES values of distinct types are equal, and the container's
    type is part of the key. None when a value is anything else, or the containers hold more
    than SHALLOW_MAX_ITEMS items together (the canonical encoding then).
    """
    parts: list[Any] = [_SHALLOW]
    exact = EXACT_TYPES
    items = 0
    for value in values:
        kind = type(value)
        if kind in exact:
            parts.append(value)
            continue
        if kind is not dict and kind not in _SHAPED:
            return None
        items += len(value)
        if items > SHALLOW_MAX_ITEMS:
            return None
        if kind is dict:
            if not (set(map(type, value)) <= exact and set(map(type, value.values())) <= exact):
                return None
            parts.append((dict, frozenset(value.items())))
        else:
            if not set(map(type, value)) <= exact:
                return None
            parts.append((kind, frozenset(value) if kind is set or kind is frozenset else tuple(value)))
    return tuple(parts)


_MAX_DEPTH = 64
#: The longest canonical encoding of a call's arguments, by default (``configure(max_key_bytes=)``).
#: Encoding stops as soon as it is passed: a huge argument costs a bounded amount of work.
DEFAULT_MAX_KEY_BYTES = 64 * 1024


class _Out(bytearray):
    """The encoding under way, and how long it may grow."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit


_Encoder = Callable[[Any, _Out, int], None]


class UnkeyableArgumentError(TypeError):
    """An argument has no canonical encoding, so no cache key can be built for the call."""


class _Unkeyable(Exception):
    """Raised deep inside the encoder; turned into an UnkeyableArgumentError with context."""

    def __init__(self, value: Any, reason: str = "") -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path = ""

    def at(self, segment: str) -> _Unkeyable:
        """Return self, located one step further out (``[0]``, ``['k']``, ...)."""
        self.path = segment + self.path
        return self


_length = struct.Struct(">I").pack  # every variable-length part is prefixed with its length
_pack_double = struct.Struct(">d").pack


def _none(value: Any, out: _Out, depth: int) -> None:
    out += b"N"


def _bool(value: bool, out: _Out, depth: int) -> None:
    out += b"T" if value else b"F"


def _int(value: int, out: _Out, depth: int) -> None:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    out += b"i" + _length(len(raw)) + raw


def _float(value: float, out: _Out, depth: int) -> None:
    # Every NaN is one key: NaN payload bits are an accident of how the NaN was produced.
    out += b"f" + _pack_double(math.nan if math.isnan(value) else value)


def _str(value: str, out: _Out, depth: int) -> None:
    raw = value.encode("utf-8", "surrogatepass")
    out += b"s"
    out += _length(len(raw))
    out += raw


def _bytes(value: bytes, out: _Out, depth: int) -> None:
    out += b"b" + _length(len(value)) + value


def _bytearray(value: bytearray, out: _Out, depth: int) -> None:
    out += b"y" + _length(len(value)) + value


def _sequence(tag: bytes) -> _Encoder:
    def encode(value: Any, out: _Out, depth: int) -> None:
        out += tag + _length(len(value))
        for index, item in enumerate(value):
            try:
                _encode(item, out, depth + 1)
            except _Unkeyable as exc:
                raise exc.at(f"[{index}]") from None

    return encode


def _unordered(tag: bytes) -> _Encoder:
    def encode(value: Any, out: _Out, depth: int) -> None:
        # Sorted by encoding, so the key does not depend on hash-seeded iteration order.
        items = []
        size = len(out)
        for item in value:
            try:
                items.append(_encoded(item, depth + 1, out.limit))
            except _Unkeyable as exc:
                raise exc.at("{…}") from None
            size += len(items[-1])
            _check_size(size, out.limit, value)
        items.sort()
        out += tag + _length(len(items)) + b"".join(items)

    return encode


def _dict(value: dict[Any, Any], out: _Out, depth: int) -> None:
    # Equal dicts in any insertion order are one key: pairs sorted by the key's encoding.
    pairs = []
    size = len(out)
    for k, v in value.items():
        try:
            pairs.append((_encoded(k, depth + 1, out.limit), _encoded(v, depth + 1, out.limit)))
        except _Unkeyable as exc:
            raise exc.at(f"[{k!r}]") from None
        size += len(pairs[-1][0]) + len(pairs[-1][1])
        _check_size(size, out.limit, value)
    pairs.sort()
    out += b"d" + _length(len(pairs))
    for encoded_key, encoded_value in pairs:
        out += encoded_key + encoded_value


def _text(tag: bytes, render: Callable[[Any], str]) -> _Encoder:
    def encode(value: Any, out: _Out, depth: int) -> None:
        raw = render(value).encode("utf-8")
        out += tag + _length(len(raw)) + raw

    return encode


def _timezone_name(value: dt.datetime | dt.time) -> str:
    tz = value.tzinfo
    if tz is None:
        return ""
    zone_key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo and friends name their zone
    return f"{type(tz).__qualname__}:{zone_key if zone_key is not None else tz!r}"


def _clock_text(value: dt.datetime | dt.time) -> str:
    return f"{value.isoformat()}|{value.fold}|{_timezone_name(value)}"


def _timedelta(value: dt.timedelta, out: _Out, depth: int) -> None:
    out += b"R" + struct.pack(">qqq", value.days, value.seconds, value.microseconds)


def _uuid(value: uuid.UUID, out: _Out, depth: int) -> None:
    out += b"U" + value.bytes


def _complex(value: complex, out: _Out, depth: int) -> None:
    out += b"c"
    _float(value.real, out, depth)
    _float(value.imag, out, depth)


_ENCODERS: dict[type, _Encoder] = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    complex: _complex,
    str: _str,
    bytes: _bytes,
    bytearray: _bytearray,
    list: _sequence(b"l"),
    tuple: _sequence(b"t"),
    dict: _dict,
    set: _unordered(b"S"),
    frozenset: _unordered(b"Z"),
    dt.datetime: _text(b"D", _clock_text),
    dt.date: _text(b"A", dt.date.isoformat),
    dt.time: _text(b"H", _clock_text),
    dt.timedelta: _timedelta,
    Decimal: _text(b"M", str),
    uuid.UUID: _uuid,
}


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _named(tag: bytes, cls: type, out: _Out) -> None:
    raw = _type_name(cls).encode("utf-8")
    out += tag + _length(len(raw)) + raw


#: The fields each dataclass compares (see _dataclass), read once per class.
_COMPARED: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _attributes(tag: bytes, value: Any, names: tuple[str, ...], out: _Out, depth: int) -> None:
    """Encode ``value`` as its type and its attributes ``names``, each by name."""
    _named(tag, type(value), out)
    out += _length(len(names))
    for name in names:
        _str(name, out, depth)
        try:
            _encode(getattr(value, name), out, depth + 1)
        except _Unkeyable as exc:
            raise exc.at(f".{name}") from None


def _dataclass(value: Any, out: _Out, depth: int) -> None:
    """Encode a dataclass instance by the fields its ``__eq__`` compares, tagged with its type.

    Two instances a dataclass finds equal (same class, equal compared fields) are one key, as
    with ``functools.lru_cache``; frozen or not, as a dict argument is keyed as it is at the call.
    """
    cls = type(value)
    names = _COMPARED.get(cls)
    if names is None:
        params = getattr(cls, "__dataclass_params__", None)
        if params is not None and not params.eq:
            raise _Unkeyable(value, "a dataclass made with eq=False compares by identity: no key says which")
        names = _COMPARED[cls] = tuple(field.name for field in dataclasses.fields(value) if field.compare)
    _attributes(b"a", value, names, out, depth)


def _pydantic_model(value: Any, out: _Out, depth: int) -> None:
    """Encode a pydantic (v2) model by what its ``__eq__`` compares, tagged with its type.

    Its fields, then its extra fields and private attributes (None where its class has none):
    models a request handler passes on (FastAPI's) key by value, as frozen ones do in lru_cache.
    """
    cls = type(value)
    names = _COMPARED.get(cls)
    if names is None:
        names = _COMPARED[cls] = tuple(cls.model_fields)  # (read on the class, as pydantic asks)
    _attributes(b"P", value, names, out, depth)
    for part in ("__pydantic_extra__", "__pydantic_private__"):
        try:
            _encode(getattr(value, part, None), out, depth + 1)
        except _Unkeyable as exc:
            raise exc.at(f".{part}") from None


def _encode_other(value: Any, out: _Out, depth: int) -> None:
    """Encode what the exact-type table does not know: hooks, enums, classes, records, subclasses."""
    cls = type(value)
    hook = getattr(cls, "__cache_key__", None)
    if hook is not None and not isinstance(value, type):
        _named(b"o", cls, out)
        try:
            _encode(hook(value), out, depth + 1)
        except _Unkeyable as exc:
            raise exc.at(".__cache_key__()") from None
    elif isinstance(value, enum.Enum):
        _named(b"e", cls, out)
        _str(value.name, out, depth + 1)
    elif isinstance(value, type):
        _named(b"k", value, out)
    elif isinstance(value, pathlib.PurePath):
        _named(b"p", cls, out)
        _str(str(value), out, depth)
    elif dataclasses.is_dataclass(cls):
        _dataclass(value, out, depth)
    elif hasattr(cls, "__pydantic_validator__") and hasattr(cls, "model_fields"):  # pydantic 2
        _pydantic_model(value, out, depth)
    else:
        base = next((b for b in cls.__mro__[1:] if b in _ENCODERS), None)
        if base is None:
            raise _Unkeyable(value)
        # A subclass of a known type (a str-based id, an OrderedDict) keys as its base value,
        # tagged with its own type so that distinct types stay distinct keys.
        _named(b"x", cls, out)
        _ENCODERS[base](value, out, depth + 1)


def _check_size(size: int, limit: int, value: Any) -> None:
    if size > limit:
        raise _Unkeyable(value, f"its key would be longer than max_key_bytes ({limit:,} bytes)")


def _encode(value: Any, out: _Out, depth: int) -> None:
    if len(out) > out.limit:
        _check_size(len(out), out.limit, value)
    if depth > _MAX_DEPTH:
        raise _Unkeyable(value, f"nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        encoder(value, out, depth)
    else:
        _encode_other(value, out, depth)


def _encoded(value: Any, depth: int, limit: int) -> bytes:
    out = _Out(limit)
    _encode(value, out, depth)
    return bytes(out)


def canonical_bytes(
    values: tuple[Any, ...], names: tuple[str, ...], function: str, limit: int = DEFAULT_MAX_KEY_BYTES
) -> bytes:
    """Return the canonical encoding of a call's key values, one per name in ``names``.

    Raise UnkeyableArgumentError for a value that has none, or once it passes ``limit`` bytes.
    """
    out = _Out(limit)
    for name, value in zip(names, values, strict=True):
        try:
            _encode(value, out, 0)
            _check_size(len(out), limit, value)
        except _Unkeyable as exc:
            raise _explain(exc, name, function) from None
    return bytes(out)


def encoding_of(value: Any, limit: int = DEFAULT_MAX_KEY_BYTES) -> tuple[bytes | None, str]:
    """Return one value's canonical encoding, or None and why it has none."""
    out = _Out(limit)
    try:
        _encode(value, out, 0)
        _check_size(len(out), limit, value)
    except _Unkeyable as exc:
        return None, (f"at {exc.path}: " if exc.path else "") + _reason(exc)
    return bytes(out), ""


def _reason(exc: _Unkeyable) -> str:
    return exc.reason or f"a {_type_name(type(exc.value))} has no canonical encoding"


def _explain(exc: _Unkeyable, name: str, function: str) -> UnkeyableArgumentError:
    path = exc.path if len(exc.path) <= 60 else exc.path[:59] + "…"
    where = f"argument {name!r}" + (f" (at {name}{path})" if path else "")
    what = _reason(exc)
    return UnkeyableArgumentError(
        f"tiered_cache: cannot build a cache key for {function}(): {where}: {what}. "
        f"Pass key=... to build the key yourself, ignore=({name!r},) to leave it out of the key, "
        f"or give the type a __cache_key__() method returning a keyable value."
    )


def digest(canonical: bytes, prefix: bytes, secret: bytes | None = None) -> str:
    """Return the hex digest naming a call in Redis; keyed by ``secret`` when one is given."""
    hasher = hashlib.blake2b(prefix, digest_size=DIGEST_LENGTH // 2, key=secret or b"")
    hasher.update(canonical)
    return hasher.hexdigest()
