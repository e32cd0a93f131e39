"""Fixtures shared by the whole suite.

Every test starts from fresh tiercache settings whose L2 points at a port nothing listens on, so
no test can reach a Redis it did not ask for (in particular not the machine's own 6379). Tests
that need L2 ask for ``fake_l2`` (fakeredis) or ``real_l2`` (the session's own redis-server).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

import tiercache
from tiercache._core.tiers import live_tiers
from tiercache._decorator import config as _config
from tiercache._tools.redis_process import RedisProcess, free_port

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Fresh settings, a private namespace, and an L2 URL where nothing listens."""
    for name in (
        "TIERCACHE_REDIS_URL",
        "TIERCACHE_NAMESPACE",
        "TIERCACHE_ENABLED",
        "TIERCACHE_L2",
        "PROMETHEUS_MULTIPROC_DIR",  # (a developer's own would make collectors sum its files)
    ):
        monkeypatch.delenv(name, raising=False)
    _config.reset()
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    # Adapters built with their default settings read the environment: point them nowhere too.
    monkeypatch.setenv("TIERCACHE_REDIS_URL", nowhere)
    tiercache.configure(redis_url=nowhere, namespace=namespace)
    yield namespace
    _config.reset()
    # A test's functions may outlive it (a traceback or hypothesis keeps their frames): what they
    # still owe a Redis that is gone must not show in a later test's close() report.
    for tiers in live_tiers():
        if tiers.owed.any:
            clears, floor, keys, mark = tiers.owed.pending()
            tiers.owed.repaired(clears=clears, floor=floor, keys=keys, upto=mark)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real redis-server for the session, on a free loopback port."""
    server = RedisProcess(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    # Stopped under a listener, the server would make it say "lost the invalidation channel"
    # after pytest's summary: close tiercache first, as a service shuts down.
    tiercache.close()
    server.stop()


@pytest.fixture
def real_l2(redis_server: RedisProcess) -> str:
    """Point tiercache's L2 at the session's real redis-server; return its URL."""
    tiercache.configure(redis_url=redis_server.url)
    return redis_server.url


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_l2(fake_server: fakeredis.FakeServer) -> fakeredis.FakeServer:
    """Point tiercache's L2 at a fresh fakeredis server (sync and async clients)."""
    tiercache.configure(
        redis_client=fakeredis.FakeRedis(server=fake_server),
        async_redis_client=lambda: fakeredis.FakeAsyncRedis(server=fake_server),
    )
    return fake_server
