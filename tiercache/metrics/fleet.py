"""Fleet stats: every process's counters, published to its Redis and summed by whoever reads them.

``cache_stats()`` and a scrape see one process; a service runs many. After ``publish()``, each
process writes its functions' figures to ``<namespace>:stats:<process token>`` on the Redis
they use (one JSON document per process and namespace, expiring after three periods), from a
daemon thread every ``every`` seconds and once more at exit: nothing on the call path, one
``SET`` a period per Redis. ``tiercache stats`` and ``tiercache top`` sum the documents they find
(``read()``), latency histograms included, so p50/p99 are the fleet's, not an average of
averages.

Anything read from Redis may have been planted: a document that is not exactly what
``publish`` writes is skipped whole and counted, and is read at most ``MAX_DOCUMENT_BYTES``
long. The figures are as trustworthy as the Redis they come from: a writer there can lie in
them, never run code or reach the terminal (the CLI prints names escaped).
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from tiercache._core.stats import LatencyHistogram
from tiercache._decorator import registry as _registry
from tiercache._l2.endpoint import Endpoint
from tiercache._l2.keyspace import pages, pattern_for
from tiercache._l2.layout import STATS_SEGMENT
from tiercache.metrics._source import COUNTERS

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "PERIODS",
    "Figures",
    "Fleet",
    "Process",
    "publish",
    "publish_now",
    "read",
    "stop",
]

logger = logging.getLogger("tiercache")

#: The longest document a reader takes (a process with thousands of functions stays under it).
MAX_DOCUMENT_BYTES: Final = 1 << 20
#: The document format; a reader skips (and counts) documents of another.
FORMAT: Final = 1
#: The periods publish() and ``tiercache top --every`` take, in seconds.
PERIODS: Final = (0.05, 3600.0)
_TOKEN: Final = re.compile(r"[0-9a-f]{16}")
_MAX_COUNT: Final = 1 << 62
_COUNTER_NAMES: Final = tuple(name for name, _ in COUNTERS)


@dataclass
class Figures:
    """One function's figures, summed over the processes that reported it."""

    processes: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTER_NAMES, 0))
    l1_hits: int = 0
    l2_hits: int = 0
    l2_lookups: int = 0
    l1_entries: int = 0
    degraded: int = 0  # processes that skip Redis right now
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures, hit rates and p50/p99 (milliseconds) as a JSON-ready dict."""
        calls = self.counters["calls"]
        return {
            "processes": self.processes,
            **self.counters,
            "l1_hits": self.l1_hits,
            "l2_hits": self.l2_hits,
            "l2_lookups": self.l2_lookups,
            "l1_entries": self.l1_entries,
            "degraded_processes": self.degraded,
            "l1_hit_rate": self.l1_hits / calls if calls else 0.0,
            "l2_hit_rate": self.l2_hits / self.l2_lookups if self.l2_lookups else 0.0,
            "p50_ms": self.latency.quantile(0.5) / 1e6,
            "p99_ms": self.latency.quantile(0.99) / 1e6,
        }


@dataclass(frozen=True)
class Process:
    """One process that reported: where it runs and how old its figures are."""

    namespace: str
    host: str
    pid: int
    age_seconds: float


@dataclass
class Fleet:
    """What ``read()`` found: each (namespace, function)'s sums, the processes, what it skipped."""

    functions: dict[tuple[str, str], Figures] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    skipped: int = 0  # documents that were not what publish() writes

    def as_dict(self) -> dict[str, Any]:
        """Return everything as a JSON-ready dict."""
        return {
            "processes": [vars(process) for process in self.processes],
            "skipped": self.skipped,
            "functions": [
                {"namespace": namespace, "function": function, **figures.as_dict()}
                for (namespace, function), figures in sorted(self.functions.items())
            ],
        }


# -- writing ---------------------------------------------------------------------------------


class _Publisher:
    """The process's writer: its key's token, and the daemon thread while it publishes."""

    def __init__(self) -> None:
        self.every = 5.0
        self.token = secrets.token_hex(8)
        self._stop: threading.Event | None = None
        self._failing: set[str] = set()  # endpoints whose last write failed (logged once a streak)

    @property
    def running(self) -> bool:
        return self._stop is not None

    def start(self, every: float) -> None:
        self.every = every
        if self._stop is None:
            self._stop = stop = threading.Event()
            threading.Thread(target=self._run, args=(stop,), name="tiercache-fleet", daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def after_fork(self) -> None:
        self.token = secrets.token_hex(8)  # (the child is another process: a key of its own)
        self._failing = set()
        if self._stop is not None:  # (the parent's thread did not come along)
            self._stop = None
            self.start(self.every)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            self.publish()

    def publish(self) -> int:
        """Write every group's document now; return how many were written."""
        written = 0
        ttl = max(math.ceil(3 * self.every), 10)
        for (endpoint, namespace), body in _documents().items():
            key = f"{namespace}:{STATS_SEGMENT}:{self.token}"
            try:
                done = endpoint.aside(functools.partial(_write, key=key, body=body, ttl=ttl))
            except Exception as exc:  # (Redis down or refusing: the next period tries again)
                if endpoint.name not in self._failing:
                    self._failing.add(endpoint.name)
                    logger.warning("tiercache: cannot publish stats to %s: %s", endpoint.name, exc)
                continue
            self._failing.discard(endpoint.name)
            written += done is not None
        return written


def _write(client: Any, *, key: str, body: bytes, ttl: int) -> bool:
    return bool(client.set(key, body, ex=ttl))


def _documents() -> dict[tuple[Endpoint, str], bytes]:
    """Return this process's document for each (Redis, namespace) its functions have used."""
    groups: dict[tuple[Endpoint, str], dict[str, Any]] = {}
    for name, cache in _registry.named_caches():
        endpoint = cache.endpoint_in_use()
        if endpoint is None:
            continue  # (L1 only, or has not reached Redis yet)
        stats = cache.snapshot()
        latency = cache.stats.latency()
        groups.setdefault((endpoint, cache.namespace), {})[name] = {
            "counters": {counter: getattr(stats, counter) for counter in _COUNTER_NAMES},
            "l1_hits": stats.l1_hits,
            "l2_hits": stats.l2_hits,
            "l2_lookups": stats.l2_lookups,
            "l1_entries": stats.l1_size,
            "degraded": stats.degraded,
            "latency": [[index, count] for index, count in enumerate(latency.counts) if count],
            "total_ns": latency.total_ns,
        }
    header = {"format": FORMAT, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    return {
        group: json.dumps({**header, "functions": functions}, separators=(",", ":")).encode()
        for group, functions in groups.items()
    }


_lock = threading.Lock()
_publisher = _Publisher()


def publish(every: float = 5.0) -> None:
    """Publish this process's figures to Redis every ``every`` seconds, for fleet-wide stats.

    Call it once in every process of the service (in a module each worker imports; a worker
    forked after the call publishes on its own). Calling it again changes the period. Each
    Redis and namespace the process's functions use gets one key, ``<namespace>:stats:<token>``,
    which expires ``3 * every`` seconds (at least 10) after the last write: a process that has
    ended leaves the sums within that time. See ``tiercache stats`` and ``tiercache top``.
    """
    low, high = PERIODS
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not low <= every <= high:
        raise ValueError(
            f"tiercache.metrics.fleet.publish(): every must be {low:g} to {high:g} seconds, not {every!r}"
        )
    with _lock:
        _publisher.start(float(every))


def publish_now() -> int:
    """Write this process's documents at once (publishing or not); return how many were written."""
    return _publisher.publish()


def stop() -> None:
    """Stop publishing (the keys written expire by themselves)."""
    with _lock:
        _publisher.stop()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _publisher.after_fork()


def _at_exit() -> None:
    if _publisher.running:
        _publisher.publish()  # (a short-lived process's last figures count, until they expire)


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)


# -- reading ---------------------------------------------------------------------------------


def read(client: Any, namespace: str | None = None) -> Fleet:
    """Return the figures every publishing process wrote to ``client``'s Redis, summed.

    ``namespace``: only that namespace's (else every one found). Keys are found by SCAN and
    each read is at most ``MAX_DOCUMENT_BYTES`` long (GETRANGE): a planted key costs no more.
    """
    fleet = Fleet()
    now = time.time()
    for keys in _stats_keys(client, namespace):
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            pipeline.getrange(key, 0, MAX_DOCUMENT_BYTES)
        for key, raw in zip(keys, pipeline.execute(), strict=True):
            if not raw:
                continue  # expired between SCAN and GETRANGE
            try:
                host, pid, at, functions = _parse(raw)
            except (ValueError, TypeError, KeyError, RecursionError):
                fleet.skipped += 1
                continue
            owner = key[: -len(f":{STATS_SEGMENT}:") - 16]
            fleet.processes.append(Process(owner, host, pid, max(now - at, 0.0)))
            for name, figures in functions.items():
                total = fleet.functions.setdefault((owner, name), Figures())
                _add(total, figures)
    fleet.processes.sort(key=lambda p: (p.namespace, p.host, p.pid))
    return fleet


def _stats_keys(client: Any, namespace: str | None) -> Iterator[list[str]]:
    match = f"*:{STATS_SEGMENT}:*" if namespace is None else pattern_for(namespace, STATS_SEGMENT)
    for page in pages(client, match):
        if keys := [key for key in page if _is_stats_key(key, namespace)]:
            yield keys


def _is_stats_key(key: str, namespace: str | None) -> bool:
    head, _, token = key.rpartition(":")
    if namespace is not None:  # (a namespace with a colon matches others' keys too)
        return head == f"{namespace}:{STATS_SEGMENT}" and bool(_TOKEN.fullmatch(token))
    return head.endswith(f":{STATS_SEGMENT}") and bool(_TOKEN.fullmatch(token))


def _parse(raw: bytes) -> tuple[str, int, float, dict[str, dict[str, Any]]]:
    """Return a document's (host, pid, at, functions); raise ValueError unless it is publish()'s."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError("too long")
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a stats document of this format")
    host, pid, at, functions = document["host"], document["pid"], document["at"], document["functions"]
    if not (isinstance(host, str) and len(host) <= 255 and _count(pid) and isinstance(at, (int, float))):
        raise ValueError("bad header")
    if not (isinstance(functions, dict) and math.isfinite(at)):
        raise ValueError("bad header")
    checked = {}
    for name, figures in functions.items():
        if not (isinstance(name, str) and len(name) <= 1000 and isinstance(figures, dict)):
            raise ValueError("bad function")
        counters = figures["counters"]
        if not isinstance(counters, dict) or not all(_count(counters.get(c)) for c in _COUNTER_NAMES):
            raise ValueError("bad counters")
        plain = [figures[k] for k in ("l1_hits", "l2_hits", "l2_lookups", "l1_entries", "total_ns")]
        latency = figures["latency"]
        if not all(_count(v) for v in plain) or not isinstance(figures["degraded"], bool):
            raise ValueError("bad figures")
        if not isinstance(latency, list) or len(latency) > LatencyHistogram.SIZE:
            raise ValueError("bad latency")
        for pair in latency:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_count(v) for v in pair)):
                raise ValueError("bad latency")
            if pair[0] >= LatencyHistogram.SIZE:
                raise ValueError("bad latency")
        checked[name] = figures
    return host, pid, float(at), checked


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < _MAX_COUNT


def _add(total: Figures, figures: dict[str, Any]) -> None:
    total.processes += 1
    for counter in _COUNTER_NAMES:
        total.counters[counter] += figures["counters"][counter]
    total.l1_hits += figures["l1_hits"]
    total.l2_hits += figures["l2_hits"]
    total.l2_lookups += figures["l2_lookups"]
    total.l1_entries += figures["l1_entries"]
    total.degraded += figures["degraded"]
    histogram = total.latency
    for index, count in figures["latency"]:
        histogram.counts[index] += count
        histogram.total_weight += count
    histogram.total_ns += figures["total_ns"]
