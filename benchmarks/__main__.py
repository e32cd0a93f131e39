"""Run every scenario and print a table of medians and ratios against each scenario's reference."""

from __future__ import annotations

import asyncio
import platform
import sys
from importlib import metadata

from benchmarks import l1_costs, l1_hits


def versions() -> str:
    names = [
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
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main() -> int:
    loop = asyncio.new_event_loop()
    print(f"Python {platform.python_version()} on {platform.machine()}; {versions()}\n")
    for scenario in [*l1_hits.scenarios(loop), l1_costs.stats_cost_scenario()]:
        scenario.run()
        print(f"## {scenario.name} (target {scenario.target})")
        for subject in scenario.subjects:
            ratio = scenario.ratio(subject.label)
            print(f"  {subject.label:28} {subject.median_ns:9.1f} {scenario.unit}  {ratio:5.2f}x")
        print()
    print("## L1 memory per entry, beyond key and value (target <= 150 B)")
    for label, size in l1_costs.memory_rows():
        print(f"  {label:28} {size:9.1f} B/entry")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
