"""The listener reads its subscription off the socket, in both protocols, with either reader."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.utils import HIREDIS_AVAILABLE

import tiercache._l2.inbox
from tiercache._l2.inbox import PubSubInbox, SocketInbox, inbox_of
from tiercache._l2.oversized import BOUND
from tiercache._l2.replies import OversizedReply
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.redis_server


@pytest.fixture(params=[(2, "python"), (3, "python"), (2, "hiredis"), (3, "hiredis")], ids=str)
def subscription(
    request: pytest.FixtureRequest, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> Any:
    protocol, reader = request.param
    if reader == "hiredis" and not HIREDIS_AVAILABLE:
        pytest.skip("hiredis is not installed")
    monkeypatch.setattr(tiercache._l2.inbox, "HIREDIS_AVAILABLE", reader == "hiredis")
    client = redis.Redis.from_url(redis_server.url, protocol=protocol)
    pubsub = client.pubsub()
    pubsub.subscribe("inbox:a")
    yield pubsub
    pubsub.close()
    client.close()


def test_messages_pongs_and_subscriptions_are_read_off_the_socket(
    subscription: Any, redis_server: RedisProcess
) -> None:
    inbox = inbox_of(subscription)
    assert isinstance(inbox, SocketInbox)
    assert inbox.read(2) == [b"subscribe", b"inbox:a", 1]
    inbox.subscribe(["inbox:b"])
    assert inbox.read(2) == [b"subscribe", b"inbox:b", 2]
    publisher = redis_server.client()
    large = bytes(range(256)) * 2000  # (arrives in several reads of the socket)
    publisher.publish("inbox:a", b"one")
    publisher.publish("inbox:b", large)
    publisher.publish("inbox:a", b"")
    assert inbox.read(2) == [b"message", b"inbox:a", b"one"]
    assert inbox.read(2) == [b"message", b"inbox:b", large]
    assert inbox.read(2) == [b"message", b"inbox:a", b""]
    assert inbox.read(0.02) is None  # (nothing more: a quiet poll)
    inbox.ping()
    assert inbox.read(2) in ([b"pong", b""], b"PONG")  # (RESP2 answers a subscriber so; RESP3 plainly)


def read_until_raised(inbox: SocketInbox | PubSubInbox) -> None:
    """Read until the inbox raises (the cause reaches the socket within a poll or two)."""
    for _ in range(100):
        inbox.read(0.05)
    pytest.fail("nothing raised")


def test_a_subscription_cut_or_closed_is_lost_not_reconnected(
    subscription: Any, redis_server: RedisProcess
) -> None:
    inbox = inbox_of(subscription)
    assert inbox.read(2) == [b"subscribe", b"inbox:a", 1]
    redis_server.client().client_kill_filter(_type="pubsub")
    with pytest.raises((ConnectionError, OSError)):
        read_until_raised(inbox)
    subscription.connection.disconnect()
    with pytest.raises(ConnectionError, match="closed"):
        inbox.ping()  # (redis-py would connect again: a socket nobody here reads)


def test_a_published_string_past_the_bound_drops_the_subscription(
    subscription: Any, redis_server: RedisProcess
) -> None:
    inbox = inbox_of(subscription)
    assert inbox.read(2) == [b"subscribe", b"inbox:a", 1]
    redis_server.client().publish("inbox:a", b"x" * (BOUND.bytes + 100_000))
    with pytest.raises(OversizedReply):
        read_until_raised(inbox)


def test_a_refused_subscription_raises(subscription: Any, redis_server: RedisProcess) -> None:
    admin = redis_server.client()
    admin.acl_setuser("inbox-user", enabled=True, passwords=["+secret"], commands=["+subscribe", "+ping"],
                      channels=["inbox:*"], reset_channels=True)  # fmt: skip
    try:
        client = redis.Redis.from_url(f"redis://inbox-user:secret@127.0.0.1:{redis_server.port}/0")
        pubsub = client.pubsub()
        pubsub.subscribe("inbox:mine")
        inbox = inbox_of(pubsub)
        assert inbox.read(2) == [b"subscribe", b"inbox:mine", 1]
        inbox.subscribe(["elsewhere"])
        with pytest.raises(Exception, match="NOPERM"):
            inbox.read(2)
        pubsub.close()
        client.close()
    finally:
        admin.acl_deluser("inbox-user")


def test_a_client_without_a_socket_is_read_through_get_message(fake_server: Any) -> None:
    import fakeredis  # noqa: PLC0415

    pubsub = fakeredis.FakeRedis(server=fake_server).pubsub()
    pubsub.subscribe("inbox:a")
    inbox = inbox_of(pubsub)
    assert isinstance(inbox, PubSubInbox)
    assert inbox.read(1) == [b"subscribe", b"inbox:a", 1]
    fakeredis.FakeRedis(server=fake_server).publish("inbox:a", b"one")
    assert inbox.read(1) == [b"message", b"inbox:a", b"one"]
