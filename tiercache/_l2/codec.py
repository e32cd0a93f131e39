"""L2 values: msgpack with our own closed set of extension types (the envelope is ``envelope``).

The only module that imports msgpack. Decoding never imports, evaluates or unpickles anything a
payload names: an extension code or registered type name we do not know is a decode error. The
one exception is asked for by name: ``decode_value(pickled=True)`` unpickles, and callers pass
it only for bytes whose signature verified, in caches that chose it (``pickle_signed_values``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import pickle
import threading
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import msgpack

__all__ = [
    "DecodeError",
    "UnencodableError",
    "decode_value",
    "encode_pickled",
    "encode_value",
    "register_type",
]


class DecodeError(ValueError):
    """A payload is not one we wrote: foreign bytes, truncated, or from a newer format."""


class UnencodableError(TypeError):
    """A value holds a type the codec cannot represent; it may still live in L1."""

    def __init__(self, type_name: str, reason: str = "") -> None:
        super().__init__(reason or f"values of type {type_name} cannot be stored in L2")
        self.type_name = type_name
        self.reason = reason  # when the type is supported and this value is not: why


# Extension codes. Never renumber: they are on the wire in every L2 entry.
_TUPLE, _SET, _FROZENSET, _BIGINT = 1, 2, 3, 4
_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _REGISTERED = 5, 6, 7, 8, 9, 10, 11
#: A whole value as pickle: written and read only by caches that sign (see encode_pickled); no
#: decoder is registered for it, so decode_value() refuses it as an unknown extension.
_PICKLED: Final = 12

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class _Registration:
    cls: type
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_registered_by_type: dict[type, _Registration] = {}
# Registered with subclasses=True: looked up along a foreign type's MRO, only once it is foreign.
_registered_bases: dict[type, _Registration] = {}
_registered_by_name: dict[str, _Registration] = {}
_registry_lock = threading.Lock()


def register_type(
    cls: type,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
    *,
    name: str | None = None,
    subclasses: bool = False,
) -> None:
    """Let values of ``cls`` be stored in L2.

    A dataclass needs neither ``encode`` nor ``decode``: it is stored as the fields its
    ``__init__`` takes, by name (each a value the codec supports, registered dataclasses
    included), and rebuilt by calling the class with them, so an entry written before a field
    with a default was added still reads. Nor does a pydantic (v2) model: it is stored as its
    JSON (``model_dump_json()``) and rebuilt by validating it (``model_validate_json()``), so
    what pydantic can write, it reads back; private attributes are not stored.

    Otherwise ``encode(obj)`` must return a value the codec already supports (which may contain
    other registered types; a str or bytes subclass is stored as a plain str or bytes, so
    ``register_type(SafeString, str, mark_safe)`` works); ``decode(that_value)`` must rebuild an
    equal ``cls`` instance. The type is recorded on the wire by ``name`` (default
    ``"module.QualName"``), so every process that reads these values must register the same
    name; an unknown name reads as a miss, never an import. With ``subclasses``, instances of
    subclasses of ``cls`` that are not registered themselves are encoded the same way (and
    decoded as ``decode`` makes them).
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_type(): cls must be a class, not {cls!r}")
    if encode is None and decode is None and dataclasses.is_dataclass(cls):
        encode, decode = _dataclass_codec(cls)
    elif encode is None and decode is None and hasattr(cls, "__pydantic_validator__"):
        encode, decode = _model_codec(cls)
    if not callable(encode) or not callable(decode):
        raise TypeError(
            "register_type(): encode and decode must be callables "
            "(both may be left out for a dataclass or a pydantic model)"
        )
    name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
    registration = _Registration(cls, name, encode, decode)
    with _registry_lock:
        _registered_by_type[cls] = registration
        _registered_by_name[name] = registration
        if subclasses:
            _registered_bases[cls] = registration


def _tz_spec(tz: dt.tzinfo | None) -> Any:
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        default_name = dt.timezone(offset).tzname(None)
        return [offset.days, offset.seconds, offset.microseconds, None if name == default_name else name]
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return tz.key
    raise UnencodableError(f"tzinfo {type(tz).__module__}.{type(tz).__qualname__}")


def _tz_from_spec(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return zoneinfo.ZoneInfo(spec)
    days, seconds, microseconds, name = spec
    offset = dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    return dt.timezone(offset) if name is None else dt.timezone(offset, name)


# Bounds on what a payload may make us build, whoever wrote it (see docs/security.md):
#: Extension values (a tuple in a tuple...) nest at most this deep. An unpackb() frame takes
#: about 40 KB of C stack (its state is an array of 1,024 levels); an Unpacker keeps its state
#: on the heap, about 2 KB of C stack a level. The payload is decoded by unpackb(), and so is an
#: extension value of the first level that turns out to hold no other (the usual tuple in a
#: list: nothing nests under it); any other by an Unpacker of its own. So decoding takes at most about 110 KB
#: of C stack, within musl's 128 KiB thread stacks (it took 2 x 40 + 30 x 2 KB before, and a
#: 220-byte planted value crashed such a thread).
MAX_NESTING: Final = 32
# The deepest extension level whose contents may be decoded by unpackb().
_UNPACKB_LEVELS: Final = 1
#: Lists and maps inside one extension value nest at most this deep (the top level is held to
#: msgpack's own 1,024), so a value nests at most 1,024 + 32 * 32 levels in all.
MAX_INNER_DEPTH: Final = 32
#: Containers (lists, maps, extension values) one payload may make; an 8 MiB payload of empty
#: lists would otherwise cost some 600 MB.
MAX_OBJECTS: Final = 1 << 18
#: Keys whose hashes can be made to collide at will (big ints, tuples: not str and bytes, whose
#: hashes are keyed per process, nor 64-bit ints, floats, None and bools, which share a hash with
#: a dozen others at most) one payload may put in maps and sets, all of them together: 32k
#: crafted big ints would take seconds to hash into one map, and 63 maps of 4,095 each (under a
#: bound per map) took 6 s.
MAX_HASHED: Final = 4096
#: Items (of lists and maps, all together) one payload may make. A payload's bytes bound them
#: from above, so only one longer than this is counted: 8 MiB of two-character strings (746
#: bytes of zstd) made some 200 MB of objects. Each list and map is refused from its header
#: when longer, so no more than twice this many are ever built.
MAX_ITEMS: Final = 1 << 19
_SCALAR_KEYS: Final = frozenset({str, bytes, int, float, bool, type(None)})
# Every byte that can start a map, an array or an extension value; counting them bounds the
# containers a payload can hold (from above: the same bytes occur inside strings and numbers).
_NOT_CONTAINERS: Final = bytes(
    b
    for b in range(256)
    if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF or 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8)
)


# Every byte that can start an extension value: keys that can collide are ours (tuples, big
# ints...), so an encoding with fewer such bytes than MAX_HASHED cannot hold too many.
_NOT_EXTENSIONS: Final = bytes(b for b in range(256) if not (0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8))


class _Nested(Exception):
    """An extension value inside one decoded by unpackb(): decode that one again, on the heap."""


def _nested(code: int, data: bytes) -> Any:
    raise _Nested


class _MapKeyNotStrict(Exception):
    """A map key that is not str or bytes, or a set of keys that can collide: decode again, counted."""


def _pack_inner(value: Any, depth: int = 0) -> bytes:
    packed: bytes = msgpack.packb(value, default=_DEFAULTS[depth], strict_types=True, use_bin_type=True)
    return packed


def _unpack_inner(data: bytes, depth: int) -> Any:
    """Decode one extension value's contents (strict map keys), within the C stack's bounds.

    Contents of the first level go through unpackb(), the fastest way (about 40 KB of C stack),
    unless they hold an extension value: then, as any deeper level, through an Unpacker of their
    own, whose state lives on the heap (about 2 KB a level). See MAX_NESTING.
    """
    try:
        if depth <= _UNPACKB_LEVELS:
            try:
                return _within_depth(msgpack.unpackb(data, ext_hook=_nested, raw=False), data)
            except _Nested:
                pass  # (it holds an extension value: an Unpacker decodes it, and those under it)
        unpacker = msgpack.Unpacker(ext_hook=_HOOKS[depth], raw=False, max_buffer_size=max(len(data), 1))
        return _unpack_one(unpacker, data)
    except ValueError as exc:
        if "map key" in str(exc):
            raise _MapKeyNotStrict from None
        raise


def _unpack_one(unpacker: Any, data: bytes) -> Any:
    unpacker.feed(data)
    value = unpacker.unpack()
    if unpacker.tell() != len(data):
        raise DecodeError("extension value with trailing bytes")
    return _within_depth(value, data)


def _within_depth(value: Any, data: bytes) -> Any:
    # Nesting takes a container byte a level: most contents are too short, or hold too few such
    # bytes, to nest too deep, and need no walk.
    if (
        len(data) > MAX_INNER_DEPTH
        and type(value) is list
        and len(data.translate(None, _NOT_CONTAINERS)) > MAX_INNER_DEPTH
        and not _shallow(value, MAX_INNER_DEPTH)
    ):
        raise DecodeError(f"lists or maps nested more than {MAX_INNER_DEPTH} deep in an extension value")
    return value


def _shallow(value: list[Any], limit: int) -> bool:
    """Return whether lists and maps nest at most ``limit`` deep in ``value`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        items = node.values() if type(node) is dict else node
        stack.extend((item, depth + 1) for item in items if type(item) is list or type(item) is dict)
    return True


def _safe_set(items: list[Any]) -> list[Any]:
    """Return ``items`` if no key of theirs can be made to collide; else have them counted."""
    if any(_collides_at_will(item) for item in items):
        raise _MapKeyNotStrict  # (decoded again by _Counted, which bounds such keys in all)
    return items


def _collides_at_will(item: Any) -> bool:
    # An int's hash is the int modulo 2**61 - 1: in msgpack's 64-bit range a dozen share one,
    # beyond it (our big-int extension) as many as anyone likes.
    if type(item) is int:
        return not _INT64_MIN <= item <= _UINT64_MAX
    return type(item) not in _SCALAR_KEYS


def _ext(code: int, inner: Callable[[Any], Any]) -> Callable[[Any, int], msgpack.ExtType]:
    return lambda obj, depth: msgpack.ExtType(code, _pack_inner(inner(obj), depth))


def _encode_datetime(obj: dt.datetime) -> list[Any]:
    fields = [obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.microsecond]
    return [*fields, obj.fold, _tz_spec(obj.tzinfo)]


def _encode_time(obj: dt.time) -> list[Any]:
    return [obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold, _tz_spec(obj.tzinfo)]


def _decode_datetime(fields: list[Any]) -> dt.datetime:
    year, month, day, hour, minute, second, microsecond, fold, tz = fields
    tzinfo = _tz_from_spec(tz)
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tzinfo, fold=fold)


def _decode_time(fields: list[Any]) -> dt.time:
    hour, minute, second, microsecond, fold, tz = fields
    return dt.time(hour, minute, second, microsecond, tzinfo=_tz_from_spec(tz), fold=fold)


def _dataclass_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Return the encode and decode of a dataclass registered without them (see register_type)."""
    names = tuple(field.name for field in dataclasses.fields(cls) if field.init)
    # An init-only argument (InitVar) is no field: nothing stores it, so no read could rebuild
    # the value. Said now, not as a decode error on every read.
    needed = [
        parameter.name
        for parameter in inspect.signature(cls).parameters.values()
        if parameter.name not in names
        and parameter.default is parameter.empty
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    if needed:
        raise TypeError(
            f"register_type(): {cls.__qualname__}() needs {', '.join(needed)}, which it does not keep "
            "as fields (InitVar): give encode and decode"
        )

    def encode(value: Any) -> dict[str, Any]:
        return {name: getattr(value, name) for name in names}

    def decode(fields: Any) -> Any:
        if type(fields) is not dict:  # (what a foreign writer put under our type's name)
            raise DecodeError(
                f"a {cls.__qualname__} is stored as its fields by name, not as {type(fields).__name__}"
            )
        return cls(**fields)

    return encode, decode


def _model_codec(cls: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Return the encode and decode of a pydantic model registered without them (see register_type)."""

    def encode(value: Any) -> str:
        return str(value.model_dump_json())  # (pydantic's own errors are ValueErrors: unencodable)

    def decode(text: Any) -> Any:
        if type(text) is not str:  # (what a foreign writer put under our type's name)
            raise DecodeError(f"a {cls.__qualname__} is stored as its JSON, not as {type(text).__name__}")
        return cls.model_validate_json(text)  # (invalid: a ValueError, a decode error)

    return encode, decode


def _decode_registered(fields: list[Any]) -> Any:
    name, encoded = fields
    registration = _registered_by_name.get(name)
    if registration is None:
        raise DecodeError(f"registered type {name!r} is not registered in this process")
    return registration.decode(encoded)


# By exact type (strict types: a subclass is foreign unless registered itself). Each takes the
# nesting depth its own contents are packed at.
_EXT_ENCODERS: dict[type, Callable[[Any, int], msgpack.ExtType]] = {
    tuple: _ext(_TUPLE, list),
    set: _ext(_SET, list),
    frozenset: _ext(_FROZENSET, list),
    # Only ints outside msgpack's 64-bit range get here.
    int: lambda obj, _: msgpack.ExtType(_BIGINT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True)),
    dt.datetime: _ext(_DATETIME, _encode_datetime),
    dt.date: _ext(_DATE, dt.date.toordinal),
    dt.time: _ext(_TIME, _encode_time),
    dt.timedelta: _ext(_TIMEDELTA, lambda obj: [obj.days, obj.seconds, obj.microseconds]),
    Decimal: lambda obj, _: msgpack.ExtType(_DECIMAL, str(obj).encode("ascii")),
    uuid.UUID: lambda obj, _: msgpack.ExtType(_UUID, obj.bytes),
}

# By extension code: raw bytes for the few that keep them, a msgpack value (unpacked at the
# given depth) for the rest.
_EXT_DECODERS: dict[int, Callable[[bytes, int], Any]] = {
    _TUPLE: lambda data, depth: tuple(_unpack_inner(data, depth)),
    _SET: lambda data, depth: set(_safe_set(_unpack_inner(data, depth))),
    _FROZENSET: lambda data, depth: frozenset(_safe_set(_unpack_inner(data, depth))),
    _BIGINT: lambda data, _: int.from_bytes(data, "big", signed=True),
    _DATETIME: lambda data, depth: _decode_datetime(_unpack_inner(data, depth)),
    _DATE: lambda data, depth: dt.date.fromordinal(_unpack_inner(data, depth)),
    _TIME: lambda data, depth: _decode_time(_unpack_inner(data, depth)),
    _TIMEDELTA: lambda data, depth: dt.timedelta(*_unpack_inner(data, depth)),
    _DECIMAL: lambda data, _: Decimal(data.decode("ascii")),
    _UUID: lambda data, _: uuid.UUID(bytes=data),
    _REGISTERED: lambda data, depth: _decode_registered(_unpack_inner(data, depth)),
}


def _registered_base(kind: type) -> _Registration | None:
    """Return the registration of a base of ``kind`` registered with its subclasses, if any."""
    if _registered_bases:
        for base in kind.__mro__[1:]:
            registration = _registered_bases.get(base)
            if registration is not None:
                return registration
    return None


def _plain(encoded: Any, of: type) -> Any:
    """Return what the encoder of ``of`` returned; a str or bytes subclass as a plain str or bytes.

    ``register_type(SafeString, str, mark_safe)`` reads as it should: but str() of a str
    subclass may be the very object (SafeString's is), which the codec would take for another
    SafeString to encode, again and again. (Another registered type is encoded as itself.)
    """
    kind = type(encoded)
    if kind is str or kind is bytes or (kind is not of and kind in _registered_by_type):
        return encoded
    if isinstance(encoded, str):
        return str.__str__(encoded)  # (a plain str copy of a subclass's)
    if isinstance(encoded, bytes):
        return bytes(encoded)
    return encoded


def _default_at(depth: int) -> Callable[[Any], msgpack.ExtType]:
    def default(obj: Any) -> msgpack.ExtType:
        """Encode what msgpack does not know natively, or refuse it."""
        if depth >= MAX_NESTING:
            raise UnencodableError(type(obj).__qualname__, f"values nested more than {MAX_NESTING} deep")
        encoder = _EXT_ENCODERS.get(type(obj))
        if encoder is not None:
            return encoder(obj, depth + 1)
        registration = _registered_by_type.get(type(obj)) or _registered_base(type(obj))
        if registration is not None:
            encoded = _plain(registration.encode(obj), type(obj))
            return msgpack.ExtType(_REGISTERED, _pack_inner([registration.name, encoded], depth + 1))
        raise UnencodableError(f"{type(obj).__module__}.{type(obj).__qualname__}")

    return default


def _hook_at(depth: int) -> Callable[[int, bytes], Any]:
    def hook(code: int, data: bytes) -> Any:
        decoder = _EXT_DECODERS.get(code)
        if decoder is None:
            raise DecodeError(f"unknown extension code {code}")
        if depth >= MAX_NESTING:
            raise DecodeError(f"extension values nested more than {MAX_NESTING} deep")
        return decoder(data, depth + 1)

    return hook


_DEFAULTS = [_default_at(depth) for depth in range(MAX_NESTING + 1)]
_HOOKS = [_hook_at(depth) for depth in range(MAX_NESTING + 1)]


def _may_pass_bounds(packed: bytes) -> bool:
    """Whether ``packed`` may hold more items, or keys that can collide, than a reader takes."""
    return len(packed) > MAX_ITEMS or (
        len(packed) > MAX_HASHED and len(packed.translate(None, _NOT_EXTENSIONS)) > MAX_HASHED
    )


def encode_value(value: Any) -> bytes:
    """Return the msgpack encoding of ``value``; raise UnencodableError naming a foreign type."""
    try:
        packed = _pack_inner(value)
    except UnencodableError:
        raise
    except UnicodeEncodeError as exc:
        # str is supported; this one is not UTF-8 (msgpack's str must be), wherever it sits.
        bad = exc.object[exc.start : exc.end]
        raise UnencodableError(
            "str", f"a str holds a lone surrogate ({bad!r}), which UTF-8 (msgpack's str) cannot encode"
        ) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnencodableError(type(value).__qualname__) from exc
    if _may_pass_bounds(packed):  # then decode it once: a value readers refuse stays in L1
        try:
            decode_value(packed)
        except DecodeError as exc:
            raise UnencodableError(type(value).__qualname__, f"past what a reader accepts: {exc}") from None
    return packed


def encode_pickled(value: Any) -> bytes:
    """Return ``value`` pickled, in an extension value only ``decode_value(pickled=True)`` opens.

    For values msgpack cannot carry (a Django model instance, a QuerySet), in caches that sign
    what they write and verify before they decode: unpickling runs code the bytes name, so only
    bytes a holder of the signing key wrote may be. Raises what pickle raises.
    """
    packed: bytes = msgpack.packb(msgpack.ExtType(_PICKLED, pickle.dumps(value, pickle.HIGHEST_PROTOCOL)))
    return packed


def _pickled_body(body: bytes | memoryview) -> memoryview | None:
    """Return the pickle inside ``body`` if ``body`` is one value of encode_pickled()'s, else None."""
    view = memoryview(body)
    if len(view) < 3 or view[0] not in (0xC7, 0xC8, 0xC9):
        return None  # (pickles are longer than the fixed-size extension formats hold)
    size = 1 << (view[0] - 0xC7)
    start = 2 + size
    if len(view) <= start or view[start - 1] != _PICKLED:
        return None
    length = int.from_bytes(view[1 : 1 + size], "big")
    return view[start:] if len(view) - start == length else None


def decode_value(body: bytes | memoryview, *, pickled: bool = False) -> Any:
    """Return the value encoded in ``body``; raise DecodeError for anything else.

    Whatever the bytes, decoding stays within the bounds above (nesting, containers, maps and
    sets whose keys could collide) and a small C stack; past them the payload is refused.
    ``pickled``: also open encode_pickled()'s values; only for bytes whose signature verified.
    """
    if pickled and (inner := _pickled_body(body)) is not None:
        try:
            return pickle.loads(inner)  # noqa: S301 - bytes a holder of the signing key wrote
        except Exception as exc:  # (a class gone since it was written, say)
            raise DecodeError(f"unreadable pickled value: {type(exc).__name__}: {exc}") from None
    try:
        if len(body) > MAX_ITEMS or (
            len(body) > MAX_OBJECTS and len(bytes(body).translate(None, _NOT_CONTAINERS)) > MAX_OBJECTS
        ):
            # Possibly more items or containers than allowed: count them (faster while map keys
            # are str or bytes, as they mostly are).
            try:
                return _Counted(strict=True).decode(body)
            except ValueError as exc:
                if "map key" not in str(exc):
                    raise
            except _MapKeyNotStrict:
                pass
            return _Counted().decode(body)
        try:  # the common case, at msgpack's speed: map keys are str or bytes
            return msgpack.unpackb(body, ext_hook=_HOOKS[0], raw=False)
        except ValueError as exc:
            if "map key" not in str(exc):
                raise
        except _MapKeyNotStrict:
            pass
        return _Counted().decode(body)  # other map keys: check them as maps are built
    except DecodeError:
        raise
    except Exception as exc:  # msgpack, UnicodeDecodeError, hashing errors, bad ext payloads
        raise DecodeError(f"undecodable payload: {type(exc).__name__}: {exc}") from None


class _Counted:
    """A decoding that counts containers and items as it builds them (the slow road).

    ``strict``: map keys must be str or bytes (msgpack refuses others), so maps are counted as
    they come, built by msgpack; else each map's keys are checked before it is built.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.objects = 0
        self.items = 0
        self.hashed = 0  # keys that can be made to collide, in every map and set so far
        self.depth = 0
        self.strict = strict

    def decode(self, body: bytes | memoryview) -> Any:
        return msgpack.unpackb(body, **self._options())

    def _options(self) -> dict[str, Any]:
        maps = {"object_hook": self._built_map} if self.strict else {"object_pairs_hook": self._map}
        return {
            "ext_hook": self._ext,
            "list_hook": self._list,
            **maps,
            "raw": False,
            "strict_map_key": self.strict,
            "max_array_len": MAX_ITEMS,  # (refused from the header, before any item is built)
            "max_map_len": MAX_ITEMS,
        }

    def _built_map(self, mapping: dict[Any, Any]) -> dict[Any, Any]:
        self._count()
        self._count_items(len(mapping))
        return mapping

    def _count(self) -> None:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise DecodeError(f"a payload of more than {MAX_OBJECTS} lists, maps and extension values")

    def _count_items(self, count: int) -> None:
        self.items += count
        if self.items > MAX_ITEMS:
            raise DecodeError(f"a payload of more than {MAX_ITEMS} items in its lists and maps")

    def _list(self, items: list[Any]) -> list[Any]:
        self._count()
        self._count_items(len(items))
        return items

    def _map(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        self._count()
        self._count_items(len(pairs))
        self._count_hashed([key for key, _ in pairs])
        return dict(pairs)

    def _count_hashed(self, keys: list[Any]) -> list[Any]:
        self.hashed += sum(1 for key in keys if _collides_at_will(key))
        if self.hashed > MAX_HASHED:
            raise DecodeError(
                f"a payload of more than {MAX_HASHED} map or set keys of types whose hashes can be "
                "made to collide"
            )
        return keys

    def _ext(self, code: int, data: bytes) -> Any:
        self._count()
        decoder = _EXT_DECODERS.get(code)
        if decoder is None:
            raise DecodeError(f"unknown extension code {code}")
        if self.depth >= MAX_NESTING:
            raise DecodeError(f"extension values nested more than {MAX_NESTING} deep")
        if code not in _CONTAINER_CODES:
            return decoder(data, self.depth + 1)
        self.depth += 1
        try:
            unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1), **self._options())
            contents = _unpack_one(unpacker, data)
            if code in _SETS:
                self._count_hashed(contents)
            return _CONTAINER_CODES[code](contents)
        finally:
            self.depth -= 1


_SETS: Final = frozenset({_SET, _FROZENSET})
# The extension values whose contents are msgpack, decoded by _Counted with its own hooks.
_CONTAINER_CODES: dict[int, Callable[[Any], Any]] = {
    _TUPLE: tuple,
    _SET: set,
    _FROZENSET: frozenset,
    _DATETIME: _decode_datetime,
    _DATE: dt.date.fromordinal,
    _TIME: _decode_time,
    _TIMEDELTA: lambda fields: dt.timedelta(*fields),
    _REGISTERED: _decode_registered,
}
