"""One spec per setting: its check, how its ``TIERCACHE_*`` variable reads, how it shows.

``tiered_cache``'s ``Options``, ``configure()``'s ``Settings`` and the adapters' settings
declare each field once, ``setting(default, KIND)``; checking what a caller passed, reading the
environment, ``repr`` and ``cache_parameters()`` all go by that declaration, so a new field is
one line and cannot be checked in one place and forgotten in another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiercache._core.checks import (
    check_bool,
    check_fraction,
    check_int,
    check_namespace,
    check_optional_size,
    check_seconds,
    check_size,
    parse_flag,
    parse_number,
    parse_optional_size,
)
from tiercache._l1.lru import L1_POLICIES
from tiercache._l2.signing import signing_keys
from tiercache._l2.urls import check_url, redact_url

__all__ = [
    "COUNT",
    "DB",
    "FLAG",
    "FRACTION",
    "NAMESPACE",
    "OPTIONAL_SIGNING_KEYS",
    "OPTIONAL_SIZE",
    "OPTIONAL_TEXT",
    "OPTIONAL_URL",
    "POLICY",
    "PORT",
    "SECONDS",
    "SIGNING_KEYS",
    "SIGNING_TEXT",
    "SIZE",
    "TEXT",
    "URL",
    "Check",
    "Kind",
    "check_fields",
    "checked",
    "from_environment",
    "represent",
    "setting",
    "shown",
]

#: A check: ``(value, field name, owner) -> the value as kept``; raises naming owner and field.
Check = Callable[[Any, str, str], Any]
#: A parser: ``(text, variable, field name, owner) -> a value for the check``.
Parse = Callable[[str, str, str, str], Any]


def _text(raw: str, variable: str, name: str, owner: str) -> str:
    return raw


def _number(raw: str, variable: str, name: str, owner: str) -> float:
    return parse_number(raw, variable, owner)


def _whole_number(raw: str, variable: str, name: str, owner: str) -> int:
    try:
        return int(raw)
    except ValueError:
        number = parse_number(raw, variable, owner)  # (raises if it is no number at all)
    if not number.is_integer():
        raise ValueError(f"{owner}: {variable}={raw!r} is not a whole number")
    return int(number)


@dataclass(frozen=True)
class Kind:
    """How one kind of setting is checked, read from an environment variable and shown."""

    check: Check
    parse: Parse = _text
    #: What ``repr`` shows of a value (a URL without its password, how many keys there are).
    show: Callable[[Any], Any] = lambda value: value


def _integer(low: int, high: int) -> Kind:
    return Kind(lambda value, name, owner: check_int(value, name, owner, low, high), _whole_number)


def _text_check(*, optional: bool) -> Check:
    def check(value: Any, name: str, owner: str) -> str | None:
        if (value is not None or not optional) and (not isinstance(value, str) or not value):
            raise TypeError(f"{owner}: {name} must be a non-empty str, not {value!r}")
        return value

    return check


def _policy(value: Any, name: str, owner: str) -> str:
    if value not in L1_POLICIES:
        raise ValueError(f"{owner}: {name} must be one of {sorted(L1_POLICIES)}, not {value!r}")
    return str(value)


def _signing_text(value: Any, name: str, owner: str) -> str | None:
    # Kept as written (settings compare and show it as given), checked as the keys it spells.
    _text_check(optional=True)(value, name, owner)
    if value is not None:
        signing_keys(value, owner)
    return value  # type: ignore[no-any-return]


def _shown_url(url: str | None) -> str | None:
    return None if url is None else redact_url(url)


FLAG: Final = Kind(
    check_bool,
    lambda raw, variable, name, owner: parse_flag(raw, variable, owner),
)
SECONDS: Final = Kind(check_seconds, _number)
FRACTION: Final = Kind(check_fraction, _number)
SIZE: Final = Kind(check_size, _number)
#: A size, or None for off (``off``/``none`` in a variable).
OPTIONAL_SIZE: Final = Kind(check_optional_size, parse_optional_size)
COUNT: Final = _integer(1, 2**31)
PORT: Final = _integer(1, 65535)
DB: Final = _integer(0, 2**31)
TEXT: Final = Kind(_text_check(optional=False))
OPTIONAL_TEXT: Final = Kind(_text_check(optional=True))
NAMESPACE: Final = Kind(lambda value, name, owner: check_namespace(value, owner))
POLICY: Final = Kind(_policy)
URL: Final = Kind(lambda value, name, owner: check_url(value, owner, name), show=redact_url)
OPTIONAL_URL: Final = Kind(
    lambda value, name, owner: None if value is None else check_url(value, owner, name), show=_shown_url
)
#: Signing keys as bytes, newest first (() or None: no signing); a variable lists them with commas.
SIGNING_KEYS: Final = Kind(
    lambda value, name, owner: () if value is None or value == () else signing_keys(value, owner),
    show=lambda keys: f"<{len(keys)} key(s)>",
)
#: Signing keys as bytes, or None (the process setting: a function's ``signing_key``).
OPTIONAL_SIGNING_KEYS: Final = Kind(
    lambda value, name, owner: None if value is None else signing_keys(value, owner),
    show=lambda keys: None if keys is None else f"<{len(keys)} key(s)>",
)
#: Signing keys as the text that spells them (the adapters' ``signing_key``).
SIGNING_TEXT: Final = Kind(_signing_text)


def setting(
    default: Any,
    kind: Kind | None,
    *,
    variable: str | None = "",
    secret: bool = False,
    shown: bool = True,
    compare: bool = True,
) -> Any:
    """Declare a settings field: its default and kind (None: taken as given, never checked).

    ``variable`` names its environment variable (default ``TIERCACHE_<NAME>``; None: none);
    a ``secret`` is shown as ``'***'``; ``shown=False`` leaves it out of ``cache_parameters()``.
    """
    metadata = {"kind": kind, "variable": variable, "secret": secret, "shown": shown}
    return dataclasses.field(default=default, repr=not secret, compare=compare, metadata=metadata)


def checked(cls: type, given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Return ``given`` checked against ``cls``'s fields; an unknown name raises TypeError."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = set(given) - set(fields)
    if unknown:
        raise TypeError(f"{owner}: unknown option(s) {sorted(unknown)}; the options are {sorted(fields)}")
    found = {}
    for name, value in given.items():
        kind = fields[name].metadata.get("kind")
        found[name] = value if kind is None else kind.check(value, name, owner)
    return found


def check_fields(instance: Any) -> None:
    """Check every field of a frozen settings dataclass in place (its ``__post_init__``)."""
    given = {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}
    for name, kept in checked(type(instance), given, type(instance).__name__).items():
        if kept is not given[name]:  # a timedelta kept as seconds, a list of keys as a tuple
            object.__setattr__(instance, name, kept)


def from_environment(cls: type, environ: Mapping[str, str], owner: str) -> dict[str, Any]:
    """Return the fields of ``cls`` that ``TIERCACHE_*`` variables in ``environ`` set, checked."""
    found = {}
    for field in dataclasses.fields(cls):
        kind, variable = field.metadata.get("kind"), field.metadata.get("variable")
        if kind is None or variable is None:
            continue
        variable = variable or f"TIERCACHE_{field.name.upper()}"
        raw = environ.get(variable)
        if raw:
            found[field.name] = kind.check(kind.parse(raw, variable, field.name, owner), field.name, owner)
    return found


def represent(instance: Any) -> str:
    """Return ``ClassName(field=value, ...)`` with secrets as ``'***'`` and URLs without passwords."""
    parts = []
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        kind = field.metadata.get("kind")
        if field.metadata.get("secret") and value is not None:
            value = "***"
        elif kind is not None:
            value = kind.show(value)
        parts.append(f"{field.name}={value!r}")
    return f"{type(instance).__name__}({', '.join(parts)})"


def shown(instance: Any) -> dict[str, Any]:
    """Return the fields of ``instance`` declared shown (what ``cache_parameters()`` reports)."""
    return {
        f.name: getattr(instance, f.name)
        for f in dataclasses.fields(instance)
        if f.metadata.get("shown", True)
    }
