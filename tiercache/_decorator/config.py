"""Process-wide defaults: where L2 lives, the namespace, timeouts; and one Endpoint per server."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiercache import _fields as fields
from tiercache._core.checks import DEFAULT_COMPRESS_MIN_BYTES, DEFAULT_MAX_VALUE_BYTES, DEFAULT_REDIS_URL
from tiercache._decorator.keys import DEFAULT_MAX_KEY_BYTES
from tiercache._fields import setting
from tiercache._l2.deployments import (
    DEFAULT_MAX_CONNECTIONS,
    Endpoint,
    endpoint_for_clients,
    endpoint_for_url,
)

__all__ = ["Settings", "configure", "current", "endpoint_for", "restore", "routing_of", "settings_version"]


@dataclass(frozen=True)
class Settings:
    """The process-wide defaults every ``@tiered_cache`` function falls back on.

    Each field is checked when the settings are made, and read from ``TIERCACHE_<FIELD>`` by
    ``from_environment`` (``TIERCACHE_SIGNING_KEY`` for the keys; the clients from none).
    """

    redis_url: str = setting(DEFAULT_REDIS_URL, fields.URL)
    namespace: str = setting("tiercache", fields.NAMESPACE)
    timeout: float = setting(0.1, fields.SECONDS)
    connect_timeout: float = setting(0.25, fields.SECONDS)
    enabled: bool = setting(True, fields.FLAG)
    l2: bool = setting(True, fields.FLAG)
    #: Client objects the application built; when set they are L2, and ``redis_url`` is unused.
    redis_client: Any = dataclasses.field(default=None, compare=False)
    async_redis_client: Any = dataclasses.field(default=None, compare=False)
    #: Keys (newest first) signing and checking every L2 value, as bytes; () signs nothing.
    signing_keys: tuple[bytes, ...] = setting((), fields.SIGNING_KEYS, variable="TIERCACHE_SIGNING_KEY")
    max_value_bytes: int = setting(DEFAULT_MAX_VALUE_BYTES, fields.SIZE)
    #: L2 values whose encoding is at least this long are compressed; None: none are.
    compress_min_bytes: int | None = setting(DEFAULT_COMPRESS_MIN_BYTES, fields.OPTIONAL_SIZE)
    #: The longest canonical encoding of a call's arguments; longer ones raise UnkeyableArgumentError.
    max_key_bytes: int = setting(DEFAULT_MAX_KEY_BYTES, fields.SIZE)
    #: Connections per client (one client for threads, one per event loop); callers beyond it
    #: wait for one to come free rather than fail.
    max_connections: int = setting(DEFAULT_MAX_CONNECTIONS, fields.SIZE)

    def __post_init__(self) -> None:
        fields.check_fields(self)

    def __repr__(self) -> str:
        return fields.represent(self)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Return the defaults, overridden by any ``TIERCACHE_*`` variables in ``environ``."""
        return cls(**fields.from_environment(cls, environ, "tiercache environment"))


_lock = threading.Lock()
_settings: Settings | None = None
#: A number that changes whenever the settings do: functions re-resolve when it differs from
#: the one they resolved at (read as ``config.settings_version``, an attribute: no call).
settings_version = 0
_endpoints: dict[tuple[Any, ...], Endpoint] = {}
_hooks: list[Callable[[Settings], None]] = []


def on_change(hook: Callable[[Settings], None]) -> None:
    """Call ``hook(settings)`` after every change of the settings."""
    _hooks.append(hook)


def current() -> Settings:
    """Return the settings in force, reading ``TIERCACHE_*`` variables the first time."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_environment(os.environ)
    return _settings


_UNSET: Final = object()


def configure(
    redis_url: str | object | None = _UNSET,
    *,
    namespace: str | object = _UNSET,
    timeout: float | object = _UNSET,
    connect_timeout: float | object = _UNSET,
    enabled: bool | object = _UNSET,
    l2: bool | object = _UNSET,
    redis_client: Any = _UNSET,
    async_redis_client: Any = _UNSET,
    signing_key: Any = _UNSET,
    max_value_bytes: int | object = _UNSET,
    max_key_bytes: int | object = _UNSET,
    max_connections: int | object = _UNSET,
    compress_min_bytes: int | object | None = _UNSET,
) -> Settings:
    """Set process-wide defaults; arguments left out keep their value. Return the new settings.

    ``redis_url=None`` goes back to ``TIERCACHE_REDIS_URL`` or ``redis://localhost:6379/0``;
    ``l2=False`` keeps every function in L1 only; ``enabled=False`` bypasses caching entirely.
    ``redis_client`` (a ``redis.Redis``) and ``async_redis_client`` (a ``redis.asyncio.Redis``,
    or a zero-argument factory of one, called once per event loop) make L2 clients you built
    yourself the default; pass None to go back to ``redis_url``. ``signing_key`` (a key of 16
    bytes or more, or a list of them, newest first) signs every L2 value and makes unsigned or
    forged ones misses (None: no signing); ``max_value_bytes`` keeps larger values in L1 only;
    ``compress_min_bytes`` (default 1024) compresses L2 values whose encoding is at least that
    long, with zstd (``tiercache[zstd]``, or Python 3.14+) else zlib (None: never compress);
    ``max_key_bytes`` (default 64 KiB) bounds the canonical encoding of a call's arguments: a
    call whose key would be longer raises UnkeyableArgumentError, after bounded work.
    ``max_connections`` (default 50) bounds each L2 client's connections (one client serves
    threads, one each event loop): a burst beyond it waits for a connection to come free, for up
    to 1 s (or ten timeouts, if longer), and only then skips L2 for that call, counted in
    ``l2_saturated`` (never as an outage).
    """
    global _settings, settings_version
    arguments = dict(locals())  # (first: nothing but the arguments is defined yet)
    given = {name: value for name, value in arguments.items() if value is not _UNSET}
    owner = "tiercache.configure()"
    if "signing_key" in given:
        given["signing_keys"] = given.pop("signing_key")
    if "redis_url" in given and given["redis_url"] is None:
        given["redis_url"] = Settings.from_environment(os.environ).redis_url
    changes = fields.checked(Settings, given, owner)
    with _lock:
        settings = _settings = dataclasses.replace(current_unlocked(), **changes)
        settings_version += 1
    for hook in _hooks:
        hook(settings)
    return settings


def routing_of(settings: Settings) -> tuple[Any, ...]:
    """Return what of ``settings`` decides which Redis, channel and key names a function follows."""
    clients = (id(settings.redis_client), id(settings.async_redis_client))
    return (
        settings.enabled,
        settings.l2,
        settings.redis_url,
        clients,
        settings.namespace,
        settings.signing_keys,
    )


def current_unlocked() -> Settings:
    """Return the settings without taking the lock (callers hold it)."""
    return _settings if _settings is not None else Settings.from_environment(os.environ)


def restore(settings: Settings) -> None:
    """Put back ``settings`` as they were (what a test saved before changing them)."""
    global _settings, settings_version
    with _lock:
        _settings = settings
        settings_version += 1
    for hook in _hooks:
        hook(settings)


def reset() -> None:
    """Forget every ``configure()`` call and endpoint: the next use reads the environment again."""
    global _settings, settings_version
    with _lock:
        _settings = None
        settings_version += 1
        endpoints = list(_endpoints.values())
        _endpoints.clear()
    for endpoint in endpoints:
        endpoint.close()


def endpoint_for(settings: Settings, url: str | None = None) -> Endpoint:
    """Return the one Endpoint for ``url`` (else the settings' clients or URL), made on first use."""
    clients = url is None and (settings.redis_client is not None or settings.async_redis_client is not None)
    target = url or settings.redis_url
    key: tuple[Any, ...] = (
        ("clients", id(settings.redis_client), id(settings.async_redis_client))
        if clients
        else ("url", target, settings.timeout, settings.connect_timeout, settings.max_connections)
    )
    endpoint = _endpoints.get(key)
    if endpoint is None:
        with _lock:
            endpoint = _endpoints.get(key)
            if endpoint is None:
                endpoint = _endpoints[key] = (
                    endpoint_for_clients(settings.redis_client, settings.async_redis_client)
                    if clients
                    else endpoint_for_url(
                        target,
                        timeout=settings.timeout,
                        connect_timeout=settings.connect_timeout,
                        max_connections=settings.max_connections,
                    )
                )
    return endpoint
