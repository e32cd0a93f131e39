"""A Starlette service under real uvicorn with two workers: /metrics and fleet stats add up.

Behind ``uvicorn --workers 2`` each request reaches one worker; a scrape reaches one worker too.
With ``PROMETHEUS_MULTIPROC_DIR`` set, every scrape must report the calls of both; with
``fleet.publish()``, ``tiercache stats`` must too. Then SIGTERM ends both workers cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tiercache._tools import cli as _cli
from tiercache._tools.redis_process import RedisProcess, free_port
from tiercache.metrics._workers import SHARE_EVERY

pytestmark = [pytest.mark.redis_server, pytest.mark.slow]

APP = textwrap.dedent(
    """
    import os
    from prometheus_client import CollectorRegistry, generate_latest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tiercache import tiered_cache
    from tiercache.contrib.starlette import lifespan
    from tiercache.metrics import fleet
    from tiercache.metrics.prometheus import TiercacheCollector

    registry = CollectorRegistry()
    registry.register(TiercacheCollector())  # (in every worker: it reads PROMETHEUS_MULTIPROC_DIR)
    fleet.publish(every=0.2)

    @tiered_cache(ttl_l1=60, ttl_l2=3600, name="uvicorn.resolve_adapter")
    async def resolve_adapter(category, name):
        return f"{category}/{name}"

    async def adapter(request):
        value = await resolve_adapter("db", request.path_params["name"])
        return JSONResponse({"adapter": value, "pid": os.getpid()})

    async def health(request):
        return JSONResponse({"pid": os.getpid()})

    async def metrics(request):
        return Response(generate_latest(registry), media_type="text/plain")

    app = Starlette(
        routes=[Route("/adapter/{name}", adapter), Route("/health", health), Route("/metrics", metrics)],
        lifespan=lifespan(),  # (the TIERCACHE_* environment)
    )
    """
)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback, our server
        body: bytes = response.read()
        return body


def calls_in(scrape: bytes) -> float:
    return next(
        sample.value
        for family in text_string_to_metric_families(scrape.decode())
        for sample in family.samples
        if sample.name == "tiercache_calls_total" and sample.labels["function"] == "uvicorn.resolve_adapter"
    )


def test_two_uvicorn_workers_report_the_sum_of_their_calls(
    redis_server: RedisProcess,
    isolated_settings: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "service.py").write_text(APP)
    (tmp_path / "metrics").mkdir()
    port = free_port()
    environment = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "TIERCACHE_REDIS_URL": redis_server.url,
        "TIERCACHE_NAMESPACE": isolated_settings,
    }
    command = [sys.executable, "-m", "uvicorn", "service:app", "--app-dir", str(tmp_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    server = subprocess.Popen(
        command,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"{base}/health")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "uvicorn did not start"
                time.sleep(0.1)
        pids: set[int] = set()
        sent = 0
        while len(pids) < 2 or sent < 400:  # (until both workers have served some)
            answer = json.loads(get(f"{base}/adapter/{sent % 20}"))
            assert answer["adapter"] == f"db/{sent % 20}"
            pids.add(answer["pid"])
            sent += 1
            assert sent < 5000, "one worker served everything"
        time.sleep(SHARE_EVERY * 1.5)  # (each worker has written its figures since)
        for _ in range(8):  # whichever worker answers the scrape
            assert calls_in(get(f"{base}/metrics")) == sent

        code = _cli.main(
            ["stats", "--redis-url", redis_server.url, "--namespace", isolated_settings, "--json"]
        )
        fleet = json.loads(capsys.readouterr().out)["fleet"]
        assert code == 0 and {p["pid"] for p in fleet["processes"]} == pids
        (summed,) = fleet["functions"]
        assert summed["function"] == "uvicorn.resolve_adapter" and summed["calls"] == sent
        assert summed["misses"] + summed["l2_hits"] + summed["l1_hits"] == sent
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors
    assert "Traceback" not in errors and "pending" not in errors, errors
