"""Fleet stats: processes publish their figures to Redis; `tiercache stats`/`top` sum them.

Worker processes are real interpreters (as uvicorn's or gunicorn's workers), each with its own
counts, against a redis-server the suite started.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tiercache
from tiercache import tiered_cache
from tiercache._core.stats import LatencyHistogram
from tiercache._l2.keyspace import STATS, owner_of
from tiercache._tools import cli as _cli
from tiercache._tools.redis_process import RedisProcess, free_port
from tiercache.metrics import fleet

pytestmark = pytest.mark.redis_server

ROOT = Path(__file__).resolve().parents[3]

# A worker: its calls (some repeated, some invalidated), its figures published, its own
# cache_stats() printed; then it stays alive until its stdin closes, as a worker would.
WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    import tiercache
    from tiercache import tiered_cache
    from tiercache.metrics import fleet

    url, namespace, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tiercache.configure(redis_url=url, namespace=namespace)
    fleet.publish(every=0.2)

    @tiered_cache(ttl_l1=60, ttl_l2=60, name="fleet.resolve_adapter")
    def resolve_adapter(category, name):
        return f"{category}/{name}"

    @tiered_cache(ttl_l1=60, ttl_l2=60, name="fleet.get_session")
    async def get_session(session_id):
        return {"id": session_id}

    for i in range(n):
        resolve_adapter("db", i % 7)
    for i in range(n // 2):
        resolve_adapter.cache_invalidate("db", i % 3)

    async def sessions():
        for i in range(2 * n):
            await get_session(i % 11)
    asyncio.run(sessions())
    fleet.publish_now()
    print(json.dumps({name: s.as_dict() for name, s in tiercache.stats().items()}), flush=True)
    sys.stdin.read()
    """
)

SUMMED = ("calls", "l1_hits", "l2_hits", "misses", "coalesced", "invalidations", "l2_lookups")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = _cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_sums_the_figures_of_four_worker_processes(
    real_l2: str, isolated_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tiercache stats` over four workers reports what their four cache_stats() add up to."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, real_l2, isolated_settings, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for n in (40, 60, 80, 100)
    ]
    try:
        own = [json.loads(worker.stdout.readline()) for worker in workers]  # type: ignore[union-attr]
        code, out, err = cli(
            capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings, "--json"
        )
        assert code == 0, err
        reported = json.loads(out)["fleet"]
        assert len(reported["processes"]) == 4 and reported["skipped"] == 0
        assert {p["pid"] for p in reported["processes"]} == {w.pid for w in workers}
        summed = {entry["function"]: entry for entry in reported["functions"]}
        assert set(summed) == {"fleet.resolve_adapter", "fleet.get_session"}
        for function, figures in summed.items():
            assert figures["processes"] == 4
            for counter in SUMMED:
                assert figures[counter] == sum(stats[function][counter] for stats in own), (function, counter)
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert summed["fleet.resolve_adapter"]["invalidations"] == 20 + 30 + 40 + 50
        assert summed["fleet.resolve_adapter"]["calls"] == 280

        code, out, err = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings)
        assert code == 0, err
        assert "4 publishing processes" in out and "fleet.resolve_adapter" in out

        code, out, err = cli(
            capsys, "top", "--redis-url", real_l2, "--namespace", isolated_settings,
            "--count", "2", "--every", "0.05", "--json",
        )  # fmt: skip
        assert code == 0, err
        readings = [json.loads(line) for line in out.splitlines()]
        assert len(readings) == 2 and all(len(r["processes"]) == 4 for r in readings)

        code, out, err = cli(
            capsys, "top", "--redis-url", real_l2, "--namespace", isolated_settings,
            "--count", "2", "--every", "0.05",
        )  # fmt: skip
        assert code == 0, err
        assert "fleet.get_session" in out and "calls/s" in out and "\u2026" not in out, out
    finally:
        for worker in workers:
            worker.communicate(timeout=30)
    assert all(worker.returncode == 0 for worker in workers)


def test_a_forked_worker_publishes_under_a_key_of_its_own(
    real_l2: str, isolated_settings: str, redis_server: RedisProcess
) -> None:
    """A worker forked after publish() (gunicorn's preload) writes its own figures, not its parent's key."""
    lookup = tiered_cache(ttl_l1=60, name="fleet.forked")(lambda n: n)
    lookup(1)
    fleet.publish(every=0.1)
    try:
        context = multiprocessing.get_context("fork")
        child = context.Process(target=_call_and_publish, args=(lookup,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        fleet.publish_now()
        found = fleet.read(redis_server.client(), isolated_settings)
        assert len(found.processes) == 2
        assert {p.pid for p in found.processes} == {os.getpid(), child.pid}
        assert found.functions[(isolated_settings, "fleet.forked")].counters["calls"] == 1 + 4
    finally:
        fleet.stop()


def _call_and_publish(lookup) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        lookup(n)
    assert fleet.publish_now() == 1


def test_planted_stats_keys_are_skipped_and_counted_never_trusted(
    real_l2: str, isolated_settings: str, redis_server: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anyone can write a stats key: damaged, oversized, mistyped or deep documents are skipped whole."""
    client = redis_server.client()
    lookup = tiered_cache(ttl_l1=60, name="fleet.genuine")(lambda n: n)
    lookup(1)
    fleet.publish_now()
    good = json.loads(next(client.get(k) for k in client.scan_iter(f"{isolated_settings}:stats:*")))
    figures = good["functions"]["fleet.genuine"]
    planted = {
        "not json": b"\xff{{",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "too long": json.dumps({**good, "padding": "x" * (2 << 20)}).encode(),
        "a bool for a count": {"counters": {**figures["counters"], "calls": True}},
        "a negative count": {"l1_hits": -5},
        "a bucket past the histogram": {"latency": [[5000, 1]]},
        "a huge count": {"total_ns": 1 << 70},
        "another format": None,
    }
    for n, (what, change) in enumerate(planted.items()):
        if isinstance(change, bytes):
            body = change
        elif change is None:
            body = json.dumps({**good, "format": 99}).encode()
        else:
            body = json.dumps({**good, "functions": {f"planted {what}": {**figures, **change}}}).encode()
        client.set(f"{isolated_settings}:stats:{n:016x}", body)
    client.set(f"{isolated_settings}:stats:{'f' * 16}", json.dumps(
        {**good, "host": "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07", "functions": {"\x1b[2J[/bold]": figures}}
    ))  # fmt: skip
    found = fleet.read(client, isolated_settings)
    assert found.skipped == len(planted)
    assert {name for _, name in found.functions} == {"fleet.genuine", "\x1b[2J[/bold]"}
    code, out, err = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J[/bold]" in out
    assert f"{len(planted)} stats keys were not tiercache's documents" in out


def test_published_keys_expire_and_flush_deletes_them_without_announcing(
    real_l2: str, isolated_settings: str, redis_server: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis_server.client()
    # (the write is a one-off client's connect and SET: a loaded machine may pass 0.1 s)
    tiercache.configure(redis_url=real_l2, timeout=5.0, connect_timeout=5.0)
    # (held: the registry holds cached functions weakly, and a function the program dropped
    # publishes nothing; unheld, it lived only until the next garbage collection)
    expiring = tiered_cache(ttl_l1=60, name="fleet.expiring")(lambda n: n)
    expiring(1)
    gc.collect()
    fleet.publish(every=0.5)
    try:
        assert fleet.publish_now() == 1
    finally:
        fleet.stop()
    (key,) = client.scan_iter(f"{isolated_settings}:stats:*")
    assert owner_of(key.decode(), isolated_settings) == (isolated_settings, STATS)
    assert 0 < client.ttl(key) <= 10  # 3 periods, at least 10 s: an ended process drops out
    code, _, err = cli(
        capsys, "flush", "--redis-url", real_l2, "--namespace", isolated_settings, "--yes"
    )  # fmt: skip
    assert code == 0, err
    assert not list(client.scan_iter(f"{isolated_settings}:stats:*"))


def test_publishing_to_a_redis_that_is_down_logs_once_and_recovers(
    isolated_settings: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path, free_port()).start()
    try:
        # (a stopped server refuses at once: the margin is for a loaded machine's restart)
        tiercache.configure(redis_url=server.url, timeout=1.0, connect_timeout=1.0)
        lookup = tiered_cache(ttl_l1=60, name="fleet.outage")(lambda n: n)
        lookup(1)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="tiercache"):
            assert fleet.publish_now() == 0
            assert fleet.publish_now() == 0
        # (Only this server's: an endpoint another test left, its server gone, may still be
        # alive until the garbage collector runs, and says so once too.)
        said = [
            r.getMessage()
            for r in caplog.records
            if f"cannot publish stats to {server.url}" in r.getMessage()
        ]
        assert len(said) == 1
        assert lookup(2) == 2  # (the calls never noticed)
        server.start()
        assert fleet.publish_now() == 1
        assert fleet.read(server.client(), isolated_settings).functions
    finally:
        server.stop()


def test_publish_refuses_a_period_it_cannot_keep() -> None:
    for every in (0, -1, 0.01, 10_000, True, "5"):
        with pytest.raises(ValueError, match=r"publish\(\): every must be"):
            fleet.publish(every)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**10), max_size=30), min_size=1, max_size=5))
def test_summed_histograms_give_the_quantiles_of_all_the_calls(processes: list[list[int]]) -> None:
    """The fleet's p50/p99 are those of every call, not an average of each process's."""
    whole = LatencyHistogram()
    total = fleet.Figures()
    for durations in processes:
        own = LatencyHistogram()
        for ns in durations:
            own.record(ns)
            whole.record(ns)
        document = {
            "counters": dict.fromkeys(total.counters, 0),
            **dict.fromkeys(("l1_hits", "l2_hits", "l2_lookups", "l1_entries"), 0),
            "degraded": False,
            "latency": [[i, c] for i, c in enumerate(own.counts) if c],
            "total_ns": own.total_ns,
        }
        fleet._add(total, document)
    for q in (0.5, 0.99):
        assert total.latency.quantile(q) == whole.quantile(q)
    assert total.latency.total_weight == whole.total_weight and total.latency.total_ns == whole.total_ns


@given(st.floats(0, 1e10, allow_nan=False))
@example(9_999_500.0)  # (past 9,999 s: hours, which read "3h" for 2.8 h at first)
@example(0.0013)  # (1.3 us, which read "1us" at first)
def test_a_duration_reads_right_in_five_characters(ms: float) -> None:
    shown = _cli.duration(ms)
    read = re.fullmatch(r"([0-9.]+)(ns|us|ms|s|h)", shown)
    assert read is not None, shown
    number, unit = read.groups()
    per_ms = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "h": 3.6e6}[unit]
    assert len(shown) <= 5 and abs(float(number) * per_ms - ms) <= 0.051 * ms + 5e-7


def test_the_fleet_table_fits_a_slow_p99_in_80_columns() -> None:
    """A p99 of 120 ms read "119.5…" in an 80-column terminal: the table cut it short."""
    from rich.console import Console  # noqa: PLC0415 - the CLI's extra

    found = fleet.Fleet()
    for function, ns in (("fleet.resolve_adapter", 119_500_000), ("fleet.get_session", 4_800_000)):
        figures = found.functions[("test-namespace", function)] = fleet.Figures(processes=4)
        figures.counters["calls"] = 280
        figures.latency.record(ns, 100)
    console = Console(width=80, record=True)
    console.print(_cli._fleet_table(found, found, every=1.0))
    out = console.export_text()
    assert "fleet.resolve_adapter" in out and "120ms" in out and "\u2026" not in out, out
