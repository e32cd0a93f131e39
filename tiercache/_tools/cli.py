"""The ``tiercache`` command: ``demo``, ``stats``, ``top``, ``flush`` and ``warm``.

Exit codes scripts can rely on: 0 done; 1 Redis could not be reached or failed; 2 bad usage (a
bad URL or argument, or a missing extra); 3 a flush that was not confirmed; 4 a warm in which
some calls raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import tiercache
from tiercache._l2 import keyspace as _admin
from tiercache._l2.errors import printable
from tiercache._l2.signing import Signer, signing_keys
from tiercache._l2.urls import redact_url
from tiercache.metrics import fleet

__all__ = ["main"]

OK, UNREACHABLE, USAGE, NOT_CONFIRMED, CALLS_FAILED = 0, 1, 2, 3, 4
# A password on the command line is in the process list for anyone on the host to read.
_URL_HELP = (
    "default: $TIERCACHE_REDIS_URL or localhost; prefer the variable for a URL with a password "
    "(a command-line argument shows in the process list)"
)


class CommandError(Exception):
    """A failure to report in one line and exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit code."""
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except CommandError as exc:
        print(f"tiercache {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiercache", description="Two-tier (L1 + Redis) memoization.")
    parser.add_argument("--version", action="version", version=f"tiercache {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run an adapter registry and a session store under load, three ways"
    )
    demo.add_argument("--workers", type=_positive, default=4, help="worker processes (default 4)")
    demo.add_argument(
        "--requests",
        type=_positive,
        default=1500,
        help="adapter resolutions per worker (6x as many sessions)",
    )
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.add_argument("--plot", type=Path, metavar="PNG", help="draw a latency chart into this file")
    demo.set_defaults(run=_demo)

    default_url = os.environ.get("TIERCACHE_REDIS_URL") or tiercache.Settings().redis_url
    stats = commands.add_parser("stats", help="key counts and memory per namespace and function (SCAN)")
    stats.add_argument("--redis-url", default=default_url, help=_URL_HELP)
    stats.add_argument("--namespace", help="only this namespace (exact; else up to the first colon)")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    stats.set_defaults(run=_stats)

    top = commands.add_parser(
        "top", help="live calls, hit rates and latency summed over every publishing process"
    )
    top.add_argument("--redis-url", default=default_url, help=_URL_HELP)
    top.add_argument("--namespace", help="only this namespace")
    top.add_argument("--every", type=_seconds, default=2.0, help="seconds between readings (default 2)")
    top.add_argument("--count", type=_positive, help="stop after this many readings (default: never)")
    top.add_argument("--json", action="store_true", help="print each reading as a line of JSON")
    top.set_defaults(run=_top)

    flush = commands.add_parser("flush", help="delete a namespace's keys, or one function's")
    flush.add_argument("--redis-url", default=default_url, help=_URL_HELP)
    flush.add_argument("--namespace", required=True, help="the namespace to flush")
    flush.add_argument("--function", help="only this function's keys (its label, e.g. myapp.resolve_adapter)")
    flush.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    flush.set_defaults(run=_flush)

    warm = commands.add_parser("warm", help="fill the cache of a @tiered_cache function from a file of calls")
    warm.add_argument(
        "target", metavar="MODULE:FUNCTION", help="the cached function, e.g. myapp.users:load_user"
    )
    warm.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="JSON lines: a list (positional arguments), an object "
        "(keyword arguments) or any other value (the one argument); - for standard input",
    )
    warm.add_argument(
        "--redis-url",
        help="the Redis to fill (default: what the application configures, else $TIERCACHE_REDIS_URL); "
        "a function with its own redis_url= keeps it",
    )
    warm.add_argument("--concurrency", type=_positive, default=8, help="calls at once (default 8)")
    warm.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    warm.set_defaults(run=_warm)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("tiercache")
    except importlib.metadata.PackageNotFoundError:  # (run from a source tree, not installed)
        return "(not installed)"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    low, high = fleet.PERIODS
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {low:g} to {high:g} seconds, not {text}")
    return value


def _needs(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise CommandError(f"needs {module}: pip install 'tiercache[{extra}]'", USAGE) from None


def _demo(args: argparse.Namespace) -> int:
    _needs("rich", "cli")
    if args.plot is not None:
        _needs("matplotlib", "plot")
    from tiercache._tools.demo import DemoError, DemoOptions, run  # noqa: PLC0415 - imports rich

    try:
        return run(DemoOptions(args.workers, args.requests, args.json, args.plot))
    except DemoError as exc:
        raise CommandError(str(exc), UNREACHABLE) from None
    except ValueError as exc:  # a bad TIERCACHE_REDIS_URL
        raise CommandError(str(exc), USAGE) from None


def _warn_of_secret(args: argparse.Namespace) -> None:
    if args.redis_url != os.environ.get("TIERCACHE_REDIS_URL") and _has_secret(args.redis_url):
        print(
            f"tiercache {args.command}: note: the password in --redis-url shows in the process list; "
            "set TIERCACHE_REDIS_URL instead",
            file=sys.stderr,
        )


@contextlib.contextmanager
def _connected(args: argparse.Namespace) -> Iterator[Any]:
    """Yield a client of ``--redis-url``, closed after; Redis failures become exit code 1."""
    _warn_of_secret(args)
    try:
        client = _admin.connect(args.redis_url, f"tiercache {args.command}")
    except ValueError as exc:
        raise CommandError(str(exc).removeprefix(f"tiercache {args.command}: "), USAGE) from None
    except _admin.FAILURES as exc:
        raise CommandError(f"cannot reach {redact_url(args.redis_url)}: {exc}", UNREACHABLE) from None
    try:
        yield client
    except _admin.FAILURES as exc:
        raise CommandError(f"{redact_url(args.redis_url)} failed: {exc}", UNREACHABLE) from None
    finally:
        client.close()


def _stats(args: argparse.Namespace) -> int:
    if not args.json:
        _needs("rich", "cli")
    with _connected(args) as client:
        found, others = _admin.usage(client, args.namespace)
        calls = fleet.read(client, args.namespace)
    if args.json:
        shown = {"functions": [asdict(u) for u in found], "other_keys": others, "fleet": calls.as_dict()}
        print(json.dumps(shown, indent=2))
        return OK
    from rich.console import Console  # noqa: PLC0415 - the CLI's optional extra
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(title=f"tiercache keys at {redact_url(args.redis_url)}", title_justify="left")
    table.add_column("namespace")
    table.add_column("function")
    table.add_column("keys", justify="right")
    table.add_column("memory", justify="right")
    for entry in found:
        table.add_row(
            Text(printable(entry.namespace, None)),  # (Text: never read as markup)
            Text(printable(entry.function, None)),
            f"{entry.keys:,}",
            _size(entry.memory_bytes),
        )
    console = Console()
    console.print(table)
    console.print(f"{others:,} other keys (not tiercache's) were scanned and left out.")
    console.print(_fleet_table(calls, None, 0.0))
    return OK


def _top(args: argparse.Namespace) -> int:
    if not args.json:
        _needs("rich", "cli")
    readings = itertools.count() if args.count is None else range(args.count)
    before: fleet.Fleet | None = None
    with _connected(args) as client:
        if args.json:
            for n in readings:
                if n:
                    time.sleep(args.every)
                now = fleet.read(client, args.namespace)
                print(json.dumps(now.as_dict()), flush=True)
            return OK
        from rich.console import Console  # noqa: PLC0415 - the CLI's optional extra
        from rich.live import Live  # noqa: PLC0415

        with Live(console=Console(), auto_refresh=False) as live:
            for n in readings:
                if n:
                    time.sleep(args.every)
                now = fleet.read(client, args.namespace)
                live.update(_fleet_table(now, before, args.every), refresh=True)
                before = now
    return OK


def _fleet_table(now: fleet.Fleet, before: fleet.Fleet | None, every: float) -> Any:
    """Return a table of ``now``'s sums; with the reading ``before`` it, calls per second too."""
    from rich import box  # noqa: PLC0415 - the CLI's optional extra
    from rich.console import Group  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    namespaces = sorted({namespace for namespace, _ in now.functions})
    title = f"calls summed over {len(now.processes)} publishing processes"
    if len(namespaces) == 1:
        title += f", namespace {printable(namespaces[0], None)!r}"
    table = Table(
        title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    if len(namespaces) > 1:
        table.add_column("namespace")
    table.add_column("function", no_wrap=True, overflow="ellipsis", min_width=12)
    table.add_column("calls", justify="right", no_wrap=True)
    if before is not None:
        table.add_column("calls/s", justify="right", no_wrap=True)
    for column in ("L1%", "L2%", "misses", "inval.", "p50", "p99"):
        table.add_column(column, justify="right", no_wrap=True)
    for (namespace, function), figures in sorted(now.functions.items()):
        shown = figures.as_dict()
        row: list[str | Text] = [Text(printable(namespace, None))] if len(namespaces) > 1 else []
        row.append(Text(printable(function, None)))
        row.append(f"{shown['calls']:,}")
        if before is not None:
            earlier = before.functions.get((namespace, function))
            done = shown["calls"] - (earlier.counters["calls"] if earlier is not None else 0)
            row.append(f"{max(done, 0) / every:,.0f}")
        row += [f"{shown['l1_hit_rate']:.0%}", f"{shown['l2_hit_rate']:.0%}", f"{shown['misses']:,}"]
        row.append(f"{shown['invalidations']:,}")
        row += [duration(shown["p50_ms"]), duration(shown["p99_ms"])]
        table.add_row(*row)
    notes = []
    if not now.processes:
        notes.append("No process publishes its figures here: call tiercache.metrics.fleet.publish() in each.")
    if now.skipped:
        notes.append(f"{now.skipped:,} stats keys were not tiercache's documents and were skipped.")
    return Group(table, *notes)


#: How durations read in the fleet table: each unit (per millisecond) below its limit.
_UNITS: Final = (
    ("ns", 1e6, 1000),
    ("us", 1e3, 1000),
    ("ms", 1.0, 1000),
    ("s", 1e-3, 10_000),
    ("h", 1 / 3.6e6, float("inf")),
)


def duration(ms: float) -> str:
    """Return ``ms`` milliseconds within 5% in five characters (up to 9,999 hours): columns never cut it."""
    for unit, scale, limit in _UNITS:
        shown = ms * scale
        if unit != "ns" and shown < 9.95:  # (below 10, one decimal fits)
            return f"{shown:.1f}{unit}"
        if round(shown) < limit:
            break
    return f"{shown:.0f}{unit}"


def _size(n: int) -> str:
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def _flush(args: argparse.Namespace) -> int:
    what = f"namespace {args.namespace!r}" + (f", function {args.function!r}" if args.function else "")
    with _connected(args) as client:
        if not args.yes:
            count = _admin.count_keys(client, args.namespace, args.function)
            if not _confirm(f"Delete {count:,} keys of {what} at {redact_url(args.redis_url)}? [y/N] "):
                raise CommandError(
                    "not confirmed; nothing deleted (pass --yes to skip the question)", NOT_CONFIRMED
                )
        deleted = _admin.flush(client, args.namespace, args.function, _signer())
    print(f"deleted {deleted:,} keys of {what}")
    return OK


def _has_secret(url: str) -> bool:
    return redact_url(url) != url


def _signer() -> Signer | None:
    """Sign the flush's announcement as the caches do (TIERCACHE_SIGNING_KEY), or not at all."""
    raw = os.environ.get("TIERCACHE_SIGNING_KEY")
    if not raw:
        return None
    try:
        return Signer(signing_keys(raw, "TIERCACHE_SIGNING_KEY"))
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), USAGE) from None


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:  # no terminal to answer from
        return False
    return answer.strip().lower() in {"y", "yes"}


def _warm(args: argparse.Namespace) -> int:
    if not args.quiet:
        _needs("rich", "cli")
    function = _cached_function(args.target)
    if args.redis_url is not None:
        _warn_of_secret(args)
        try:  # (after the import: it overrides what the application's module configured)
            tiercache.configure(redis_url=args.redis_url)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc), USAGE) from None
    items = _calls(args.file)
    if args.quiet:
        report = _run_warm(function, items, args.concurrency, None)
    else:
        from rich.progress import Progress  # noqa: PLC0415 - the CLI's optional extra

        with Progress(transient=False) as bar:
            task = bar.add_task(f"warming {args.target}", total=len(items))
            report = _run_warm(
                function, items, args.concurrency, lambda done, _total: bar.update(task, completed=done)
            )
    print(
        f"warmed {args.target}: {report.total:,} calls, {report.computed:,} computed, "
        f"{report.cached:,} already cached, {report.failed:,} failed"
    )
    for item, error in report.errors:
        print(f"  {json.dumps(_jsonable(item))}: {type(error).__name__}: {error}", file=sys.stderr)
    return CALLS_FAILED if report.failed else OK


def _cached_function(target: str) -> Any:
    module_name, _, path = target.partition(":")
    if not module_name or not path:
        raise CommandError(f"{target!r} is not MODULE:FUNCTION (e.g. myapp.users:load_user)", USAGE)
    sys.path.insert(0, os.getcwd())  # as python -m would: the application's own modules
    try:
        found: Any = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"cannot find {target}: {exc}", USAGE) from None
    finally:
        sys.path.pop(0)
    if not callable(getattr(found, "cache_warm", None)):
        raise CommandError(f"{target} is not a @tiered_cache function", USAGE)
    return found


def _calls(file: Path) -> list[Any]:
    """Return the calls ``file`` lists, one JSON value per line: a list's items go by position."""
    try:
        lines = sys.stdin.readlines() if str(file) == "-" else file.read_text().splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}", USAGE) from None
    calls: list[Any] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise CommandError(f"{file}:{number}: not JSON ({exc})", USAGE) from None
        calls.append(tuple(value) if isinstance(value, list) else value)
    return calls


def _run_warm(function: Any, items: list[Any], concurrency: int, progress: Any) -> Any:
    if inspect.iscoroutinefunction(function.cache_warm):
        return asyncio.run(function.cache_warm(items, concurrency=concurrency, progress=progress))
    return function.cache_warm(items, concurrency=concurrency, progress=progress)


def _jsonable(item: Any) -> Any:
    return list(item) if isinstance(item, tuple) else item
