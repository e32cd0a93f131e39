"""Which primaries of a cluster failed lately: only their keys skip L2, an outage is the breaker's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.clock import Clock
from tiercache._l2.errors import RemotePartlyDown, RemoteUnavailable
from tiercache._l2.nodes import RETRY_AFTER, ClusterNodes


@dataclass(frozen=True)
class Node:
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


A, B, C = Node("h", 1), Node("h", 2), Node("h", 3)


class Client:
    """Keys ``a*`` live on A, ``b*`` on B, ``c*`` on C."""

    def get_node_from_key(self, key: str) -> Node:
        return {"a": A, "b": B, "c": C}[key[0]]

    def get_primaries(self) -> list[Node]:
        return [A, B, C]


def answering(*alive: Node) -> Any:
    return lambda host, port: Node(host, port) in alive


def test_a_dead_primary_fails_its_keys_at_once_for_a_while_and_the_others_not_at_all() -> None:
    clock = Clock()
    nodes = ClusterNodes(clock)
    error = RemoteUnavailable("Connection refused")
    blamed = nodes.blame(Client(), ["a1"], error, answering(B, C))
    assert isinstance(blamed, RemotePartlyDown) and "h:1" in str(blamed)
    with pytest.raises(RemotePartlyDown):
        nodes.check(Client(), ["b1", "a2"])
    nodes.check(Client(), ["b1", "c1"])  # the others go on
    clock.now += RETRY_AFTER
    nodes.check(Client(), ["a2"])  # tried again


def test_no_primary_answering_is_an_outage() -> None:
    error = RemoteUnavailable("down")
    assert ClusterNodes(Clock()).blame(Client(), ["a1", "b1"], error, answering()) is error


def test_a_failure_while_every_primary_of_the_keys_answers_is_not_theirs() -> None:
    error = RemoteUnavailable("timeout")
    nodes = ClusterNodes(Clock())
    assert nodes.blame(Client(), ["a1"], error, answering(A, B, C)) is error  # nothing down: the breaker
    nodes.blame(Client(), ["c1"], error, answering(A, B))  # C found down
    assert isinstance(nodes.blame(Client(), ["a1"], error, answering(A, B)), RemotePartlyDown)


def test_async_blame_judges_alike() -> None:
    async def ping(host: str, port: int) -> bool:
        return Node(host, port) != A

    nodes = ClusterNodes(Clock())
    blamed = asyncio.run(nodes.ablame(Client(), ["a1"], RemoteUnavailable("refused"), ping))
    assert isinstance(blamed, RemotePartlyDown)
    with pytest.raises(RemotePartlyDown):
        nodes.check(Client(), ["a9"])
