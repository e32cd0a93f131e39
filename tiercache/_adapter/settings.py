"""Settings of the cache adapters: the seed's fields and defaults, checked when constructed."""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tiercache._core.checks import (
    DEFAULT_MAX_VALUE_BYTES,
    as_seconds,
    check_bool,
    check_fraction,
    check_int,
    check_namespace,
    check_optional_size,
    check_seconds,
    parse_flag,
    parse_number,
    parse_optional_size,
)
from tiercache._l1.lru import L1_POLICIES
from tiercache._l2.compression import DEFAULT_COMPRESS_MIN_BYTES
from tiercache._l2.endpoint import DEFAULT_MAX_CONNECTIONS
from tiercache._l2.signing import signing_keys
from tiercache._l2.urls import check_url, redact_url

__all__ = ["MemoryCacheSettings", "MultiTierCacheSettings"]


def _check_field(owner: str, name: str, value: Any, kind: str) -> None:
    """Check one field against its kind; raise naming the settings class and the field."""
    if kind == "bool":
        check_bool(value, name, owner)
    elif kind in _INT_RANGES:
        check_int(value, name, owner, *_INT_RANGES[kind])
    elif kind == "optional size":
        check_optional_size(value, name, owner)
    elif kind == "seconds":
        check_seconds(value, name, owner)
    elif kind == "fraction":
        check_fraction(value, name, owner)
    elif kind == "policy" and value not in L1_POLICIES:
        raise ValueError(f"{owner}: {name} must be one of {sorted(L1_POLICIES)}, not {value!r}")
    elif (kind == "text" or (kind == "optional text" and value is not None)) and (
        not isinstance(value, str) or not value
    ):
        raise TypeError(f"{owner}: {name} must be a non-empty str, not {value!r}")


_INT_RANGES: dict[str, tuple[int, int]] = {"count": (1, 2**31), "port": (1, 65535), "db": (0, 2**31)}


def _from_text(owner: str, name: str, raw: str, kind: str) -> Any:
    """Parse an environment variable's text as ``kind``."""
    variable = f"TIERCACHE_{name.upper()}"
    if kind == "bool":
        return parse_flag(raw, variable, owner)
    if kind in _INT_RANGES:
        try:
            return int(raw)
        except ValueError:
            number = parse_number(raw, variable, owner)  # (raises if it is no number at all)
        if not number.is_integer():
            raise ValueError(f"{owner}: {variable}={raw!r} is not a whole number")
        return int(number)
    if kind == "optional size":
        return parse_optional_size(raw, variable, name, owner)
    if kind in {"seconds", "fraction"}:
        return parse_number(raw, variable, owner)
    return raw


class _Checked:
    """Validate every field at construction; read overrides from ``TIERCACHE_*`` variables."""

    _kinds: ClassVar[dict[str, str]]

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name, kind in self._kinds.items():
            value = getattr(self, name)
            if kind == "seconds" and value is not as_seconds(value):  # a timedelta: kept as seconds
                object.__setattr__(self, name, value := as_seconds(value))
            _check_field(owner, name, value, kind)
        self._check()

    def _check(self) -> None:
        """Check what depends on several fields."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
        """Return settings from ``TIERCACHE_<FIELD>`` variables, then ``overrides``, else defaults."""
        environ = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        for name, kind in cls._kinds.items():
            raw = environ.get(f"TIERCACHE_{name.upper()}")
            if raw is not None and raw != "":
                found[name] = _from_text(cls.__name__, name, raw, kind)
        return cls(**{**cls._environment_aliases(environ), **found, **overrides})

    @classmethod
    def _environment_aliases(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class MultiTierCacheSettings(_Checked):
    """How a MultiTierCacheAdapter (or MultiTierCache) uses its two tiers.

    The fields and defaults are the design note's; ``l2_url`` (``redis://``, ``rediss://`` or
    ``unix://``) takes precedence over host, port, db and password. Invalid values raise at
    construction, naming the field.
    """

    l1_enabled: bool = True
    l1_max_entries: int = 1000
    l1_ttl_seconds: float = 600
    l2_enabled: bool = True
    l2_host: str = "localhost"
    l2_port: int = 6379
    l2_db: int = 0
    l2_ttl_seconds: float = 86400
    l2_password: str | None = field(default=None, repr=False)
    write_through: bool = True
    write_back_l1_on_l2_hit: bool = True
    enable_metrics: bool = True
    l2_url: str | None = field(default=None, repr=False)
    namespace: str = "tiercache-adapter"
    l2_timeout: float = 0.1
    l2_connect_timeout: float = 0.25
    l1_policy: str = "lru"
    l2_username: str | None = None
    l2_ssl: bool = False
    l2_ssl_ca_certs: str | None = None
    l2_ssl_certfile: str | None = None
    l2_ssl_keyfile: str | None = field(default=None, repr=False)
    signing_key: str | None = field(default=None, repr=False)
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    #: Values whose encoding is at least this long are compressed in L2 (None: never).
    compress_min_bytes: int | None = DEFAULT_COMPRESS_MIN_BYTES
    coherent: bool = True
    #: Connections per client (one for threads, one per event loop); a burst beyond waits.
    l2_max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Take up to this fraction off each set's TTLs, at random (entries set together expire apart).
    ttl_jitter: float = 0.0
    #: Pickle values msgpack cannot carry (model instances...): needs ``signing_key``, as only
    #: values whose signature verified are unpickled. A leaked key then runs code: see security.md.
    pickle_signed_values: bool = False

    _kinds: ClassVar[dict[str, str]] = {
        "l1_enabled": "bool",
        "l1_max_entries": "count",
        "l1_ttl_seconds": "seconds",
        "l2_enabled": "bool",
        "l2_host": "text",
        "l2_port": "port",
        "l2_db": "db",
        "l2_ttl_seconds": "seconds",
        "l2_password": "optional text",
        "write_through": "bool",
        "write_back_l1_on_l2_hit": "bool",
        "enable_metrics": "bool",
        "l2_url": "optional text",
        "namespace": "text",
        "l2_timeout": "seconds",
        "l2_connect_timeout": "seconds",
        "l1_policy": "policy",
        "l2_username": "optional text",
        "l2_ssl": "bool",
        "l2_ssl_ca_certs": "optional text",
        "l2_ssl_certfile": "optional text",
        "l2_ssl_keyfile": "optional text",
        "signing_key": "optional text",
        "max_value_bytes": "count",
        "compress_min_bytes": "optional size",
        "coherent": "bool",
        "l2_max_connections": "count",
        "ttl_jitter": "fraction",
        "pickle_signed_values": "bool",
    }

    def _check(self) -> None:
        owner = type(self).__name__
        if self.l2_url is not None:
            check_url(self.l2_url, owner)
        check_namespace(self.namespace, owner)
        if self.signing_key is not None:
            signing_keys(self.signing_key, owner)
        elif self.pickle_signed_values:
            raise ValueError(
                f"{owner}: pickle_signed_values needs a signing_key: unpickling runs code the bytes "
                "name, so only values whose signature verifies may be unpickled"
            )
        for name in ("l2_ssl_ca_certs", "l2_ssl_certfile", "l2_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{owner}: {name} {path!r} is not a readable file")

    @classmethod
    def _environment_aliases(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        # One variable can point both the decorator and the adapters at Redis.
        url = environ.get("TIERCACHE_REDIS_URL")
        return {"l2_url": url} if url else {}

    def redis_url(self) -> str:
        """Return the URL of L2: ``l2_url``, else one built from host, port, db and credentials."""
        if self.l2_url is not None:
            return self.l2_url
        user = urllib.parse.quote(self.l2_username, safe="") if self.l2_username else ""
        password = f":{urllib.parse.quote(self.l2_password, safe='')}" if self.l2_password else ""
        credentials = f"{user}{password}@" if user or password else ""
        host = f"[{self.l2_host}]" if ":" in self.l2_host else self.l2_host
        scheme = "rediss" if self.l2_ssl else "redis"
        return f"{scheme}://{credentials}{host}:{self.l2_port}/{self.l2_db}"

    def tls_options(self) -> dict[str, str]:
        """Return redis-py's TLS keyword arguments for the certificate files given."""
        names = {
            "l2_ssl_ca_certs": "ssl_ca_certs",
            "l2_ssl_certfile": "ssl_certfile",
            "l2_ssl_keyfile": "ssl_keyfile",
        }
        return {
            option: getattr(self, name) for name, option in names.items() if getattr(self, name) is not None
        }

    def __repr__(self) -> str:
        secret = {"l2_password", "signing_key", "l2_ssl_keyfile"}
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in secret}
        shown["l2_url"] = redact_url(self.l2_url) if self.l2_url else None
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        hidden = "".join(f", {name}='***'" for name in sorted(secret) if getattr(self, name))
        return f"MultiTierCacheSettings({fields}{hidden})"


@dataclass(frozen=True)
class MemoryCacheSettings(_Checked):
    """How a MemoryCacheAdapter (or MemoryCache) uses its single, in-process tier."""

    max_entries: int = 1000
    ttl_seconds: float = 600
    enable_metrics: bool = True

    _kinds: ClassVar[dict[str, str]] = {
        "max_entries": "count",
        "ttl_seconds": "seconds",
        "enable_metrics": "bool",
    }

    def as_multi_tier(self) -> MultiTierCacheSettings:
        """Return the equivalent two-tier settings with L2 off."""
        return MultiTierCacheSettings(
            l1_max_entries=self.max_entries,
            l1_ttl_seconds=self.ttl_seconds,
            l2_enabled=False,
            enable_metrics=self.enable_metrics,
        )
