"""Where a Redis is: the URL schemes we accept, their checks, and redaction for logs."""

from __future__ import annotations

import urllib.parse

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from tiercache._l2.sentinel import sentinel_target

__all__ = [
    "check_url",
    "plain_cluster_url",
    "redact_url",
]

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
_CLUSTER_SUFFIX = "+cluster"


def plain_cluster_url(url: str) -> str | None:
    """Return the plain URL redis-py's cluster client takes, if ``url`` names a cluster."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.removesuffix(_CLUSTER_SUFFIX)}{sep}{rest}" if scheme.endswith(_CLUSTER_SUFFIX) else None


def check_url(url: str, owner: str, name: str = "redis_url") -> str:
    """Return ``url`` if it is a Redis URL redis-py can connect with; else raise naming ``name``."""
    if not isinstance(url, str):
        raise TypeError(f"{owner}: {name} must be a str, not {type(url).__name__}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{owner}: {name} {redact_url(url)!r} must start with one of "
            + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    try:
        if sentinel_target(url) is None:
            redis.connection.parse_url(plain_cluster_url(url) or url)  # type: ignore[no-untyped-call]  # untyped
    except ValueError as exc:
        raise ValueError(f"{owner}: {name} {redact_url(url)!r} is invalid: {exc}") from None
    return url


#: Query parameters whose values are credentials (redis-py reads ``?password=`` too).
_SECRET_PARAMETERS = ("pass", "pwd", "secret", "token", "auth", "credential")


def redact_url(url: str) -> str:
    """Return ``url`` with any password, in its user part or its query, replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is not None:
        user = f"{parts.username}:***@" if parts.username else ":***@"
        url = urllib.parse.urlunsplit(parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[-1]))
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        shown = urllib.parse.urlencode([(k, "***" if _secret(k) else v) for k, v in pairs], safe="*/")
        url = url.split("?", 1)[0] + "?" + shown + (f"#{parts.fragment}" if parts.fragment else "")
    return url


def _secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_PARAMETERS)
