"""The primaries of a Redis Cluster that failed lately, so that only their keys skip L2.

One breaker for a whole cluster would take all of it off L2 when one primary dies (with
``cluster-require-full-coverage no`` the others go on serving their slots). Instead, when an
operation fails, the primaries of its keys are asked, one by one, whether they answer; those
that do not are marked down for a while, and operations on their keys fail at once (no
timeout each) with RemotePartlyDown until then. Only when no primary answers is it an outage,
for the breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from tiercache._l2.errors import RemoteError, RemotePartlyDown

__all__ = ["RETRY_AFTER", "AsyncPing", "ClusterNodes", "Ping"]

#: Whether the node at ``(host, port)`` answers PING now (a connection of its own, timeouts and all).
Ping = Callable[[str, int], bool]
AsyncPing = Callable[[str, int], Awaitable[bool]]

#: Seconds a primary that did not answer is left alone before an operation tries it again.
RETRY_AFTER: Final = 1.0
#: Seconds a primary found down is remembered, to tell a failure through it from an outage.
REMEMBERED: Final = 10.0


def _node_of(client: Any, key: str) -> Any:
    try:
        return client.get_node_from_key(key)
    except Exception:  # an uncovered slot, a client not yet initialized: nothing known
        return None


class ClusterNodes:
    """Which primaries of one cluster failed lately (by node name, ``host:port``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down: dict[str, float] = {}  # node name -> when an operation may try it again
        self._lock = threading.Lock()

    def check(self, client: Any, keys: Iterable[str]) -> None:
        """Raise RemotePartlyDown if a primary serving one of ``keys`` failed lately."""
        if not self._down:
            return
        now = self._clock()
        for key in keys:
            node = _node_of(client, key)
            if node is not None and now < self._down.get(node.name, 0.0):
                raise RemotePartlyDown(f"the cluster's primary at {node.name} did not answer lately")

    def blame(self, client: Any, keys: Iterable[str], error: RemoteError, ping: Ping) -> RemoteError:
        """After ``error`` on an operation on ``keys``: mark its primaries that do not answer down.

        Return what the operation raises: RemotePartlyDown where another primary answers (the
        breaker is not told), else ``error`` (an outage of the whole cluster).
        """
        mine, others = self._suspects(client, keys)
        answers = [ping(node.host, node.port) for node in mine]
        if not any(answers) and others:
            answers.append(ping(others[0].host, others[0].port))
        return self._judged(mine, answers, error)

    async def ablame(
        self, client: Any, keys: Iterable[str], error: RemoteError, ping: AsyncPing
    ) -> RemoteError:
        """``blame`` for coroutines."""
        mine, others = self._suspects(client, keys)
        answers = [await ping(node.host, node.port) for node in mine]
        if not any(answers) and others:
            answers.append(await ping(others[0].host, others[0].port))
        return self._judged(mine, answers, error)

    def _suspects(self, client: Any, keys: Iterable[str]) -> tuple[list[Any], list[Any]]:
        mine = {node.name: node for key in keys if (node := _node_of(client, key)) is not None}
        try:
            others = [node for node in client.get_primaries() if node.name not in mine]
        except Exception:  # (nothing known of the others: the breaker decides)
            others = []
        return list(mine.values()), others

    def _lately(self) -> bool:
        """Whether a primary was found down within the last REMEMBERED seconds."""
        now = self._clock()
        return any(now < until - RETRY_AFTER + REMEMBERED for until in self._down.values())

    def _judged(self, mine: list[Any], answers: list[bool], error: RemoteError) -> RemoteError:
        dead = [node for node, answered in zip(mine, answers, strict=False) if not answered]
        if not any(answers):
            return error  # no primary answers: an outage, for the breaker
        if mine and not dead:
            # Every primary of these keys answers: a primary known down failed it (redis-py
            # refreshes its slot map through any node after an error), else it is no dead node.
            down_lately = self._lately()
            return (
                RemotePartlyDown(f"{error} (while a primary of the cluster is down)")
                if down_lately
                else error
            )
        with self._lock:
            for node in dead:
                self._down[node.name] = self._clock() + RETRY_AFTER
        # (With no primary known for the keys, the client dropped a dead one from its slot map.)
        where = f"the cluster's primary at {dead[0].name}" if dead else "a primary of the cluster"
        return RemotePartlyDown(f"{error} ({where} does not answer)")
