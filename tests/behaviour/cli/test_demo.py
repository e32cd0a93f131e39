"""The demo: three phases on worker processes, its JSON, its table, its chart, its fallbacks."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiercache._tools import cli as _cli
from tiercache._tools import demo as _demo
from tiercache._tools.demo.report import as_json
from tiercache._tools.demo.runner import FunctionResult, PhaseResult
from tiercache._tools.demo.scenario import Zipf
from tiercache._tools.redis_process import RedisProcess, free_port

WORKERS, REQUESTS = 2, 40


def run_demo(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = _cli.main(["demo", "--workers", str(WORKERS), "--requests", str(REQUESTS), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.redis_server
def test_three_phases_with_l2(redis_server: RedisProcess, monkeypatch, capsys, tmp_path):
    """With a reachable L2 the demo runs all three phases; caching cuts backend calls and latency."""
    monkeypatch.setenv("TIERCACHE_REDIS_URL", redis_server.url)
    chart = tmp_path / "chart.png"
    code, out, err = run_demo(capsys, "--json", "--plot", str(chart))
    assert code == 0, err
    result = json.loads(out)
    assert result["l2"] == redis_server.url and result["workers"] == WORKERS
    none, l1, both = result["phases"]
    assert [none["name"], l1["name"], both["name"]] == ["no cache", "L1 only", "L1 + L2"]
    for function, requests in (("resolve_adapter", REQUESTS), ("get_session", 6 * REQUESTS)):
        assert all(
            phase["functions"][function]["requests"] == WORKERS * requests for phase in result["phases"]
        )
        assert none["functions"][function]["backend_calls"] == WORKERS * requests
        assert none["functions"][function]["latency_reduction_pct"] is None
        assert l1["functions"][function]["l1_hits"] > 0
        assert l1["functions"][function]["l2_hits"] == 0
        assert l1["functions"][function]["backend_calls"] < WORKERS * requests
        assert l1["functions"][function]["latency_reduction_pct"] > 0
    # The cross-process lock makes one worker compute an adapter the other then reads from L2.
    adapters_l1, adapters_both = l1["functions"]["resolve_adapter"], both["functions"]["resolve_adapter"]
    assert adapters_both["backend_calls"] < adapters_l1["backend_calls"]
    assert adapters_both["l2_hits"] > 0
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "L2: redis://" in err  # status lines go to stderr when stdout is JSON
    assert redis_server.client().keys("tiercache-demo-*") == []  # it cleaned up after itself


def test_runs_l1_only_without_redis_server(monkeypatch, capsys):
    """With no TIERCACHE_REDIS_URL and no redis-server installed it says so and skips the L2 phase."""
    monkeypatch.delenv("TIERCACHE_REDIS_URL")
    monkeypatch.setattr(_demo, "redis_server_binary", lambda: None)
    code, out, _ = run_demo(capsys)
    assert code == 0
    assert "redis-server is not installed and TIERCACHE_REDIS_URL is unset: running L1 only." in out
    assert "no cache" in out and "L1 only" in out and "L1 + L2" not in out
    assert "resolve_adapter" in out and "get_session" in out


def test_says_when_the_configured_redis_does_not_answer(monkeypatch, capsys):
    """An unreachable TIERCACHE_REDIS_URL is reported, and the demo still runs in L1 only."""
    monkeypatch.setenv("TIERCACHE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, out, err = run_demo(capsys, "--json")
    assert code == 0
    assert "does not answer: running L1 only" in err
    assert [phase["name"] for phase in json.loads(out)["phases"]] == ["no cache", "L1 only"]


def test_bad_redis_url_is_a_usage_error(monkeypatch, capsys):
    """A malformed TIERCACHE_REDIS_URL exits with 2 and names the variable."""
    monkeypatch.setenv("TIERCACHE_REDIS_URL", "http://127.0.0.1:1/0")
    code, _, err = run_demo(capsys)
    assert code == 2
    assert "TIERCACHE_REDIS_URL" in err and "must start with one of" in err


def test_bad_arguments_exit_2(capsys):
    """argparse rejects a non-positive worker count with exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["demo", "--workers", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def figures(mean_ms: float) -> dict[str, FunctionResult]:
    result = FunctionResult(100, mean_ms, mean_ms, mean_ms, 0, 0, 100)
    return {"resolve_adapter": result, "get_session": result}


def test_reduction_is_against_the_no_cache_phase():
    """Latency reduction is 1 - mean / mean without cache, in percent; the baseline has none."""
    phases = [
        PhaseResult("no cache", 1.0, "ns1", figures(20.0)),
        PhaseResult("L1 only", 1.0, "ns2", figures(5.0)),
    ]
    shown = as_json(phases, l2=None, workers=1)["phases"]
    assert shown[0]["functions"]["get_session"]["latency_reduction_pct"] is None
    assert shown[1]["functions"]["get_session"]["latency_reduction_pct"] == pytest.approx(75.0)


@given(st.integers(1, 500), st.floats(0.5, 2.0), st.integers(0, 2**32))
def test_zipf_draws_stay_in_range(n, s, seed):
    """Every rank drawn lies in 0..n-1."""
    zipf = Zipf(n, s, random.Random(seed))
    assert all(0 <= zipf.draw() < n for _ in range(50))


def test_zipf_is_skewed():
    """Rank 0 is drawn about twice as often as rank 1 when s = 1."""
    zipf = Zipf(100, 1.0, random.Random(1))
    counts = Counter(zipf.draw() for _ in range(20_000))
    assert 1.7 < counts[0] / counts[1] < 2.3
    assert counts[0] > counts[10] > counts[90]


def test_the_table_fits_80_columns_without_cutting_a_cell():
    """The widest figures the demo can print, on an 80-column terminal: nothing cut off ("…")."""
    from rich.console import Console  # noqa: PLC0415 - the cli extra

    widest = FunctionResult(900_000, 12_345.6, 98_765.4, 54_321.0, 899_999, 899_999, 900_000)
    slow = FunctionResult(900_000, 0.05, 999.9, 0.5, 450_000, 450_000, 900_000)
    functions = {"resolve_adapter": widest, "get_session": slow}
    phases = [PhaseResult(name, 1.0, "ns", functions) for name in ("no cache", "L1 only", "L1 + L2")]
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    console.print(_demo.report.table(phases))
    shown = console.export_text()
    assert "…" not in shown and max(len(line) for line in shown.splitlines()) <= 80
    for cell in ("12.3 s", "98.8 s", "100.0%", "900,000", "50.0 µs", "999.9 ms", "500 µs", "L1 + L2"):
        assert cell in shown, cell
