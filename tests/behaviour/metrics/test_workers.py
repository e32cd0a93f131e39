"""/metrics behind several worker processes: every scrape reports the sum over all of them.

A collector that read only its own process answered each scrape with one worker's figures, in
turn (2,047 calls, then 1,953): Prometheus saw counter resets and computed wrong rates. Here
worker processes (as gunicorn or uvicorn ``--workers`` run them) each register the collector
with ``PROMETHEUS_MULTIPROC_DIR`` set, serve their share of requests, and a scrape made inside
any one of them reports the sums.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tiercache._tools.redis_process import RedisProcess
from tiercache.metrics._workers import SHARE_EVERY

pytestmark = [pytest.mark.redis_server, pytest.mark.slow]

WORKER = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest
import tiercache
from tiercache import tiered_cache
from tiercache.metrics.prometheus import TiercacheCollector

url, namespace, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
tiercache.configure(redis_url=url, namespace=namespace)
registry = CollectorRegistry()
registry.register(TiercacheCollector())  # (reads PROMETHEUS_MULTIPROC_DIR)

@tiered_cache(ttl_l1=60, ttl_l2=3600, name="workers.resolve")
def resolve(name):
    return {"adapter": name}

for i in range(requests):  # a worker's share of the requests
    resolve(f"adapter-{i % 10}")
print("served", flush=True)
for line in sys.stdin:  # "scrape": answer as this worker's /metrics would
    sys.stdout.write(generate_latest(registry).decode() + "\\n.\\n")
    sys.stdout.flush()
tiercache.close()
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("function") == "workers.resolve"
    }


def scrape(worker: subprocess.Popen[str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("scrape\n")
    worker.stdin.flush()
    lines = []
    for line in worker.stdout:
        if line == ".\n":
            break
        lines.append(line)
    return samples("".join(lines))


def test_every_scrape_reports_the_sum_over_the_workers(
    redis_server: RedisProcess, isolated_settings: str, tmp_path: Path
) -> None:
    shares = [700, 500, 300]
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), redis_server.url, isolated_settings, str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for share in shares
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "served\n"
        calls = ("tiercache_calls_total", (("function", "workers.resolve"),))
        count = ("tiercache_call_duration_seconds_count", (("function", "workers.resolve"),))
        entries = ("tiercache_l1_entries", (("function", "workers.resolve"),))
        # Any worker's scrape: every worker's calls (theirs as of their last write, a second at most).
        for worker in workers:
            got = scrape(worker)
            assert got[calls] >= shares[workers.index(worker)]
        time.sleep(SHARE_EVERY * 1.5)  # (every worker has written since it served)
        for worker in workers:
            got = scrape(worker)
            assert got[calls] == sum(shares) and got[count] == sum(shares)
            hits = got[("tiercache_hits_total", (("function", "workers.resolve"), ("tier", "l1")))]
            l2 = got[("tiercache_hits_total", (("function", "workers.resolve"), ("tier", "l2")))]
            misses = got[("tiercache_misses_total", (("function", "workers.resolve"),))]
            assert hits + l2 + misses == sum(shares) and hits >= sum(shares) - 30
            assert got[entries] == 30  # ten keys in each of three live L1s
        # A worker that ends: its calls still count (sums never go back), its L1 no longer does.
        assert workers[0].stdin is not None
        workers[0].stdin.close()
        assert workers[0].wait(30) == 0
        got = scrape(workers[1])
        assert got[calls] == sum(shares) and got[entries] == 20
    finally:
        for worker in workers:
            assert worker.stdin is not None and worker.stdout is not None
            if not worker.stdin.closed:
                worker.stdin.close()  # (it ends when its input does)
            if worker.wait(30) is None:
                worker.kill()
            worker.stdout.close()


def test_a_damaged_or_foreign_file_is_skipped_not_a_failed_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    from tiercache import tiered_cache  # noqa: PLC0415
    from tiercache.metrics.prometheus import TiercacheCollector  # noqa: PLC0415

    collector = TiercacheCollector(multiprocess_dir=tmp_path)
    bounds = [round(bound * 1e9) for bound in collector._buckets]
    damaged = {"pid": 999991, "bounds_ns": bounds, "functions": 7}
    (tmp_path / "tiercache-999991.json").write_text(json.dumps(damaged))
    (tmp_path / "tiercache-999992.json").write_text("not json")
    (tmp_path / "tiercache-999993.json").write_text('{"pid": 1, "bounds_ns": [1], "functions": {}}')

    @tiered_cache(ttl_l1=60, name="workers.local")
    def local(n: int) -> int:
        return n

    local(1)
    local(1)
    registry = CollectorRegistry()
    registry.register(collector)
    with caplog.at_level("WARNING", logger="tiercache"):
        text = generate_latest(registry).decode()
    collector.close()
    assert 'tiercache_calls_total{function="workers.local"} 2.0' in text
    assert sum("skipped metrics file" in r.getMessage() for r in caplog.records) == 3
