"""What lands in a real Redis: key names, TTLs, the payload format, generations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tiercache
from tiercache import tiered_cache
from tiercache._decorator import config as _config
from tiercache._tools import cli as _cli
from tiercache._tools.redis_process import RedisProcess


def test_entries_are_set_with_px_ttl_l2_and_our_envelope(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(ttl_l2=120)
    def resolve_adapter(category: str, name: str) -> dict[str, str]:
        return {"category": category, "name": name}

    resolve_adapter("storage", "s3")
    client = redis_server.client()
    key = resolve_adapter.cache_key("storage", "s3")
    raw = client.get(key)
    assert raw is not None and raw.startswith(b"tc\x02")
    assert 119_000 < client.pttl(key) <= 120_000


def test_clear_writes_a_new_generation_instead_of_scanning(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache()
    def f(x: int) -> int:
        return x

    for i in range(5):
        f(i)
    client = redis_server.client()
    generation_key = f.__tiercache__.generation_key  # type: ignore[attr-defined]
    assert client.get(generation_key) is None
    client.config_resetstat()
    f.cache_clear()
    assert client.get(generation_key) == b"1"  # generations count up
    f.cache_clear()
    assert client.get(generation_key) == b"2"
    commands = client.info("commandstats")
    assert "cmdstat_scan" not in commands and "cmdstat_keys" not in commands
    assert client.ttl(generation_key) == -1  # generations do not expire


def test_a_new_namespace_starts_from_its_own_generation(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After configure(namespace=...), the old namespace's generation is not "restored" in the new one."""

    @tiered_cache()
    def f(x: int) -> int:
        return x

    f(1)
    f.cache_clear()
    f.cache_clear()
    tiercache.configure(namespace=f"{isolated_settings}-other")
    assert f(1) == 1 and f(1) == 1
    client = redis_server.client()
    assert client.get(f.__tiercache__.generation_key) is None  # type: ignore[attr-defined]
    assert not any("older generation" in record.getMessage() for record in caplog.records)


def test_a_function_can_name_its_own_redis(redis_server: RedisProcess) -> None:
    runs = []

    @tiered_cache(ttl_l1=None, redis_url=redis_server.url)
    def f(x: int) -> int:
        runs.append(x)
        return x

    f(1)
    f(1)
    assert runs == [1]
    assert redis_server.client().exists(f.cache_key(1))


def test_unreachable_redis_degrades_to_calling_the_function(caplog: pytest.LogCaptureFixture) -> None:
    """The suite's default L2 URL has nothing listening: calls work, failures are counted."""
    runs = []

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        runs.append(x)
        return x * 2

    assert [f(1), f(1), f(2)] == [2, 2, 4]
    assert runs == [1, 1, 2]
    stats = f.cache_stats()
    assert stats.l2_errors == 1  # the breaker opened: the next calls did not try
    assert stats.degraded
    assert len([r for r in caplog.records if "is unavailable" in r.getMessage()]) == 1


def test_namespace_comes_from_configure_at_call_time(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache()
    def f(x: int) -> int:
        return x

    tiercache.configure(namespace="late-ns")
    f(1)
    assert f.cache_key(1).startswith("late-ns:")
    assert redis_server.client().exists(f.cache_key(1))


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A server that needs a password and also listens on a unix socket."""
    directory = Path(tmp_path_factory.mktemp("guarded"))
    server = RedisProcess(
        directory, None, "--requirepass", "s3cret", "--unixsocket", str(directory / "r.sock")
    )
    yield server.start()
    server.stop()


def test_password_and_database_from_the_url(guarded_server: RedisProcess) -> None:
    tiercache.configure(redis_url=f"redis://:s3cret@127.0.0.1:{guarded_server.port}/3")
    runs = []

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        runs.append(x)
        return x

    f(1)
    f(1)
    assert runs == [1]
    client = redis.Redis(port=guarded_server.port, password="s3cret", db=3)  # noqa: S106 - the test server's
    assert client.exists(f.cache_key(1))


def test_unix_socket_url(guarded_server: RedisProcess) -> None:
    socket_path = guarded_server.directory / "r.sock"
    tiercache.configure(redis_url=f"unix://:s3cret@{socket_path}?db=2")
    runs = []

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        runs.append(x)
        return x

    f(1)
    f(1)
    assert runs == [1]
    assert f.cache_stats().l2_hits == 1


def test_wrong_password_degrades_and_never_logs_the_password(
    guarded_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    tiercache.configure(redis_url=f"redis://:wrong-hunter2@127.0.0.1:{guarded_server.port}/0")

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert f.cache_stats().l2_errors >= 1
    assert caplog.records and all("hunter2" not in r.getMessage() for r in caplog.records)


def test_environment_variable_points_functions_at_their_l2(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERCACHE_REDIS_URL", redis_server.url)
    _config.reset()

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        return x

    f(7)
    assert redis_server.client().exists(f.cache_key(7))


def test_each_event_loop_gets_its_own_connections_and_closes_them(
    real_l2: str, redis_server: RedisProcess
) -> None:
    @tiered_cache(ttl_l1=None)
    async def g(x: int) -> int:
        return x

    async def burst(start: int) -> list[int]:
        return await asyncio.gather(*(g(start + i) for i in range(10)))

    client = redis_server.client()
    before = len(client.client_list())
    for round_ in range(5):
        assert asyncio.run(burst(round_ * 10)) == list(range(round_ * 10, round_ * 10 + 10))
    assert asyncio.run(burst(0)) == list(range(10))  # served from L2 on yet another loop
    assert g.cache_stats().l2_hits == 10
    # Nothing left open by the finished loops. (A background check on a one-off client of its
    # own, the start-up access check or a timed-out read's length ask, holds a connection for a
    # moment under load: it is closed within the check's few tries, a leak never is.)
    deadline = time.monotonic() + 5
    while len(client.client_list()) > before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(client.client_list()) <= before + 1
    # Not even by the start-up permission check: it used a client of its own, and closed it.
    assert g.__tiercache__.endpoint().stores.sync_store is None


class ClosedUnderfoot(redis.Redis):
    """A client whose connection was closed by another thread mid-command."""

    def execute_command(self, *args: object, **options: object) -> object:
        raise ValueError("I/O operation on closed file.")


def test_any_exception_from_the_client_is_an_l2_failure_not_a_callers_problem() -> None:
    tiercache.configure(redis_client=ClosedUnderfoot())

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        return x + 1

    assert [f(1), f(1)] == [2, 2]
    assert f.cache_stats().l2_errors == 1  # and the breaker opened


@pytest.mark.parametrize(
    "url_of",
    [
        lambda port: f"redis://127.0.0.1:{port}/0?password=wrong-hunter2",
        lambda port: f"redis://user:wrong-hunter2@127.0.0.1:{port}/0?password=wrong-hunter2&db=0",
    ],
    ids=["query", "user-and-query"],
)
def test_a_password_in_the_query_is_never_shown_either(
    guarded_server: RedisProcess,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    url_of: Any,
) -> None:
    """redis-py reads ?password=: settings, endpoints, logs and the CLI redact it too."""
    url = url_of(guarded_server.port)
    settings = tiercache.configure(redis_url=url)

    @tiered_cache(ttl_l1=None)
    def f(x: int) -> int:
        return x

    assert f(1) == 1 and f.cache_stats().l2_errors >= 1
    shown = [repr(settings), repr(f.__tiercache__.endpoint()), *(r.getMessage() for r in caplog.records)]
    assert caplog.records and all("hunter2" not in text for text in shown)
    assert _cli.main(["stats", "--redis-url", url]) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err and "***" in err and "process list" in err


def test_a_coroutine_on_an_endpoint_without_an_async_client_degrades(redis_server: RedisProcess) -> None:
    """Only a sync client configured: an async function still returns, counting an L2 error."""
    client = redis_server.client()
    tiercache.configure(redis_client=client)

    @tiered_cache(ttl_l1=None)
    async def g(x: int) -> int:
        return x * 2

    assert asyncio.run(g(2)) == 4
    assert g.cache_stats().l2_errors == 1
    client.close()
