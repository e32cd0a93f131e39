"""Throwaway redis-server processes on free loopback ports, for the demo, benchmarks and tests.

Started with nothing persisted, and stopped, killed, paused or resumed only by the pid we
started, so they never touch a server someone else runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redis.cluster

__all__ = ["RedisProcess", "RedisSentinelProcesses", "free_port", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """Return the path of redis-server on PATH, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    """Return a loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _stopped_on_failure(deployment: RedisClusterProcesses | RedisSentinelProcesses) -> Iterator[None]:
    # A deployment that fails to come up (a timeout, a client library that raises on a reply)
    # must not leave its servers running: nobody would hold their pids any more.
    try:
        yield
    except BaseException:
        deployment.stop()
        raise


class RedisProcess:
    """One redis-server child process on 127.0.0.1."""

    def __init__(
        self, directory: Path, port: int | None = None, *extra: str, config: Path | None = None
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.config = config  # a configuration file read first (sentinels rewrite theirs)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's redis:// URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server process's pid (only after start())."""
        if self.process is None:
            raise RuntimeError("redis-server was not started")
        return self.process.pid

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, *([str(self.config)] if self.config else [])]
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.directory), *self.extra]
        with open(self.directory / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.process.returncode}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def ping(self) -> bool:
        """Return whether the server answers PING right now."""
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            return bool(client.ping())
        except (redis.ResponseError, redis.AuthenticationError):
            return True  # it answered (NOAUTH, say): it is up
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """Return a plain client of this server (for inspecting what tiercache wrote)."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def stop(self) -> None:
        """Terminate the server (by its pid) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the server: no goodbye to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> RedisProcess:
        """Start again on the same port (after kill() or stop())."""
        self.stop()
        return self.start()


class RedisClusterProcesses:
    """A Redis Cluster of ``primaries`` redis-server children on 127.0.0.1, no replicas.

    Nodes give up on a dead peer after ``node_timeout_ms``, and keep serving the slots they hold
    meanwhile (``cluster-require-full-coverage no``), as a cache's cluster should be set up.
    """

    def __init__(self, directory: Path, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        cluster_options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        cluster_options += ["--cluster-node-timeout", str(node_timeout_ms)]
        cluster_options += ["--cluster-require-full-coverage", "no"]
        # Each node's cluster bus gets a free port of its own (the default, port + 10000, may not exist).
        self.nodes = [
            RedisProcess(directory / f"node{i}", None, *cluster_options, "--cluster-port", str(free_port()))
            for i in range(primaries)
        ]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL of the first node (any node leads to the rest)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 20.0) -> RedisClusterProcesses:
        """Start every node, join them into one cluster, and wait until it reports ok.

        If anything fails on the way, every node started so far is stopped before it raises.
        """
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        with _stopped_on_failure(self):
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(  # noqa: S603
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every node says the cluster is ok and knows every node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                infos = [node.client().cluster("info") for node in self.nodes]
                if all(info.get("cluster_state") == "ok" for info in infos) and all(
                    int(info.get("cluster_known_nodes", 0)) == len(self.nodes) for info in infos
                ):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not become ok within {timeout}s")

    def primary_of(self, key: str) -> RedisProcess:
        """Return the node holding ``key``'s slot."""
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)
        try:
            port = client.get_node_from_key(key).port  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        """Terminate every node."""
        for node in self.nodes:
            node.stop()


class RedisSentinelProcesses:
    """A primary, its replica and ``sentinels`` sentinels watching them, all on 127.0.0.1.

    The sentinels call the primary down after ``down_after_ms`` without an answer and then
    promote the replica (a quorum of two): what a small production deployment looks like.
    """

    SERVICE = "tiercache-primary"

    def __init__(self, directory: Path, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.down_after_ms = down_after_ms
        self.primary = RedisProcess(directory / "primary")
        self.replica = RedisProcess(
            directory / "replica", None, "--replicaof", "127.0.0.1", str(self.primary.port)
        )
        self.sentinels = [self._sentinel(directory / f"sentinel{i}") for i in range(sentinels)]

    def _sentinel(self, directory: Path) -> RedisProcess:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.SERVICE} 10000\n"
            f"sentinel parallel-syncs {self.SERVICE} 1\n"
        )
        return RedisProcess(directory, None, "--sentinel", config=config)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the service, naming every sentinel."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self, timeout: float = 30.0) -> RedisSentinelProcesses:
        """Start the servers and sentinels; wait until every sentinel knows the replica and the others.

        If anything fails on the way, every process started so far is stopped before it raises.
        """
        with _stopped_on_failure(self):
            self.primary.start()
            self.replica.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait_seen(timeout)
        return self

    def _wait_seen(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._replicating() and all(self._sees_all(sentinel) for sentinel in self.sentinels):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the sentinels did not see the whole deployment within {timeout}s")

    def _replicating(self) -> bool:
        try:
            info = self.replica.client().info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _sees_all(self, sentinel: RedisProcess) -> bool:
        try:
            state = sentinel.client().sentinel_master(self.SERVICE)
        except redis.RedisError:
            return False
        if not isinstance(state, dict):
            return False
        others = len(self.sentinels) - 1
        return int(state.get("num-slaves", 0)) >= 1 and int(state.get("num-other-sentinels", 0)) >= others

    def primary_port(self) -> int | None:
        """Return the port the first answering sentinel names as primary, or None."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.client().sentinel_get_master_addr_by_name(self.SERVICE)
            except redis.RedisError:
                continue
            if isinstance(address, tuple):
                return int(address[1])
        return None

    def stop(self) -> None:
        """Terminate every process (sentinels first, so none starts a failover on the way out)."""
        for process in [*self.sentinels, self.replica, self.primary]:
            process.stop()
