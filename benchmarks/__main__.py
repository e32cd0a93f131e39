"""Run every scenario, tiercache beside its peers, and write docs/benchmarks.md and its chart.

``python -m benchmarks`` (or ``python -m nox -s bench``). L2 scenarios use a redis-server
started here on a free loopback port, so every L2 figure is "Redis local". Figures are medians
of interleaved repeats; only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import tiercache
from benchmarks import (
    arguments,
    compression,
    flood,
    frames,
    l1_costs,
    l1_hits,
    l2,
    policies,
    tags,
    tracing,
    zipf,
)
from benchmarks.harness import Scenario
from tiercache._tools.redis_process import RedisProcess

PACKAGES = [
    "tiercache",
    "redis",
    "hiredis",
    "msgpack",
    "cachetools",
    "cachebox",
    "async-lru",
    "cashews",
    "aiocache",
]


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else "unknown"


def scenario_table(scenario: Scenario) -> list[str]:
    unit = scenario.unit.replace("ns", "µs") if scenario.unit.startswith("ns") else scenario.unit
    scale = 1000 if scenario.unit.startswith("ns") and scenario.subjects[0].median_ns > 20_000 else 1
    shown_unit = unit if scale == 1000 else scenario.unit
    lines = [f"### {scenario.name}", "", f"Target: {scenario.target}. Reference: {scenario.reference}.", ""]
    lines += [f"| subject | median ({shown_unit}) | ratio |", "|---|---:|---:|"]
    for subject in scenario.subjects:
        label = f"**{subject.label}**" if subject.label == scenario.ours else subject.label
        ratio = scenario.ratio(subject.label)
        lines.append(f"| {label} | {subject.median_ns / scale:,.1f} | {ratio:.2f}x |")
    return [*lines, ""]


def verdict(scenario: Scenario) -> str:
    if scenario.met is None:
        return "reported"
    return "met" if scenario.met else "**not met**"


def chart(scenarios: list[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(scenarios), 1, figsize=(9, 1.2 + 0.55 * sum(len(s.subjects) for s in scenarios))
    )
    for axis, scenario in zip(axes, scenarios, strict=True):
        labels = [s.label for s in scenario.subjects]
        ratios = [scenario.ratio(label) for label in labels]
        colors = ["#2b6cb0" if label == scenario.ours else "#a0aec0" for label in labels]
        axis.barh(labels, ratios, color=colors)
        axis.invert_yaxis()
        if scenario.limit is not None:
            axis.axvline(scenario.limit, color="#c53030", linestyle="--", linewidth=1)
        axis.axvline(1.0, color="#2d3748", linewidth=0.8)
        axis.set_title(
            f"{scenario.name} (ratio to {scenario.reference}; red: target)", fontsize=8, loc="left"
        )
        axis.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--chart", default="docs/benchmarks.png")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a shorter Zipf stream")
    args = parser.parse_args()

    server = RedisProcess(Path(tempfile.mkdtemp(prefix="tiercache-bench-"))).start()
    tiercache.configure(redis_url=server.url, namespace=f"bench-{os.getpid()}")
    loop = asyncio.new_event_loop()
    try:
        scenarios = [
            *l1_hits.scenarios(loop),
            *(arguments.dict_argument(items) for items in (10, 100, 1000)),
            arguments.copy_cost(),
            l2.sync_hit(server.url),
            l2.async_hit(server.url, loop),
            l2.miss_path(server.url),
            l2.concurrent_hits(server.url, loop),
            l2.django_set(server.url),
        ]
        for scenario in scenarios:
            if args.quick:
                scenario.repeats = 5
            print(f"running: {scenario.name}", file=sys.stderr)
            scenario.run()
        memory = l1_costs.memory_rows()
        depths = arguments.recursion_depths()
        paths = frames.rows(server.url)
        # Before the flood: its backlog of announcements keeps this process's listener busy
        # for a while after, and latency under threads would show that, not refresh-ahead.
        print("running: refresh-ahead and batch calls", file=sys.stderr)
        hot = policies.hot_key_rows()
        batches = policies.batch_rows()
        print("running: compression", file=sys.stderr)
        compressed = compression.rows(server.url, repeats=4 if args.quick else 8)
        print("running: tags", file=sys.stderr)
        tag_hits = tags.hit_rows(repeats=5 if args.quick else 9)
        tag_invalidation = tags.invalidation_row()
        print("running: tracing", file=sys.stderr)
        traced = tracing.rows(repeats=5 if args.quick else 9)
        print("running: a flood of forged clears", file=sys.stderr)
        floods = flood.rows(server.url)
        rates = zipf.rows(requests=50_000 if args.quick else 200_000)
    finally:
        loop.close()
        binary = server.binary
        server.stop()

    lines = [
        "# Benchmarks",
        "",
        f"Last run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on Python {platform.python_version()} "
        f"({platform.machine()}, {os.cpu_count()} CPUs). {versions()}.",
        f"Redis: local, a redis-server {redis_version(binary)} on a loopback port, started by the run.",
        "",
        "Each figure is the median of interleaved repeats (all subjects of a scenario measured in turn,",
        "round after round); ratios compare subjects of one scenario in this one run. Every peer's",
        "body is checked to have run exactly once (or, for the miss path, for every call), so hits",
        "are hits. Regenerate with `python -m nox -s bench`.",
        "",
        "## Summary",
        "",
        "| scenario | tiercache ratio | target | result |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {s.name} | {s.our_ratio:.2f}x | {s.target} | {verdict(s)} |" for s in scenarios]
    lines += ["", "![ratios](benchmarks.png)", "", "## Scenarios", ""]
    for scenario in scenarios:
        lines += scenario_table(scenario)
    lines += [
        "### L1 memory per entry, beyond key and value",
        "",
        "Target: <= 150 B. Measured with tracemalloc over 20,000 entries whose keys and values",
        "exist beforehand.",
        "",
        "| cache | bytes per entry |",
        "|---|---:|",
        *[f"| {label} | {size:.1f} |" for label, size in memory],
        "",
        "### tiercache frames per call",
        "",
        "Python functions of the package (and its generated fast path) one call enters, counted with",
        "`sys.setprofile`: what an L2 round trip costs beyond Redis is mostly these.",
        "",
        "| call | frames |",
        "|---|---:|",
        *[f"| {label} | {count} |" for label, count in paths],
        "",
        "### How deep a memoized recursive function goes",
        "",
        f"Levels reached under the default recursion limit ({sys.getrecursionlimit():,}), each one a miss.",
        "",
        "| cache | levels |",
        "|---|---:|",
        *[f"| {label} | {levels:,} |" for label, levels in depths],
        "",
        "### Hit rates on a Zipf(1.0) stream over 100,000 keys, L1 = 1,000 entries",
        "",
        "Through the decorator with a real L2 that outlives the run: the combined rate is fixed by",
        "first sightings; the L1 policy decides how much of it L1 serves without a round trip.",
        "",
        "| L1 policy | L1 hit rate | L2 hit rate (of L2 look-ups) | combined |",
        "|---|---:|---:|---:|",
        *[f"| {r.policy} | {r.l1:.1%} | {r.l2:.1%} | {r.combined:.1%} |" for r in rates],
        "",
        "### Refresh-ahead",
        "",
        f"A hot key with ttl_l1 = ttl_l2 = {policies.TTL_SECONDS} s and a "
        f"{policies.COMPUTE_SECONDS * 1000:.0f} ms function, called by {policies.THREADS} threads",
        f"every {policies.PACE_SECONDS * 1000:.0f} ms each for {policies.RUN_SECONDS:.0f} s: its entry "
        "expires again and again. Every call's latency counts.",
        "",
        "| | calls | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | calls > 10 ms | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r.label} | {r.calls:,} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.p999_ms:.3f} | "
            f"{r.max_ms:.1f} | {r.slow_calls} | {r.runs} |"
            for r in hot
        ],
        "",
        "### Batch calls: Redis round trips",
        "",
        "Socket writes of redis-py (one per command or pipeline) for `@tiered_cache_many` over n ids,",
        "and for the same ids as n single-id `@tiered_cache` calls: cold (nothing cached), then",
        "answered by L2 (L1 emptied, as in a new process).",
        "",
        "| ids | batch, cold | batch, from L2 | single calls, cold | single calls, from L2 "
        "| batch cold (ms) | single calls cold (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {b.ids} | {b.batch_cold} | {b.batch_from_l2} | {b.single_cold} | {b.single_from_l2} | "
            f"{b.batch_cold_ms:.2f} | {b.single_cold_ms:.2f} |"
            for b in batches
        ],
        "",
        "### Compressed L2 values",
        "",
        "JSON-like values (lists of user records) of three sizes, stored uncompressed, with zlib",
        "(level 1) and with zstd (level 3); bytes in Redis, and µs per L2 hit through a function",
        "whose L1 is off (GET, inflate, decode), beside a raw GET + unpackb of the uncompressed",
        "encoding. The default `compress_min_bytes` is 1,024.",
        "",
        *compression.table(compressed),
        "",
        "### Tags",
        "",
        "A hit of a function with `tags=` beside the same function without (median ns per call;",
        "the rounds rotate their order). An L1 hit does no tag work; an L2 hit reads the tags'",
        "tokens in the MGET that reads the entry.",
        "",
        *tags.hit_table(tag_hits),
        "",
        f"`invalidate_tags()` of a tag {tag_invalidation.entries:,} entries carry (in L1 and Redis): "
        f"**{tag_invalidation.invalidate_ms:.1f} ms** (one SET per tag and an announcement in Redis;",
        f"the rest is dropping the {tag_invalidation.entries:,} L1 entries), against "
        f"{tag_invalidation.clear_ms:.1f} ms for `cache_clear()` of a function",
        f"holding as many; afterwards {tag_invalidation.misses_after:,} of the "
        f"{tag_invalidation.entries:,} calls recomputed.",
        "",
        "### Tracing",
        "",
        "The same hit with tiercache's OpenTelemetry spans off (the application does not trace)",
        "and on (an SDK TracerProvider whose one processor drops the spans: the SDK's cost of",
        "making a span is in the figure, exporting it is not). Rounds alternate.",
        "",
        *tracing.table(traced),
        "",
        "### A flood of forged clear announcements",
        "",
        'Another process publishes forged "clear" announcements for a function as fast as it can',
        "while this one calls the function over 100 keys (see docs/security.md).",
        "",
        "| announcements | forged clears per second | L1 hit rate |",
        "|---|---:|---:|",
        *[
            f"| {'signed (forgeries ignored)' if r.signed else 'unsigned'} | {r.messages_per_second:,.0f} "
            f"| {r.l1_hit_rate:.1%} |"
            for r in floods
        ],
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    chart(scenarios, Path(args.chart))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
