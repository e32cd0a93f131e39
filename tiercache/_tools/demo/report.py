"""The demo's results as a table, as JSON, and as a chart."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.table import Table

from tiercache._tools.demo.runner import PhaseResult
from tiercache._tools.demo.scenario import FUNCTIONS

__all__ = ["as_json", "plot", "table"]


def _reduction(phase: PhaseResult, baseline: PhaseResult, function: str) -> float | None:
    """Percent by which ``phase`` cut the mean latency of ``function`` against ``baseline``."""
    before = baseline.functions[function].mean_ms
    if phase is baseline or not before:
        return None
    return 100 * (1 - phase.functions[function].mean_ms / before)


def as_json(phases: list[PhaseResult], *, l2: str | None, workers: int) -> dict[str, Any]:
    """Return the results as plain data: per phase and function, figures and rates."""
    baseline = phases[0]
    shown = []
    for phase in phases:
        functions: dict[str, Any] = {}
        for function, result in phase.functions.items():
            figures = dataclasses.asdict(result)
            figures["l1_hit_rate"] = result.l1_hit_rate
            figures["l2_hit_rate"] = result.l2_hit_rate
            figures["latency_reduction_pct"] = _reduction(phase, baseline, function)
            functions[function] = figures
        shown.append({"name": phase.name, "seconds": phase.seconds, "functions": functions})
    return {"l2": l2, "workers": workers, "phases": shown}


def _duration(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms * 1000:.0f} µs" if ms >= 0.1 else f"{ms * 1000:.1f} µs"


def _change(cut: float) -> str:
    return f"[green]-{cut:.1f}%[/]" if cut >= 0 else f"+{-cut:.1f}%"


def table(phases: list[PhaseResult]) -> Table:
    """Return a rich table: for each function, one row per phase, the no-cache phase first."""
    # Two-line headers keep the widest figures within 80 columns, so no cell is cut short.
    result = Table(title="The same requests, three ways", title_justify="left")
    result.add_column("phase", no_wrap=True, min_width=len(max(FUNCTIONS, key=len)))
    for column in ("p50", "p99", "L1\nhits", "L2\nhits", "backend\ncalls", "mean\nlatency"):
        result.add_column(column, justify="right", no_wrap=True)
    baseline = phases[0]
    for function in FUNCTIONS:
        result.add_row(f"[bold]{function}[/]")
        for phase in phases:
            figures = phase.functions[function]
            cut = _reduction(phase, baseline, function)
            result.add_row(
                f"  {phase.name}",
                _duration(figures.p50_ms),
                _duration(figures.p99_ms),
                "-" if phase is baseline else f"{figures.l1_hit_rate:.1%}",
                "-" if phase is baseline else f"{figures.l2_hit_rate:.1%}",
                f"{figures.backend_calls:,}",
                _duration(figures.mean_ms) if cut is None else _change(cut),
            )
        result.add_section()
    return result


def plot(phases: list[PhaseResult], path: Path) -> None:
    """Draw p50, mean and p99 latency per phase for each function (log scale) into ``path``."""
    import matplotlib as mpl  # noqa: PLC0415 - optional, and only for --plot

    mpl.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(1, len(FUNCTIONS), figsize=(10, 4), constrained_layout=True)
    names = [phase.name for phase in phases]
    positions = range(len(phases))
    for axis, function in zip(axes, FUNCTIONS, strict=True):
        for offset, (figure_name, label) in enumerate(
            (("p50_ms", "p50"), ("mean_ms", "mean"), ("p99_ms", "p99"))
        ):
            values = [getattr(phase.functions[function], figure_name) for phase in phases]
            axis.bar([p + (offset - 1) * 0.27 for p in positions], values, width=0.27, label=label)
        axis.set_xticks(list(positions), names)
        axis.set_yscale("log")
        axis.set_ylabel("latency (ms, log scale)")
        axis.set_title(function)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    figure.suptitle("tiercache demo: call latency per phase")
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
