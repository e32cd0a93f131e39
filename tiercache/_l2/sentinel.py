"""Redis Sentinel: what a ``redis+sentinel://`` URL names, and a client of the primary it leads to.

``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?query]``. The hosts
are the sentinels (port 26379 when left out); the credentials are the primary's, the query's
``sentinel_username``/``sentinel_password`` the sentinels' own; ``rediss+sentinel://`` speaks
TLS to both, with the query's ``ssl_*`` files. redis-py does the rest: its connections ask the
sentinels where the primary is whenever they connect.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["SentinelTarget", "asking_sentinels", "primary_client", "primary_options", "sentinel_target"]

_SUFFIX: Final = "+sentinel"
_DEFAULT_PORT: Final = 26379
#: What a sentinel URL's query may say: the sentinels' own credentials, and TLS files.
_QUERY: Final = frozenset(
    {
        "sentinel_username",
        "sentinel_password",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: the sentinels, the service, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: dict[str, Any] = field(default_factory=dict)


def sentinel_target(url: str) -> SentinelTarget | None:
    """Return what ``url`` names if it is a sentinel URL, else None; raise ValueError if malformed."""
    scheme, _, _ = url.partition("://")
    if not scheme.endswith(_SUFFIX):
        return None
    parts = urllib.parse.urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_host_and_port(entry) for entry in hosts.split(","))
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError("a sentinel URL's path is /service or /service/db")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError(f"database {segments[1]!r} is not a number")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - _QUERY
    if unknown:
        raise ValueError(f"unknown query parameter(s) {sorted(unknown)} (known: {sorted(_QUERY)})")
    user, _, password = credentials.partition(":")
    tls_options: dict[str, Any] = {name: value for name, value in query.items() if name.startswith("ssl_")}
    if "ssl_check_hostname" in tls_options:
        tls_options["ssl_check_hostname"] = tls_options["ssl_check_hostname"].lower() in {"1", "true", "yes"}
    return SentinelTarget(
        sentinels,
        segments[0],
        int(segments[1]) if len(segments) == 2 else 0,
        urllib.parse.unquote(user) or None,
        urllib.parse.unquote(password) or None,
        scheme.startswith("rediss"),
        query.get("sentinel_username") or None,
        query.get("sentinel_password") or None,
        tls_options,
    )


def _host_and_port(entry: str) -> tuple[str, int]:
    host, colon, port = entry.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = entry, str(_DEFAULT_PORT)
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel address {entry!r} is not host:port")
    return host, int(port)


def _tls(target: SentinelTarget) -> dict[str, Any]:
    return {"ssl": True, "ssl_check_hostname": True, **target.tls_options} if target.tls else {}


def primary_options(target: SentinelTarget, options: dict[str, Any]) -> dict[str, Any]:
    """Return the connection options of the primary: ``options`` plus the URL's db, login and TLS."""
    base = {key: value for key, value in options.items() if key != "ssl_check_hostname"}
    login = {"db": target.db, "username": target.username, "password": target.password}
    return {**base, **_tls(target), **login}


def asking_sentinels(target: SentinelTarget, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    """Return the options of connections to the sentinels themselves (timeouts, login, TLS).

    ``retry`` is the sentinels' own (a sync or an asyncio ``Retry``): callers give one that does
    not retry. Asking one sentinel after another is already the retry; redis-py's default (ten
    tries each, with backoff) held a caller 20 s when every sentinel was down.
    """
    names: tuple[str, ...] = ("socket_timeout", "socket_connect_timeout")
    timeouts = {name: options[name] for name in names if name in options}
    login = {"username": target.sentinel_username, "password": target.sentinel_password}
    # TLS files given beside the URL (an adapter's l2_ssl_* settings) serve the sentinels too.
    files = {name: value for name, value in options.items() if name.startswith("ssl_")} if target.tls else {}
    return {**timeouts, **login, **files, **_tls(target), "retry": retry}


def primary_client(target: SentinelTarget, options: dict[str, Any]) -> redis.Redis:
    """Return a client of the service's primary (found through the sentinels as it connects)."""
    asking = asking_sentinels(target, options, Retry(NoBackoff(), 0))
    manager = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=asking)
    return cast("redis.Redis", manager.master_for(target.service, **primary_options(target, options)))
