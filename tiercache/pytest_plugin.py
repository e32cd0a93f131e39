"""pytest plugin (registered through the ``pytest11`` entry point): cache isolation for tests.

Fixtures:

- ``tiercache_isolated``: fresh L1s, zeroed stats, a private namespace and no L2 for one test;
  the settings come back afterwards.
- ``tiercache_l2``: the same, plus an L2: fakeredis, or the server at ``TIERCACHE_REDIS_URL``
  when that is set (its keys in the private namespace are deleted afterwards). Yields a sync
  ``redis`` client of that L2.
- ``tiercache_disabled`` and the ``@pytest.mark.tiercache_disabled`` marker: caching bypassed,
  every call runs the function.

``assert_cache_stats`` (from ``tiercache.testing``) checks a function's stats with a readable
failure message; ``forget_local_caches`` makes the process look newly started (empty L1s).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tiercache._decorator import config as _config
from tiercache._l2 import keyspace as _admin
from tiercache._l2.urls import redact_url
from tiercache.testing import assert_cache_stats, forget_local_caches

__all__ = ["assert_cache_stats", "tiercache_disabled", "tiercache_isolated", "tiercache_l2"]

_MARKER = "tiercache_disabled"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers", f"{_MARKER}: bypass tiercache in this test (every call runs the function)"
    )


@pytest.fixture
def tiercache_isolated() -> Iterator[str]:
    """Give the test fresh L1s, zeroed stats and a namespace of its own, in L1 only; yield the namespace."""
    saved = _config.current()
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    forget_local_caches()
    _config.configure(namespace=namespace, l2=False)
    try:
        yield namespace
    finally:
        _config.restore(saved)
        forget_local_caches()


@pytest.fixture
def tiercache_l2(tiercache_isolated: str) -> Iterator[Any]:
    """Add an L2 to the isolated test: fakeredis, or ``TIERCACHE_REDIS_URL``; yield a client of it."""
    url = os.environ.get("TIERCACHE_REDIS_URL")
    if url:
        try:
            client = _admin.connect(url, "tiercache_l2 fixture")
        except _admin.FAILURES as exc:
            pytest.fail(
                f"tiercache_l2: TIERCACHE_REDIS_URL={redact_url(url)} does not answer: {exc}", pytrace=False
            )
        _config.configure(redis_url=url, redis_client=None, async_redis_client=None, l2=True)
        try:
            yield client
        finally:
            _admin.flush(client, tiercache_isolated, None)
            client.close()
        return
    try:
        import fakeredis  # noqa: PLC0415 - only this fixture needs it
    except ImportError:
        pytest.fail(
            "tiercache_l2 needs fakeredis (pip install fakeredis) or TIERCACHE_REDIS_URL", pytrace=False
        )
    server, client = _fake_redis(fakeredis)
    _config.configure(
        redis_client=client, async_redis_client=lambda: fakeredis.FakeAsyncRedis(server=server), l2=True
    )
    yield client


def _fake_redis(fakeredis: Any) -> tuple[Any, Any]:
    """Return a fakeredis server and a client of it; fail the test in one line if they cannot be made.

    A fakeredis older than the installed redis-py fails deep inside its own code (its client
    subclasses redis-py's); the versions, not that traceback, say what to do.
    """
    try:
        server = fakeredis.FakeServer()
        client = fakeredis.FakeRedis(server=server)
        fakeredis.FakeAsyncRedis(server=server)
    except Exception as exc:  # (whatever it raises, the versions are the news)
        import redis  # noqa: PLC0415 - only this message needs its version

        fake_version = getattr(fakeredis, "__version__", "?")
        pytest.fail(
            f"tiercache_l2: fakeredis {fake_version} cannot make a client with redis-py "
            f"{redis.__version__} ({type(exc).__name__}: {exc}); install a fakeredis that supports "
            "it (pip install -U fakeredis) or set TIERCACHE_REDIS_URL",
            pytrace=False,
        )
    return server, client


@pytest.fixture
def tiercache_disabled(tiercache_isolated: str) -> str:
    """Bypass caching in this test: every call of a cached function runs it."""
    _config.configure(enabled=False)
    return tiercache_isolated


@pytest.fixture(autouse=True)
def _tiercache_marker(request: pytest.FixtureRequest) -> None:
    """Apply ``@pytest.mark.tiercache_disabled``."""
    if request.node.get_closest_marker(_MARKER) is not None:
        request.getfixturevalue("tiercache_disabled")
