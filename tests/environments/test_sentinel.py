"""Redis Sentinel: URLs, sync and async use, the adapter and the CLI, and a failover under load."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel

import tiercache
from tests.support.delay_proxy import DelayProxy
from tests.support.leftovers import tiercache_threads
from tests.support.tls import make_certificates
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._l2.sentinel import SentinelTarget, asking_sentinels, primary_options, sentinel_target
from tiercache._l2.urls import check_url, redact_url
from tiercache._tools.cli import main as cli_main
from tiercache._tools.redis_process import RedisProcess, RedisSentinelProcesses, free_port

_names = itertools.count()


# -- URLs -------------------------------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_service_db_and_logins() -> None:
    url = (
        "rediss+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26390/orders/3"
        "?sentinel_password=watch&ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false"
    )
    target = sentinel_target(url)
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26390)),
        service="orders",
        db=3,
        username="app",
        password="s@cret",  # noqa: S106 - a test URL
        tls=True,
        sentinel_password="watch",  # noqa: S106 - a test URL
        tls_options={"ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": False},
    )
    assert "s@cret" not in repr(target) and "watch" not in repr(target)
    assert "s%40cret" not in redact_url(url) and "watch" not in redact_url(url)
    assert sentinel_target("redis+sentinel://h:1/svc") == SentinelTarget((("h", 1),), "svc")
    assert sentinel_target("redis://h:1/0") is None
    assert check_url(url, "owner") == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://h:1", "path is /service"),
        ("redis+sentinel://h:1/svc/x", "database 'x'"),
        ("redis+sentinel://h:1/svc/0/extra", "path is /service"),
        ("redis+sentinel://h:99999/svc", "not host:port"),
        ("redis+sentinel://h:1,/svc", "not host:port"),
        ("redis+sentinel://h:1/svc?socket_timeout=1", "unknown query parameter"),
    ],
)
def test_malformed_sentinel_urls_are_refused_naming_the_owner(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=rf"tiercache.configure\(\): redis_url .* is invalid: .*{complaint}"):
        tiercache.configure(redis_url=url)
    with pytest.raises(ValueError, match="MultiTierCacheSettings"):
        MultiTierCacheSettings(l2_url=url)


# -- against real sentinels -------------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[RedisSentinelProcesses]:
    """A primary, a replica and three sentinels of its own (a failover changes them for good)."""
    processes = RedisSentinelProcesses(tmp_path / "sentinel").start()
    yield processes
    processes.stop()


def doubler(name: str, runs: list[int], **options: Any) -> Any:
    @tiered_cache(**{"ttl_l1": None, "ttl_l2": 600, "name": name, **options})
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    return double


def test_sync_and_async_functions_share_the_sentinels_primary(deployment: RedisSentinelProcesses) -> None:
    tiercache.configure(redis_url=deployment.url)
    name = f"sentinel.shared.{next(_names)}"
    runs: list[int] = []
    double = doubler(name, runs)
    assert double(21) == 42 and double(21) == 42
    assert double.cache_stats().l2_hits == 1
    assert deployment.primary.client().exists(double.cache_key(21))

    @tiered_cache(ttl_l1=None, ttl_l2=600, name=name)
    async def double_async(n: int) -> int:
        runs.append(n)
        return 2 * n

    assert asyncio.run(double_async(21)) == 42 and runs == [21]
    assert double_async.cache_stats().l2_hits == 1


def test_invalidations_reach_other_l1s_through_the_sentinels_primary(
    deployment: RedisSentinelProcesses,
) -> None:
    tiercache.configure(redis_url=deployment.url)
    name = f"sentinel.coherent.{next(_names)}"
    runs: list[int] = []

    def make() -> Any:
        return tiered_cache(ttl_l1=600, ttl_l2=600, name=name)(lambda n: runs.append(n) or len(runs))

    first, second = make(), make()
    first(1)
    assert second(1) == 1  # from L2 into its L1
    first.cache_invalidate(1)
    deadline = time.monotonic() + 5
    while second.cache_stats().l1_size:
        assert time.monotonic() < deadline, "the other L1 never heard of the invalidation"
        time.sleep(0.02)
    assert second(1) == 2


def test_the_adapter_and_the_cli_take_sentinel_urls(
    deployment: RedisSentinelProcesses, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"sentinel-adapter-{next(_names)}"
    settings = MultiTierCacheSettings(l2_url=deployment.url, namespace=namespace)
    with MultiTierCache(settings) as writer, MultiTierCache(settings) as reader:
        writer.set("user:1", {"name": "Ada"})
        assert reader.get("user:1") == {"name": "Ada"}
        assert reader.get_metrics()["l2_hits"] == 1
    assert cli_main(["stats", "--redis-url", deployment.url, "--namespace", namespace, "--json"]) == 0
    assert namespace in capsys.readouterr().out
    assert cli_main(["flush", "--redis-url", deployment.url, "--namespace", namespace, "--yes"]) == 0
    assert deployment.primary.client().keys(f"{namespace}:k:*") == []


# -- sentinels down ---------------------------------------------------------------------------


def dead_sentinels_url() -> str:
    """A sentinel URL whose three sentinels are ports nothing listens on (connections refused)."""
    return "redis+sentinel://" + ",".join(f"127.0.0.1:{free_port()}" for _ in range(3)) + "/svc/0"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_with_every_sentinel_down_a_call_asks_each_once_and_goes_on(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's sentinel clients retry ten times each, with backoff: 22 s for a caller here.

    Each sentinel is asked once per connection instead (asking the next one is the retry), and
    the breaker takes it from there. The bound is loose: refused connections cost microseconds.
    """
    tiercache.configure(redis_url=dead_sentinels_url())
    name = f"sentinel.down.{next(_names)}"

    @tiered_cache(ttl_l1=None, ttl_l2=600, name=name, coherent=False)
    async def double_async(n: int) -> int:
        return 2 * n

    double = doubler(name, [], coherent=False) if kind == "sync" else double_async
    started = time.monotonic()
    assert (double(1) if kind == "sync" else asyncio.run(double_async(1))) == 2
    assert time.monotonic() - started < 2.0
    assert double.cache_stats().l2_errors == 1
    # Said in a line, not in redis-py's kilobytes of every sentinel client's settings.
    said = [record.getMessage() for record in caplog.records if "is unavailable" in record.getMessage()]
    assert len(said) == 1 and "MasterNotFoundError: No master found for 'svc'" in said[0]
    assert len(said[0]) < 500, said[0]


def test_no_client_tiercache_makes_retries_a_sentinel() -> None:
    tiercache.configure(redis_url=dead_sentinels_url())
    endpoint = doubler(f"sentinel.retries.{next(_names)}", []).__tiercache__.endpoint()

    async def async_manager() -> Any:
        return endpoint.astore().client.connection_pool.sentinel_manager

    managers = [
        endpoint.store().client.connection_pool.sentinel_manager,
        asyncio.run(async_manager()),
        endpoint._checker().thing.connection_pool.sentinel_manager,  # the probe's and the check's
    ]
    for manager in managers:
        for sentinel in manager.sentinels:
            assert sentinel.connection_pool.connection_kwargs["retry"].get_retries() == 0


def test_close_ends_a_listener_whose_sentinels_died(deployment: RedisSentinelProcesses) -> None:
    """The listener reconnects through the sentinels: when they are gone, close() still ends it."""
    tiercache.configure(redis_url=deployment.url)
    double = doubler(f"sentinel.closing.{next(_names)}", [], ttl_l1=600)
    assert double(2) == 4
    bus = double.__tiercache__.endpoint().bus
    wait_until(lambda: bus.connected, "the listener never subscribed")
    deployment.stop()
    wait_until(lambda: bus.losses >= 1, "the listener never noticed")
    report = tiercache.close()
    assert tiercache_threads() == [] and report.clean, report


# -- failover ---------------------------------------------------------------------------------


class Load:
    """Threads and an event loop calling cached functions as fast as they can, every result checked."""

    def __init__(self, sync_function: Any, async_function: Any, keys: int = 50, threads: int = 4) -> None:
        self.sync_function = sync_function
        self.async_function = async_function
        self.keys = keys
        self.errors: list[BaseException] = []
        self.wrong: list[tuple[int, Any]] = []
        self.calls = 0
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._sync_caller, args=(i,)) for i in range(threads)]
        self._workers.append(threading.Thread(target=lambda: asyncio.run(self._async_caller())))

    def _check(self, n: int, value: Any) -> None:
        self.calls += 1
        if value != 2 * n:
            self.wrong.append((n, value))

    def _sync_caller(self, seed: int) -> None:
        for n in itertools.cycle(range(seed, seed + self.keys)):
            if self._stop.is_set():
                return
            try:
                self._check(n % self.keys, self.sync_function(n % self.keys))
            except BaseException as exc:
                self.errors.append(exc)
            time.sleep(0.001)

    async def _async_caller(self) -> None:
        for n in itertools.cycle(range(self.keys)):
            if self._stop.is_set():
                return
            try:
                self._check(n, await self.async_function(n))
            except BaseException as exc:
                self.errors.append(exc)
            await asyncio.sleep(0.001)

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)


def test_a_killed_primary_fails_over_with_no_caller_errors_and_hits_resume(
    deployment: RedisSentinelProcesses,
) -> None:
    """The primary is SIGKILLed under load; the sentinels promote the replica.

    Every call returns its right value (0 errors, 0 wrong values), and L2 hits resume on the new
    primary within the failover time plus 2 s. The timeline goes to the test's output.
    """
    tiercache.configure(redis_url=deployment.url, timeout=0.1)
    name = f"sentinel.failover.{next(_names)}"
    runs: list[int] = []
    sync_function = doubler(name, runs)

    @tiered_cache(ttl_l1=None, ttl_l2=600, name=name)
    async def async_function(n: int) -> int:
        return 2 * n

    for n in range(50):
        sync_function(n)
    wait_until(lambda: deployment.replica.client().dbsize() >= 50, "the replica never caught up")
    timeline: list[tuple[float, str]] = []
    stats = sync_function.cache_stats
    with Load(sync_function, async_function) as load:
        time.sleep(0.5)
        hits_before = stats().l2_hits
        assert hits_before > 0
        killed = time.monotonic()
        deployment.primary.kill()
        timeline.append((0.0, "primary killed (SIGKILL)"))
        promoted = resumed = None
        while time.monotonic() - killed < 30 and (promoted is None or resumed is None):
            now = time.monotonic() - killed
            if promoted is None and deployment.primary_port() == deployment.replica.port:
                promoted = now
                timeline.append((now, "sentinels name the replica primary"))
                hits_at_promotion = stats().l2_hits
            if promoted is not None and resumed is None and stats().l2_hits > hits_at_promotion:
                resumed = now
                timeline.append((now, "L2 hits again (on the new primary)"))
            time.sleep(0.02)
        time.sleep(1.0)  # and they go on
    after = stats()
    for at, event in timeline:
        print(f"t={at:6.2f}s  {event}")
    print(f"calls {load.calls}, errors {len(load.errors)}, wrong {len(load.wrong)}, {after}")
    assert promoted is not None, "the sentinels never promoted the replica"
    assert resumed is not None and resumed <= promoted + 2.0, f"L2 hits resumed at {resumed}"
    assert load.errors == [] and load.wrong == []
    assert load.calls > 1000
    assert after.l2_hits > hits_before and after.degraded is False


def wait_until(condition: Any, message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


# -- TLS --------------------------------------------------------------------------------------


def _tls_client(port: int, d: Path) -> redis.Redis:
    return redis.Redis(
        port=port, ssl=True, ssl_ca_certs=str(d / "ca.crt"), ssl_check_hostname=False, socket_timeout=2
    )


def _start_tls(d: Path, *extra: str, config: Path | None = None) -> tuple[RedisProcess, int]:
    """A redis-server (or, with ``config``, a sentinel) listening on a TLS port only."""
    port = free_port()
    server = RedisProcess(d, port)  # for its binary and stop(): started here, TLS only
    argv = [server.binary, *([str(config)] if config else [])]
    argv += ["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(d)]
    argv += ["--tls-cert-file", str(d.parent / "server.crt"), "--tls-key-file", str(d.parent / "server.key")]
    argv += ["--tls-ca-cert-file", str(d.parent / "ca.crt"), "--tls-auth-clients", "no"]
    argv += ["--tls-replication", "yes", *extra]
    if config is None:
        argv += ["--save", "", "--appendonly", "no"]
    server.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    return server, port


@pytest.fixture
def tls_deployment(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A primary, a replica and three sentinels that all speak TLS only; the service's URL."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    make_certificates(tmp_path, "IP:127.0.0.1")
    processes: list[RedisProcess] = []
    try:
        (tmp_path / "primary").mkdir()
        primary, primary_port = _start_tls(tmp_path / "primary")
        processes.append(primary)
        (tmp_path / "replica").mkdir()
        replica, _ = _start_tls(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary_port))
        processes.append(replica)
        sentinel_ports = []
        for i in range(3):
            d = tmp_path / f"sentinel{i}"
            d.mkdir()
            config = d / "sentinel.conf"
            config.write_text(
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            )
            sentinel, port = _start_tls(d, "--sentinel", config=config)
            processes.append(sentinel)
            sentinel_ports.append(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                states = [_tls_client(port, tmp_path).sentinel_master(SERVICE) for port in sentinel_ports]
                if all(int(s["num-slaves"]) >= 1 and int(s["num-other-sentinels"]) >= 2 for s in states):
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the TLS sentinels never saw the whole deployment"
            time.sleep(0.1)
        hosts = ",".join(f"127.0.0.1:{port}" for port in sentinel_ports)
        yield f"rediss+sentinel://{hosts}/{SERVICE}/0?ssl_ca_certs={tmp_path / 'ca.crt'}", tmp_path
    finally:
        for process in reversed(processes):
            process.stop()


SERVICE = "tiercache-tls"


def test_rediss_sentinel_speaks_tls_to_the_sentinels_and_the_primary(
    tls_deployment: tuple[str, Path],
) -> None:
    url, _ = tls_deployment
    tiercache.configure(redis_url=url, timeout=1.0, connect_timeout=1.0)
    runs: list[int] = []
    double = doubler(f"sentinel.tls.{next(_names)}", runs)
    assert double(4) == 8 and double(4) == 8 and runs == [4]
    assert double.cache_stats().l2_hits == 1 and double.cache_stats().l2_errors == 0

    @tiered_cache(ttl_l1=None, ttl_l2=600, name=double.cache_parameters()["name"])
    async def double_async(n: int) -> int:
        runs.append(n)
        return 2 * n

    assert asyncio.run(double_async(4)) == 8 and runs == [4]
    pool = double.__tiercache__.endpoint().store().client.connection_pool
    assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert all(
        sentinel.connection_pool.connection_kwargs["ssl_check_hostname"]
        for sentinel in pool.sentinel_manager.sentinels
    )


def test_tls_files_given_beside_the_url_reach_the_sentinels_too() -> None:
    """An adapter's l2_ssl_* files, for rediss+sentinel://, are the sentinels' as much as the primary's."""
    target = sentinel_target("rediss+sentinel://h:1/svc")
    assert target is not None
    options = {
        "socket_timeout": 0.1,
        "socket_connect_timeout": 0.2,
        "ssl_ca_certs": "/ca.pem",
        "retry_on_error": [],
    }
    asking = asking_sentinels(target, options, retry=None)
    assert (
        asking["ssl_ca_certs"] == "/ca.pem" and asking["ssl"] is True and asking["ssl_check_hostname"] is True
    )
    assert asking["socket_timeout"] == 0.1 and "retry_on_error" not in asking
    assert primary_options(target, options)["ssl_ca_certs"] == "/ca.pem"
    plain = sentinel_target("redis+sentinel://h:1/svc")
    assert plain is not None and "ssl" not in asking_sentinels(plain, options, retry=None)


def test_a_deployment_that_fails_to_come_up_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that raises half-way (redis-py 7.0 raised TypeError on SENTINEL MASTER) stops what it began."""
    deployment = RedisSentinelProcesses(tmp_path / "sentinel")

    def raising(*_: object) -> bool:
        raise TypeError("parse_sentinel_master() got an unexpected keyword argument")

    monkeypatch.setattr(deployment, "_replicating", raising)
    with pytest.raises(TypeError):
        deployment.start()
    processes = [deployment.primary, deployment.replica, *deployment.sentinels]
    assert all(p.process is not None and p.process.poll() is not None for p in processes)


@pytest.fixture
def lagging_deployment(tmp_path: Path) -> Iterator[RedisSentinelProcesses]:
    """As ``deployment``, but the replica receives the primary's writes 30 ms late (a proxy)."""
    processes = RedisSentinelProcesses(tmp_path / "sentinel")
    with DelayProxy(processes.primary.port, to_client=0.03) as proxy:
        processes.replica = RedisProcess(
            tmp_path / "sentinel" / "replica", None, "--replicaof", "127.0.0.1", str(proxy.port)
        )
        processes.start()
        try:
            yield processes
        finally:
            processes.stop()


def test_an_invalidation_has_reached_the_replica_when_it_returns(
    lagging_deployment: RedisSentinelProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover just after it returns promotes a replica that holds it: the old value cannot come back.

    Before, a replica 30 ms behind did not hold the tombstone (the tag's token, the generation,
    the set value) when the call returned; a failover then lost it, and the old value was served.
    """
    # WAIT takes half the timeout (500 ms), the round trip the rest: a margin a busy CI machine
    # keeps (with 0.2 s, a 100 ms round trip under load timed out and opened the breaker instead).
    tiercache.configure(redis_url=lagging_deployment.url, timeout=1.0)
    replica = lagging_deployment.replica.client()
    primary = lagging_deployment.primary.client()
    lookup = tiered_cache(ttl_l1=None, name=f"sentinel.confirmed.{next(_names)}", tags=["t"])(
        lambda key: "computed"
    )
    generation = f"{lookup.cache_key('k').rsplit(':', 1)[0]}:gen"
    changes = {
        "invalidate": (lambda: lookup.cache_invalidate("k"), lambda: lookup.cache_key("k")),
        "tags": (lambda: tiercache.invalidate_tags("t"), lambda: next(primary.scan_iter("*:tag:*"))),
        "clear": (lookup.cache_clear, lambda: generation),
        "set": (lambda: lookup.cache_set("replaced", "k"), lambda: lookup.cache_key("k")),
    }
    for how, (change, watched) in changes.items():
        lookup("k")
        change()
        key = watched()
        assert replica.get(key) == primary.get(key), f"{how}: the replica lagged behind"
    lagging_deployment.replica.stop()  # no replica to acknowledge: said once, and nothing fails
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        lookup.cache_invalidate("k")
        lookup.cache_invalidate("k")
    said = [r.getMessage() for r in caplog.records if "acknowledged" in r.getMessage()]
    assert len(said) == 1 and "a failover before it does would lose it" in said[0]
