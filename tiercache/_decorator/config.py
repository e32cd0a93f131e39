"""Process-wide defaults: where L2 lives, the namespace, timeouts; and one Endpoint per server."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiercache._core.checks import (
    DEFAULT_MAX_VALUE_BYTES,
    check_bool,
    check_namespace,
    check_optional_size,
    check_seconds,
    check_size,
    parse_flag,
    parse_number,
    parse_optional_size,
)
from tiercache._decorator.keys import DEFAULT_MAX_KEY_BYTES
from tiercache._l2.compression import DEFAULT_COMPRESS_MIN_BYTES
from tiercache._l2.endpoint import DEFAULT_MAX_CONNECTIONS, Endpoint
from tiercache._l2.signing import signing_keys
from tiercache._l2.urls import DEFAULT_REDIS_URL, check_url, redact_url

__all__ = ["Settings", "configure", "current", "endpoint_for", "restore", "settings_version"]


@dataclass(frozen=True)
class Settings:
    """The process-wide defaults every ``@tiered_cache`` function falls back on."""

    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = "tiercache"
    timeout: float = 0.1
    connect_timeout: float = 0.25
    enabled: bool = True
    l2: bool = True
    #: Client objects the application built; when set they are L2, and ``redis_url`` is unused.
    redis_client: Any = dataclasses.field(default=None, compare=False)
    async_redis_client: Any = dataclasses.field(default=None, compare=False)
    #: Keys (newest first) signing and checking every L2 value, as bytes; () signs nothing.
    signing_keys: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    #: L2 values whose encoding is at least this long are compressed; None: none are.
    compress_min_bytes: int | None = DEFAULT_COMPRESS_MIN_BYTES
    #: The longest canonical encoding of a call's arguments; longer ones raise UnkeyableArgumentError.
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    #: Connections per client (one client for threads, one per event loop); callers beyond it
    #: wait for one to come free rather than fail.
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["redis_url"] = redact_url(self.redis_url)
        shown["signing_keys"] = f"<{len(self.signing_keys)} key(s)>"
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"Settings({fields})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Return the defaults, overridden by any ``TIERCACHE_*`` variables in ``environ``."""
        owner = "tiercache environment"
        found: dict[str, Any] = {}
        if url := environ.get("TIERCACHE_REDIS_URL"):
            found["redis_url"] = check_url(url, owner)
        if namespace := environ.get("TIERCACHE_NAMESPACE"):
            found["namespace"] = check_namespace(namespace, owner)
        for name in ("timeout", "connect_timeout"):
            if raw := environ.get(variable := f"TIERCACHE_{name.upper()}"):
                found[name] = check_seconds(parse_number(raw, variable, owner), name, owner)
        for name in ("enabled", "l2"):
            if raw := environ.get(variable := f"TIERCACHE_{name.upper()}"):
                found[name] = parse_flag(raw, variable, owner)
        for name in ("max_value_bytes", "max_key_bytes", "max_connections"):
            if raw := environ.get(variable := f"TIERCACHE_{name.upper()}"):
                found[name] = check_size(parse_number(raw, variable, owner), name, owner)
        if raw := environ.get(variable := "TIERCACHE_COMPRESS_MIN_BYTES"):
            found["compress_min_bytes"] = parse_optional_size(raw, variable, "compress_min_bytes", owner)
        if raw := environ.get("TIERCACHE_SIGNING_KEY"):
            found["signing_keys"] = signing_keys(raw, owner)
        return cls(**found)


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
    owner = "tiercache.configure()"
    changes: dict[str, object] = {}
    if redis_url is None:
        changes["redis_url"] = Settings.from_environment(os.environ).redis_url
    elif redis_url is not _UNSET:
        changes["redis_url"] = check_url(redis_url, owner)  # type: ignore[arg-type]
    if namespace is not _UNSET:
        changes["namespace"] = check_namespace(namespace, owner)
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if value is not _UNSET:
            changes[name] = check_seconds(value, name, owner)
    if signing_key is not _UNSET:
        changes["signing_keys"] = () if signing_key is None else signing_keys(signing_key, owner)
    sizes = (("max_value_bytes", max_value_bytes), ("max_key_bytes", max_key_bytes))
    for name, size in (*sizes, ("max_connections", max_connections)):
        if size is not _UNSET:
            changes[name] = check_size(size, name, owner)
    if compress_min_bytes is not _UNSET:
        changes["compress_min_bytes"] = check_optional_size(compress_min_bytes, "compress_min_bytes", owner)
    clients = {"redis_client": redis_client, "async_redis_client": async_redis_client}
    changes.update({name: client for name, client in clients.items() if client is not _UNSET})
    for name, value in (("enabled", enabled), ("l2", l2)):
        if value is not _UNSET:
            changes[name] = check_bool(value, name, owner)
    with _lock:
        settings = _settings = dataclasses.replace(current_unlocked(), **changes)  # type: ignore[arg-type]
        settings_version += 1
    for hook in _hooks:
        hook(settings)
    return settings


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
                    Endpoint.from_clients(settings.redis_client, settings.async_redis_client)
                    if clients
                    else Endpoint.from_url(
                        target,
                        timeout=settings.timeout,
                        connect_timeout=settings.connect_timeout,
                        max_connections=settings.max_connections,
                    )
                )
    return endpoint
