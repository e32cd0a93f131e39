"""Settings of the cache adapters: the seed's fields and defaults, checked when constructed."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiercache import _fields as fields
from tiercache._core.checks import DEFAULT_COMPRESS_MIN_BYTES, DEFAULT_MAX_VALUE_BYTES
from tiercache._fields import setting
from tiercache._l2.deployments import DEFAULT_MAX_CONNECTIONS

__all__ = ["MemoryCacheSettings", "MultiTierCacheSettings"]


class _Checked:
    """Check every field at construction; read overrides from ``TIERCACHE_*`` variables."""

    def __post_init__(self) -> None:
        fields.check_fields(self)
        self._check()

    def _check(self) -> None:
        """Check what depends on several fields."""

    def __repr__(self) -> str:
        return fields.represent(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
        """Return settings from ``TIERCACHE_<FIELD>`` variables, then ``overrides``, else defaults."""
        environ = os.environ if environ is None else environ
        found = fields.from_environment(cls, environ, cls.__name__)
        return cls(**{**cls._environment_aliases(environ), **found, **overrides})

    @classmethod
    def _environment_aliases(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, repr=False)  # (the repr hides secrets: see _Checked)
class MultiTierCacheSettings(_Checked):
    """How a MultiTierCacheAdapter (or MultiTierCache) uses its two tiers.

    The fields and defaults are the design note's; ``l2_url`` (``redis://``, ``rediss://`` or
    ``unix://``) takes precedence over host, port, db and password. Invalid values raise at
    construction, naming the field.
    """

    l1_enabled: bool = setting(True, fields.FLAG)
    l1_max_entries: int = setting(1000, fields.COUNT)
    l1_ttl_seconds: float = setting(600, fields.SECONDS)
    l2_enabled: bool = setting(True, fields.FLAG)
    l2_host: str = setting("localhost", fields.TEXT)
    l2_port: int = setting(6379, fields.PORT)
    l2_db: int = setting(0, fields.DB)
    l2_ttl_seconds: float = setting(86400, fields.SECONDS)
    l2_password: str | None = setting(None, fields.OPTIONAL_TEXT, secret=True)
    write_through: bool = setting(True, fields.FLAG)
    write_back_l1_on_l2_hit: bool = setting(True, fields.FLAG)
    enable_metrics: bool = setting(True, fields.FLAG)
    l2_url: str | None = setting(None, fields.OPTIONAL_URL)
    namespace: str = setting("tiercache-adapter", fields.NAMESPACE)
    l2_timeout: float = setting(0.1, fields.SECONDS)
    l2_connect_timeout: float = setting(0.25, fields.SECONDS)
    l1_policy: str = setting("lru", fields.POLICY)
    l2_username: str | None = setting(None, fields.OPTIONAL_TEXT)
    l2_ssl: bool = setting(False, fields.FLAG)
    l2_ssl_ca_certs: str | None = setting(None, fields.OPTIONAL_TEXT)
    l2_ssl_certfile: str | None = setting(None, fields.OPTIONAL_TEXT)
    l2_ssl_keyfile: str | None = setting(None, fields.OPTIONAL_TEXT, secret=True)
    signing_key: str | None = setting(None, fields.SIGNING_TEXT, secret=True)
    max_value_bytes: int = setting(DEFAULT_MAX_VALUE_BYTES, fields.COUNT)
    #: Values whose encoding is at least this long are compressed in L2 (None: never).
    compress_min_bytes: int | None = setting(DEFAULT_COMPRESS_MIN_BYTES, fields.OPTIONAL_SIZE)
    coherent: bool = setting(True, fields.FLAG)
    #: Connections per client (one for threads, one per event loop); a burst beyond waits.
    l2_max_connections: int = setting(DEFAULT_MAX_CONNECTIONS, fields.COUNT)
    #: Take up to this fraction off each set's TTLs, at random (entries set together expire apart).
    ttl_jitter: float = setting(0.0, fields.FRACTION)
    #: Pickle values msgpack cannot carry (model instances...): needs ``signing_key``, as only
    #: values whose signature verified are unpickled. A leaked key then runs code: see security.md.
    pickle_signed_values: bool = setting(False, fields.FLAG)

    def _check(self) -> None:
        owner = type(self).__name__
        if self.pickle_signed_values and self.signing_key is None:
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


@dataclass(frozen=True, repr=False)  # (the repr hides secrets: see _Checked)
class MemoryCacheSettings(_Checked):
    """How a MemoryCacheAdapter (or MemoryCache) uses its single, in-process tier."""

    max_entries: int = setting(1000, fields.COUNT)
    ttl_seconds: float = setting(600, fields.SECONDS)
    enable_metrics: bool = setting(True, fields.FLAG)

    def as_multi_tier(self) -> MultiTierCacheSettings:
        """Return the equivalent two-tier settings with L2 off."""
        return MultiTierCacheSettings(
            l1_max_entries=self.max_entries,
            l1_ttl_seconds=self.ttl_seconds,
            l2_enabled=False,
            enable_metrics=self.enable_metrics,
        )
