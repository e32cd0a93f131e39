"""``tiercache demo``: an adapter registry and a session store under load, three ways.

The same skewed request stream runs on several worker processes with no cache, with L1 only, and
with L1 + L2, and the demo prints what each phase cost: latency per function, hits per tier, and
how many calls reached the slow backends. Needs the ``cli`` extra (rich).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tiercache._l2 import keyspace as _admin
from tiercache._l2.urls import redact_url
from tiercache._tools.demo import report as report
from tiercache._tools.demo.runner import DemoError, PhaseResult, run_phase
from tiercache._tools.demo.scenario import FUNCTIONS
from tiercache._tools.redis_process import RedisProcess, redis_server_binary

__all__ = ["DemoError", "DemoOptions", "run"]


@dataclass(frozen=True)
class DemoOptions:
    """How big a run to make and what to print."""

    workers: int = 4
    adapter_requests: int = 1500  # per worker; each worker also makes 6x as many session lookups
    as_json: bool = False
    plot: Path | None = None

    @property
    def session_requests(self) -> int:
        """Session lookups per worker."""
        return self.adapter_requests * 6


@contextlib.contextmanager
def _l2_url(say: Callable[[str], None]) -> Iterator[str | None]:
    """Yield the URL L2 should use for the demo, or None to run L1 only; say where it came from."""
    url = os.environ.get("TIERCACHE_REDIS_URL")
    if url:
        if _answers(url):  # raises ValueError for a malformed URL, naming the variable
            say(f"L2: {redact_url(url)} (from TIERCACHE_REDIS_URL)")
            yield url
        else:
            say(f"L2: {redact_url(url)} (TIERCACHE_REDIS_URL) does not answer: running L1 only.")
            yield None
        return
    if redis_server_binary() is None:
        say("L2: redis-server is not installed and TIERCACHE_REDIS_URL is unset: running L1 only.")
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tiercache-demo-") as directory:
        server = RedisProcess(Path(directory)).start()
        try:
            say(f"L2: a throwaway redis-server at {server.url} (stopped when the demo ends)")
            yield server.url
        finally:
            server.stop()


def _answers(url: str) -> bool:
    try:
        _admin.connect(url, "TIERCACHE_REDIS_URL").close()
    except _admin.FAILURES:
        return False
    return True


def _clean_up(url: str, phases: list[PhaseResult]) -> None:
    """Delete the keys the phases left in L2: a shared Redis should not keep the demo's data."""
    with (
        contextlib.suppress(*_admin.FAILURES),
        contextlib.closing(_admin.connect(url, "tiercache demo")) as client,
    ):
        for phase in phases:
            _admin.flush(client, phase.namespace, None)


def run(options: DemoOptions) -> int:
    """Run every phase, print the table (or JSON) and draw the chart; return the exit code."""
    out = Console()
    status = Console(stderr=True) if options.as_json else out
    with _l2_url(lambda line: status.print(line, soft_wrap=True)) as url:
        results = _run_phases(options, url, status)
        if url is not None:
            _clean_up(url, results)
    if options.as_json:
        shown = report.as_json(results, l2=url and redact_url(url), workers=options.workers)
        print(json.dumps(shown, indent=2))
    else:
        out.print()
        out.print(report.table(results))
        requests = {f: results[0].functions[f].requests for f in FUNCTIONS}
        out.print(
            f"{options.workers} worker processes made {requests['resolve_adapter']:,} adapter resolutions "
            f"and {requests['get_session']:,} session lookups per phase. Backend calls: calls that "
            "reached the slow lookup. Mean latency: its change against no cache."
        )
    if options.plot is not None:
        report.plot(results, options.plot)
        status.print(f"chart written to {options.plot}", soft_wrap=True)
    return 0


def _run_phases(options: DemoOptions, url: str | None, status: Console) -> list[PhaseResult]:
    """Run no cache, L1 only and (with a URL) L1 + L2, with a progress bar per phase."""
    phases: list[tuple[str, bool, str | None]] = [("no cache", False, None), ("L1 only", True, None)]
    if url is not None:
        phases.append(("L1 + L2", True, url))
    total = options.workers * (options.adapter_requests + options.session_requests)
    columns = (TextColumn("{task.description:10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results: list[PhaseResult] = []
    with Progress(*columns, console=status, transient=options.as_json) as progress:
        for name, enabled, phase_url in phases:
            task = progress.add_task(name, total=total)

            def advance(n: int, task: TaskID = task) -> None:
                progress.advance(task, n)

            results.append(
                run_phase(
                    name,
                    enabled=enabled,
                    redis_url=phase_url,
                    workers=options.workers,
                    adapter_requests=options.adapter_requests,
                    session_requests=options.session_requests,
                    on_progress=advance,
                )
            )
    return results
