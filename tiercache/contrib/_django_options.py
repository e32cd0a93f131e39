"""The ``OPTIONS`` of django-redis and of Django's own ``RedisCache``, read as ours where they mean something.

A settings file moved from ``django_redis.cache.RedisCache`` or
``django.core.cache.backends.redis.RedisCache`` keeps its ``OPTIONS``: those with a meaning here
become ``MultiTierCacheSettings`` fields; the others are refused at start-up with a message that
names what to do instead (docs/services.md has the table).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["from_other_backends"]

_OURS: Final = "TieredCache"

_CLIENTS_MEANING_OURS: Final = frozenset(
    {"django_redis.client.DefaultClient", "django_redis.client.HerdClient"}
)
_CLIENT_INSTEAD: Final = {
    "django_redis.client.SentinelClient": "a redis+sentinel:// (or rediss+sentinel://) LOCATION",
    "django_redis.client.ShardClient": "a Redis Cluster: a redis+cluster:// LOCATION",
}
_NO_COMPRESSION: Final = "django_redis.compressors.identity.IdentityCompressor"
#: Connection options that are ours by another name: (settings field, kind of value).
_CONNECTION: Final = {
    "socket_timeout": "l2_timeout",
    "socket_connect_timeout": "l2_connect_timeout",
    "max_connections": "l2_max_connections",
}
_OUR_CLIENTS: Final = (
    "tiercache makes its own Redis clients (waiting pools, replies bounded by max_value_bytes, "
    "its own timeouts and retry-once); remove it"
)


def _refuse(name: str, instead: str) -> ValueError:
    return ValueError(f"{_OURS}: OPTIONS {name} has no meaning here: {instead}")


def _client_class(value: Any) -> dict[str, Any]:
    if value in _CLIENTS_MEANING_OURS:
        return {}  # (HerdClient's stampede protection: every miss of a key is one run here)
    instead = _CLIENT_INSTEAD.get(value, "tiercache is one client for one server, Sentinel or Cluster")
    raise _refuse("CLIENT_CLASS", f"for {value!r} use {instead}")


def _serializer(value: Any) -> dict[str, Any]:
    raise _refuse(
        "SERIALIZER",
        "values are msgpack with tiercache's types, never pickle (a poisoned Redis cannot run code "
        "here); remove it, and register your own types with tiercache.register_type()",
    )


def _compressor(value: Any) -> dict[str, Any]:
    if value == _NO_COMPRESSION:
        return {"compress_min_bytes": None}
    # Any other compressor means "compress": tiercache compresses values from COMPRESS_MIN_BYTES
    # (default 1,024 bytes) with zstd where the process has it, else zlib, and reads both.
    return {}


def _ignore_exceptions(value: Any) -> dict[str, Any]:
    if value is True:
        return {}  # tiercache's own way: a Redis failure never fails a get or a set
    raise _refuse(
        "IGNORE_EXCEPTIONS",
        "a Redis failure never fails a get or a set here (it is counted and logged, and the "
        "cache carries on from L1); delete() and clear() raise InvalidationError only when "
        "other processes may keep the old value. Remove it",
    )


def _timeout(field: str) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {field: value}


def _pool_kwargs(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{_OURS}: OPTIONS CONNECTION_POOL_KWARGS must be a dict, not {value!r}")
    chosen = {}
    for name, given in value.items():
        field = _CONNECTION.get(name)
        if field is None:
            raise _refuse(
                f"CONNECTION_POOL_KWARGS[{name!r}]",
                f"it takes only {', '.join(sorted(_CONNECTION))} (as L2_TIMEOUT, L2_CONNECT_TIMEOUT "
                "and L2_MAX_CONNECTIONS); a dropped connection is retried once and a timeout never "
                "(it bounds the call)",
            )
        chosen[field] = given
    return chosen


def _in_url(name: str, example: str) -> Callable[[Any], dict[str, Any]]:
    def refuse(value: Any) -> dict[str, Any]:
        raise _refuse(name, f"put it in LOCATION, as in {example}")

    return refuse


def _ours_instead(name: str) -> Callable[[Any], dict[str, Any]]:
    def refuse(value: Any) -> dict[str, Any]:
        raise _refuse(name, _OUR_CLIENTS)

    return refuse


# django-redis's OPTIONS (capitals), then Django's RedisCache's (lower case: connection options).
_READERS: Final[dict[str, Callable[[Any], dict[str, Any]]]] = {
    "CLIENT_CLASS": _client_class,
    "SERIALIZER": _serializer,
    "COMPRESSOR": _compressor,
    "IGNORE_EXCEPTIONS": _ignore_exceptions,
    "SOCKET_TIMEOUT": _timeout("l2_timeout"),
    "SOCKET_CONNECT_TIMEOUT": _timeout("l2_connect_timeout"),
    "CONNECTION_POOL_KWARGS": _pool_kwargs,
    "PASSWORD": _in_url("PASSWORD", "redis://:PASSWORD@host:6379/0"),
    "USERNAME": _in_url("USERNAME", "redis://USER:PASSWORD@host:6379/0"),
    "CONNECTION_POOL_CLASS": _ours_instead("CONNECTION_POOL_CLASS"),
    "PARSER_CLASS": _ours_instead("PARSER_CLASS"),
    "REDIS_CLIENT_CLASS": _ours_instead("REDIS_CLIENT_CLASS"),
    "REDIS_CLIENT_KWARGS": _ours_instead("REDIS_CLIENT_KWARGS"),
    "password": _in_url("password", "redis://:PASSWORD@host:6379/0"),
    "username": _in_url("username", "redis://USER:PASSWORD@host:6379/0"),
    "pool_class": _ours_instead("pool_class"),
    "parser_class": _ours_instead("parser_class"),
    **{name: _timeout(field) for name, field in _CONNECTION.items()},
}


def from_other_backends(location: str | None, options: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Return ``location`` and ``options`` with django-redis's and Django's own options read as ours.

    Options of our own (``MultiTierCacheSettings`` fields in capitals) pass through untouched;
    one of the others is read into a field, or refused with a ValueError naming what to use.
    A lower-case ``db`` (Django's RedisCache) goes into the URL.
    """
    ours: dict[str, Any] = {}
    for name, value in options.items():
        if name == "db":
            location = _with_db(location, value)
            continue
        reader = _READERS.get(name)
        if reader is None:
            ours[name] = value
            continue
        for field, given in reader(value).items():
            ours.setdefault(field.upper(), given)  # (our own spelling, given too, wins)
    return location, ours


def _with_db(location: str | None, db: Any) -> str | None:
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ValueError(f"{_OURS}: OPTIONS db must be a database number, not {db!r}")
    if location is None:
        raise ValueError(f"{_OURS}: OPTIONS db needs a LOCATION (a redis:// URL) to go into")
    parts = urllib.parse.urlsplit(location)
    path = parts.path.strip("/")
    if path and path != str(db):
        raise ValueError(f"{_OURS}: OPTIONS db={db} and LOCATION's database /{path} disagree")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))
