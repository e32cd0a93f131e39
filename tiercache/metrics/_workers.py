"""Figures of every worker process of a service, for one scrape to report their sum.

Behind gunicorn or uvicorn with several workers, a scrape reaches one worker at a time: a
collector that read only its own process reported 2,047 calls, then 1,953, in turn, and
Prometheus saw counter resets. Each process here writes its readings to a file of its own in
the directory prometheus_client's multiprocess mode uses (``PROMETHEUS_MULTIPROC_DIR``), once a
second from a daemon thread and when it exits (nothing on the call path); a scrape sums every
file. A process that has ended keeps its file, so sums never go back (prometheus_client's own
rule: empty the directory when the service starts); its gauges no longer count.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tiercache.metrics._source import COUNTERS, readings

__all__ = ["SHARE_EVERY", "Sum", "WorkerFiles", "sums_here"]

logger = logging.getLogger("tiercache")

#: How often each process writes its figures (a scrape sees others' this old at most).
SHARE_EVERY: Final = 1.0
_PREFIX: Final = "tiercache-"


@dataclass
class Sum:
    """One function's figures summed over the workers."""

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys((f for f, _ in COUNTERS), 0))
    l1_hits: int = 0
    l2_hits: int = 0
    l1_entries: int = 0  # live workers only
    degraded: bool = False  # any live worker
    buckets: list[int] = field(default_factory=list)  # cumulative, per bound
    count: int = 0
    total_ns: int = 0


def sums_here(bounds_ns: Sequence[int]) -> dict[str, Sum]:
    """Return every function's figures in this process alone."""
    sums: dict[str, Sum] = {}
    for reading in readings():
        stats = reading.stats
        sums[reading.function] = Sum(
            counters={name: getattr(stats, name) for name, _ in COUNTERS},
            l1_hits=stats.l1_hits,
            l2_hits=stats.l2_hits,
            l1_entries=stats.l1_size,
            degraded=stats.degraded,
            buckets=reading.latency.cumulative(bounds_ns),
            count=reading.latency.total_weight,
            total_ns=reading.latency.total_ns,
        )
    return sums


class WorkerFiles:
    """Keep this process's file in ``directory`` current; sum every worker's."""

    def __init__(self, directory: str | os.PathLike[str], bounds_ns: Sequence[int]) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(
                f"TiercacheCollector: multiprocess directory {str(self.directory)!r} does not exist"
            )
        self._bounds_ns = list(bounds_ns)
        self._stop = threading.Event()
        self._closed = False
        self._said: set[str] = set()
        self._start()
        os.register_at_fork(after_in_child=self._start)  # (a forked worker writes its own file)
        atexit.register(self._last_write)

    def _start(self) -> None:
        if self._closed:
            return
        self._stop = threading.Event()
        threading.Thread(target=self._keep_writing, name="tiercache-metrics", daemon=True).start()

    def _last_write(self) -> None:
        if not self._closed:
            self.write()

    def _keep_writing(self) -> None:
        stop = self._stop
        while not stop.wait(SHARE_EVERY):
            self.write()

    def close(self) -> None:
        """Write one last time and stop writing."""
        self._closed = True
        self._stop.set()
        self.write()

    def write(self) -> None:
        """Write this process's readings to its file (atomically: a scrape never reads half)."""
        functions = {name: dataclasses.asdict(total) for name, total in sums_here(self._bounds_ns).items()}
        document = {"pid": os.getpid(), "bounds_ns": self._bounds_ns, "functions": functions}
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tiercache-")
            with os.fdopen(descriptor, "w") as out:
                json.dump(document, out)
            os.replace(temporary, self.directory / f"{_PREFIX}{os.getpid()}.json")
        except OSError as exc:
            self._say_once("write", "tiercache: cannot write metrics to %s: %s", self.directory, exc)

    def sums(self) -> dict[str, Sum]:
        """Return every function's figures summed over the files of every worker (ours fresh)."""
        self.write()
        sums: dict[str, Sum] = {}
        for path, document in self._documents():
            try:
                self._add(sums, document)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # (another version's?)
                self._say_once(f"shape:{path.name}", "tiercache: skipped metrics file %s: %s", path, exc)
        return sums

    def _add(self, sums: dict[str, Sum], document: dict[str, Any]) -> None:
        """Add one worker's figures to ``sums``; a damaged file raises before it adds anything."""
        live = _alive(document.get("pid"))
        added = {}
        for name, figures in document["functions"].items():
            total = copy.deepcopy(sums.get(name)) or Sum(buckets=[0] * len(self._bounds_ns))
            for counter in total.counters:
                total.counters[counter] += int(figures["counters"].get(counter, 0))
            total.l1_hits += int(figures["l1_hits"])
            total.l2_hits += int(figures["l2_hits"])
            if live:  # (a worker's gauges count while it lives; its counters for good)
                total.l1_entries += int(figures["l1_entries"])
                total.degraded = total.degraded or bool(figures["degraded"])
            total.buckets = [a + int(b) for a, b in zip(total.buckets, figures["buckets"], strict=True)]
            total.count += int(figures["count"])
            total.total_ns += int(figures["total_ns"])
            added[str(name)] = total
        sums.update(added)

    def _documents(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path in sorted(self.directory.glob(f"{_PREFIX}*.json")):
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError) as exc:  # (gone meanwhile, or not ours)
                self._say_once(f"read:{path.name}", "tiercache: skipped metrics file %s: %s", path, exc)
                continue
            if not isinstance(document, dict) or document.get("bounds_ns") != self._bounds_ns:
                self._say_once(
                    f"bounds:{path.name}",
                    "tiercache: skipped metrics file %s: written with other histogram buckets",
                    path,
                )
                continue
            yield path, document

    def _say_once(self, tag: str, message: str, *args: Any) -> None:
        if tag not in self._said:
            self._said.add(tag)
            logger.warning(message, *args)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (someone's: alive)
        return True
    return True
