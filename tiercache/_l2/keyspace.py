"""What ``tiercache stats`` and ``tiercache flush`` do to a Redis: SCAN, MEMORY USAGE, UNLINK, PUBLISH.

Never KEYS: SCAN walks the keyspace in pages, so a big production Redis keeps serving while it
runs. Key names are read as ``_l2.layout`` makes them: a function's, the adapters', the tags'.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.cluster

from tiercache._l2.announcement import encode
from tiercache._l2.coherence import channel_for
from tiercache._l2.layout import ADAPTER_SEGMENT, STATS_SEGMENT, TAG_SEGMENT
from tiercache._l2.sentinel import primary_client, sentinel_target
from tiercache._l2.signing import Signer
from tiercache._l2.urls import check_url, plain_cluster_url

__all__ = [
    "ADAPTER",
    "FAILURES",
    "STATS",
    "TAGS",
    "Usage",
    "connect",
    "count_keys",
    "flush",
    "owner_of",
    "pages",
    "pattern_for",
    "usage",
]

#: What a Redis that cannot be reached or fails raises (a cluster client raises its own kind too).
FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)
#: What the tables call the keys of MultiTierCache/MultiTierCacheAdapter instances.
ADAPTER = "(adapter)"
#: What the tables call the keys of tags (``tags=`` of decorated functions).
TAGS = "(tags)"
#: What the tables call the keys of fleet stats (tiercache.metrics.fleet.publish()).
STATS = "(stats)"
#: Who a flush's invalidation announcement comes from (no cache has this origin).
FLUSH_ORIGIN = b"tc-flush"
_DIGEST = re.compile(r"[0-9a-f]{32}")
_TOKEN = re.compile(r"[0-9a-f]{16}")
_PAGE = 500


@dataclass
class Usage:
    """How many keys one function (or the adapters) holds in one namespace, and their memory."""

    namespace: str
    function: str
    keys: int = 0
    memory_bytes: int = 0


def connect(url: str, owner: str) -> redis.Redis | redis.cluster.RedisCluster:
    """Return a client for ``url`` (a cluster's, a sentinel service's primary) and check it answers.

    Raises ValueError for a bad URL and one of ``FAILURES`` when the server cannot be reached.
    """
    check_url(url, owner)
    options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    plain = plain_cluster_url(url)
    client: redis.Redis | redis.cluster.RedisCluster
    target = sentinel_target(url)
    if plain is not None:
        client = redis.cluster.RedisCluster.from_url(plain, **options)
    elif target is not None:
        client = primary_client(target, options)
        client.ping()
    else:
        client = redis.Redis.from_url(url, **options)
        client.ping()
    return client


def owner_of(key: str, namespace: str | None) -> tuple[str, str] | None:
    """Return the (namespace, function) a tiercache key belongs to, or None if it is not ours.

    Without ``namespace`` the namespace is taken to end at the first colon.
    """
    if namespace is None:
        namespace, colon, rest = key.partition(":")
        if not colon:
            return None
    elif key.startswith(namespace + ":"):
        rest = key[len(namespace) + 1 :]
    else:
        return None
    if rest == "gen" or rest.startswith(f"{ADAPTER_SEGMENT}:"):
        return namespace, ADAPTER
    for segment, owner, suffix in ((TAG_SEGMENT, TAGS, _DIGEST), (STATS_SEGMENT, STATS, _TOKEN)):
        if rest.startswith(f"{segment}:") and suffix.fullmatch(rest[len(segment) + 1 :]):
            return namespace, owner
    rest = rest.removesuffix(":lock")
    label, colon, tail = rest.rpartition(":")
    if colon and (tail == "gen" or _DIGEST.fullmatch(tail)):
        return namespace, label
    return None


def pattern_for(namespace: str | None, function: str | None) -> str:
    """Return the SCAN pattern of ``namespace``'s keys (of ``function``'s), its globs escaped."""
    if namespace is None:
        return "*"
    parts = [namespace] if function is None else [namespace, function]
    return ":".join(re.sub(r"([*?\[\]\\])", r"\\\1", part) for part in parts) + ":*"


def pages(client: Any, pattern: str) -> Iterator[list[str]]:
    """SCAN for ``pattern``; yield the keys found, as text, a few hundred at a time."""
    page: list[str] = []
    for key in client.scan_iter(match=pattern, count=_PAGE):
        page.append(key.decode("utf-8", "replace") if isinstance(key, bytes) else key)
        if len(page) >= _PAGE:
            yield page
            page = []
    if page:
        yield page


def usage(client: Any, namespace: str | None = None) -> tuple[list[Usage], int]:
    """Return key counts and memory per namespace and function, and the count of other keys."""
    found: dict[tuple[str, str], Usage] = {}
    others = 0
    for page in pages(client, pattern_for(namespace, None)):
        owners = [owner_of(key, namespace) for key in page]
        ours = [(key, owner) for key, owner in zip(page, owners, strict=True) if owner is not None]
        others += len(page) - len(ours)
        pipeline = client.pipeline(transaction=False)
        for key, _ in ours:
            pipeline.memory_usage(key)
        for (_, owner), size in zip(ours, pipeline.execute(), strict=True):
            if size is None:
                continue  # expired between SCAN and MEMORY USAGE
            entry = found.setdefault(owner, Usage(*owner))
            entry.keys += 1
            entry.memory_bytes += int(size)
    return sorted(found.values(), key=lambda u: (u.namespace, -u.memory_bytes)), others


def _owned(client: Any, namespace: str, function: str | None) -> Iterator[list[tuple[str, tuple[str, str]]]]:
    """Yield pages of ``(key, owner)`` of the namespace's keys (only ``function``'s, if given).

    SCAN's pattern only narrows the walk: ``ns:f:*`` also matches a function labelled ``f:x``,
    so each key's owner decides.
    """
    for page in pages(client, pattern_for(namespace, function)):
        owned = [(key, owner) for key in page if (owner := owner_of(key, namespace)) is not None]
        yield [(key, owner) for key, owner in owned if function is None or owner[1] == function]


def count_keys(client: Any, namespace: str, function: str | None) -> int:
    """Return how many keys ``flush`` would delete."""
    return sum(len(page) for page in _owned(client, namespace, function))


#: Values ``flush`` reads under one label, with signing, to find one that verifies.
_VALUES_TRIED: Final = 8


def flush(client: Any, namespace: str, function: str | None, signer: Signer | None = None) -> int:
    """Delete a namespace's keys (or one function's) and tell coherent L1s; return the count.

    Each function whose keys were found is announced on the namespace's invalidation channel, so
    processes listening there drop their L1 entries of it too (signed with ``signer``: caches
    that sign ignore unsigned announcements). With ``signer``, only a function named by the
    caller, or one holding a value signed with that key, is announced: anyone can plant keys
    under any label, and a signed clear-all of a label they chose is theirs to use.
    """
    deleted = 0
    prefixes: set[str] = set() if function is None else {f"{namespace}:{function}"}
    tried: dict[str, int] = {}  # prefix -> values read to find a signed one
    for owned in _owned(client, namespace, function):
        for key, (_, label) in owned:
            if label in (TAGS, STATS):  # (they hold no values: no L1 has entries under their prefix)
                continue
            prefix = namespace if label == ADAPTER else f"{namespace}:{label}"
            if signer is None or prefix in prefixes:
                prefixes.add(prefix)
            elif tried.get(prefix, 0) < _VALUES_TRIED and not key.endswith((":gen", ":lock")):
                tried[prefix] = tried.get(prefix, 0) + 1
                payload = client.get(key)
                if isinstance(payload, bytes) and signer.verify(key, payload):
                    prefixes.add(prefix)
        if owned:
            deleted += int(client.unlink(*(key for key, _ in owned)))
    for prefix in sorted(prefixes):
        channel = channel_for(namespace)
        client.publish(channel, encode(channel, FLUSH_ORIGIN, prefix, None, signer))
    return deleted
