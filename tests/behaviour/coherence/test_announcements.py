"""Invalidation announcements: a flat, bounded format; digests, never arguments; signed when values are."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tiercache
import tiercache._l2.coherence
from tests.support.faults import until
from tiercache import tiered_cache
from tiercache._l2.announcement import encode, parse
from tiercache._l2.coherence import ANNOUNCEMENT_WINDOW_MS, channel_for
from tiercache._l2.signing import Signer
from tiercache._tools.redis_process import RedisProcess

KEY = b"k" * 16
digests = st.lists(st.text("0123456789abcdef", min_size=32, max_size=32), max_size=20)


@given(
    origin=st.binary(min_size=8, max_size=8),
    prefix=st.text(max_size=40),
    found=st.one_of(st.none(), digests),
    signed=st.booleans(),
)
def test_announcements_round_trip(origin: bytes, prefix: str, found: list[str] | None, signed: bool) -> None:
    signer = Signer((KEY,)) if signed else None
    data = encode("ns:invalidations", origin, prefix, found, signer)
    message = parse(data)
    assert message is not None
    assert (message.origin, message.key_prefix, message.digests, message.signed) == (
        origin,
        prefix,
        found,
        signed,
    )
    if signer is not None:
        assert signer.verify("ns:invalidations", data)
        assert not signer.verify("another:invalidations", data)  # the channel is signed too


@given(st.binary(max_size=300))
def test_any_bytes_parse_to_an_announcement_or_none(data: bytes) -> None:
    parse(data)


def test_what_used_to_crash_a_process_is_not_an_announcement() -> None:
    """192 bytes of 64 nested extension values: the format has no nesting to recurse into."""
    data = msgpack.packb([])
    for _ in range(64):
        data = msgpack.packb(msgpack.ExtType(1, data))
    assert len(data) < 200 and parse(data) is None
    truncated = encode("c", b"o" * 8, "p", ["a" * 32, "b" * 32], None)[:-5]
    assert parse(truncated) is None
    assert parse(encode("c", b"o" * 8, "p", ["a" * 32], None) + b"extra") is None
    assert parse(encode("c", b"o" * 8, "p", ["A" * 32], None)) is None  # digests are lowercase hex


def listen(server: RedisProcess, channel: str) -> list[bytes]:
    """Collect what is published on ``channel`` (a raw subscriber, as an eavesdropper would be)."""
    seen: list[bytes] = []
    ready = threading.Event()
    pubsub = server.client().pubsub()

    def run() -> None:
        pubsub.subscribe(channel)
        ready.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                seen.append(message["data"])

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(2)
    time.sleep(0.05)
    return seen


@pytest.mark.parametrize("signing", [None, "a-signing-key-of-16-bytes+"])
def test_the_channel_carries_digests_not_arguments(
    real_l2: str, redis_server: RedisProcess, signing: str | None
) -> None:
    @tiered_cache(name="announce.session", signing_key=signing)
    def get_session(session_id: str) -> dict[str, str]:
        return {"id": session_id}

    get_session("victim-session-id")
    seen = listen(redis_server, channel_for(tiercache.configure().namespace))
    get_session.cache_invalidate("victim-session-id")
    until(lambda: bool(seen), timeout=2)
    assert all(b"victim-session-id" not in message for message in seen)
    digest = get_session.cache_key("victim-session-id")[-32:]
    assert digest.encode() in seen[0]


SIGNING_KEY = "a-signing-key-of-16-bytes+"


def signing_pair(name: str, source: dict[str, int]) -> tuple[Any, Any, str]:
    """Two signing functions of one name (two processes, as the channel sees them), each holding
    ``source["a"]`` in L1; and their channel."""
    one = tiered_cache(ttl_l1=3600, name=name, signing_key=SIGNING_KEY)(lambda k: source[k])
    other = tiered_cache(ttl_l1=3600, name=name, signing_key=SIGNING_KEY)(lambda k: source[k])
    assert one("a") == other("a") == source["a"]
    channel = one.__tiercache__.coherence.channel
    assert channel is not None
    return one, other, channel


def test_a_signing_cache_ignores_what_it_cannot_verify(real_l2: str, redis_server: RedisProcess) -> None:
    """Forged (unsigned, or signed with another key) announcements drop nothing; genuine ones do."""
    source = {"a": 1}
    one, other, channel = signing_pair("announce.signed", source)
    cache = one.__tiercache__
    digest = one.cache_key("a")[-32:]
    client = redis_server.client()
    for signer in (None, Signer((b"not-the-key-at-all!!",))):
        client.publish(channel, encode(channel, b"stranger", cache.coherence.key_prefix, [digest], signer))
    client.publish(
        channel, encode(channel, b"stranger", cache.coherence.key_prefix, None, None)
    )  # a forged clear
    source["a"] = 2
    time.sleep(0.2)
    assert one("a") == 1  # nothing it could verify arrived: the entry stands
    other.cache_invalidate("a")  # genuine, and signed
    until(lambda: one("a") == 2, timeout=2)


def test_a_signing_cache_obeys_a_genuine_announcement_once_and_never_a_replay(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """The MAC covered channel and message but no time or nonce: a captured genuine clear-all
    replayed at 16k/s took a signing cache's L1 hit rate from 100% to 4.5%. A signed announcement
    now carries its time and a nonce under the MAC: heard once, or sent too long ago, it is
    ignored."""
    one, other, channel = signing_pair("announce.replay", {"a": 1})
    client = redis_server.client()
    captured: list[bytes] = []
    with client.pubsub() as spy:
        spy.subscribe(channel)
        spy.get_message(timeout=1)  # (the subscription's confirmation)
        other.cache_clear()  # genuine, signed: heard by one, and by the spy
        until(lambda: one("a") == 1 and one.cache_stats().misses == 2, timeout=2)
        message = spy.get_message(timeout=2)
        assert message is not None
        captured.append(message["data"])
    l2_hits = one.cache_stats().l2_hits
    for _ in range(200):
        client.publish(channel, captured[0])
    time.sleep(0.3)
    assert one("a") == 1
    assert one.cache_stats().l2_hits == l2_hits  # an L1 hit: the replays dropped nothing


def test_a_signed_announcement_from_outside_the_window_is_ignored(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent (by its own clock) more than ANNOUNCEMENT_WINDOW_MS ago: refused, even never heard."""
    one, _, channel = signing_pair("announce.window", {"a": 1})
    cache = one.__tiercache__
    key = SIGNING_KEY
    real_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() - (ANNOUNCEMENT_WINDOW_MS + 5_000) * 1_000_000)
    old = encode(channel, b"stranger", cache.coherence.key_prefix, None, Signer((key.encode(),)))
    monkeypatch.setattr(time, "time_ns", real_ns)
    redis_server.client().publish(channel, old)
    time.sleep(0.3)
    assert one("a") == 1 and one.cache_stats().l2_hits == 0  # an L1 hit: ignored
    fresh = encode(channel, b"stranger", cache.coherence.key_prefix, None, Signer((key.encode(),)))
    redis_server.client().publish(channel, fresh)
    until(lambda: one("a") == 1 and one.cache_stats().l2_hits == 1, timeout=2)  # obeyed: L1 dropped


def test_the_listener_survives_hostile_announcements(real_l2: str, redis_server: RedisProcess) -> None:
    source = {"a": 1}
    one = tiered_cache(ttl_l1=3600, name="announce.hostile")(lambda k: source[k])
    other = tiered_cache(ttl_l1=3600, name="announce.hostile")(lambda k: source[k])
    assert one("a") == other("a") == 1
    channel = one.__tiercache__.coherence.channel
    nested = msgpack.packb([])
    for _ in range(64):
        nested = msgpack.packb(msgpack.ExtType(1, nested))
    client = redis_server.client()
    for junk in (nested, b"tcA2" + b"\xff" * 200, b"\x00" * (1 << 20)):
        client.publish(channel, junk)
    source["a"] = 2
    other.cache_invalidate("a")
    until(lambda: one("a") == 2, timeout=2)  # the listener is alive and still follows


def test_a_megabyte_of_announcement_does_not_stall_the_listener(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """32k digests in one announcement (the 1 MiB cap) are looked up, not hashed at will: a real
    invalidation published right after still arrives within a fraction of a second."""
    source = {"a": 1}
    one = tiered_cache(ttl_l1=3600, name="announce.big")(lambda k: source[k])
    other = tiered_cache(ttl_l1=3600, name="announce.big")(lambda k: source[k])
    assert one("a") == other("a") == 1
    cache = one.__tiercache__
    channel = cache.coherence.channel
    flood = [f"{i:032x}" for i in range(((1 << 20) - 200) // 32)]
    big = encode(channel, b"stranger", cache.coherence.key_prefix, flood, None)
    assert len(big) <= 1 << 20
    client = redis_server.client()
    for _ in range(5):
        client.publish(channel, big)
    source["a"] = 2
    started = time.monotonic()
    other.cache_invalidate("a")
    until(lambda: one("a") == 2, timeout=2)
    assert time.monotonic() - started < 1.0


def test_without_an_l1_an_unknown_digest_forgets_lingering_runs(real_l2: str) -> None:
    """An L1-less function lets a finished run linger 0.1 s for late callers: an announcement it
    cannot place (its note pruned) drops them all, rather than let one hand out an old value."""
    f = tiered_cache(ttl_l1=None, name="announce.linger")(lambda key: key)
    f("a")
    flights = f.__tiercache__.flights.thread
    assert flights._landed  # the run lingers
    f.__tiercache__.coherence.drop_announced(["0" * 32])
    assert not flights._landed


class _Recorder:
    """A member that writes down what it was told to drop."""

    key_prefix = "tc:app.f"
    origin = b"\x00" * 8
    signer = None

    def __init__(self) -> None:
        self.dropped: list[Any] = []

    def drop_local(self, keys: Any, *, keep_stale: bool = False) -> None:
        self.dropped.append(keys)

    def drop_announced(self, digests: Any) -> None:
        self.dropped.append(digests)

    def set_deaf(self, deaf: bool) -> None:
        pass


values = st.recursive(
    st.none() | st.integers() | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@given(
    kind=st.sampled_from([b"message", b"subscribe", b"pong", b"pmessage"]) | values,
    channel=values,
    data=values,
)
@example(kind=b"message", channel=b"\xff\xfe", data=b"tcA2")  # (a channel that is not UTF-8)
@example(kind=b"subscribe", channel=b"\xff", data=1)
@example(kind=b"message", channel=5, data=None)
def test_the_listener_ignores_any_message_that_is_not_an_announcement(
    kind: Any, channel: Any, data: Any
) -> None:
    """Whatever a hostile server sends on the subscription is ignored, not raised in the listener
    (which would count the subscription lost and flush every L1), and drops nothing."""
    bus = tiercache._l2.coherence.Bus("test", subscribe=lambda _attempt: None)
    member = _Recorder()
    bus._members["tc:invalidations"] = {member.key_prefix: weakref.WeakSet([member])}
    bus._dispatch([kind, channel, data])
    bus._dispatch([kind, channel])
    bus._dispatch(kind)
    assert member.dropped == []
    digest = "0" * 32
    announced = encode("tc:invalidations", b"\x01" * 8, member.key_prefix, [digest], None)
    bus._dispatch([b"message", b"tc:invalidations", announced])
    assert member.dropped == [[digest]]  # (a well-formed one, the same way, is obeyed)


def _unreachable(_attempt: int) -> Any:
    raise ConnectionError("no Redis here")


def test_a_member_that_joins_after_the_listener_heard_its_prefix_hears_what_comes_next() -> None:
    """The listener remembers who follows each prefix; a join (and a member's death) changes that."""
    bus = tiercache._l2.coherence.Bus("test", subscribe=_unreachable, join_timeout=0)
    channel, digest = "tc:invalidations", "0" * 32
    announced = encode(channel, b"\x01" * 8, _Recorder.key_prefix, [digest], None)
    first, second = _Recorder(), _Recorder()
    try:
        bus.join(channel, first)
        bus._dispatch([b"message", channel.encode(), announced])
        assert first.dropped == [[digest]]
        bus.join(channel, second)
        bus._dispatch([b"message", channel.encode(), announced])
        assert first.dropped == [[digest], [digest]] and second.dropped == [[digest]]
        told = second.dropped
        del second
        bus._dispatch([b"message", channel.encode(), announced])  # (a member gone is skipped)
        assert len(first.dropped) == 3 and len(told) == 1
    finally:
        bus.stop()


def test_prefixes_nobody_follows_are_not_remembered() -> None:
    """Anyone who can publish can name any number of prefixes: the listener keeps none of them."""
    bus = tiercache._l2.coherence.Bus("test", subscribe=_unreachable, join_timeout=0)
    channel = "tc:invalidations"
    member = _Recorder()
    try:
        bus.join(channel, member)
        for n in range(1000):
            announced = encode(channel, b"\x01" * 8, f"tc:other{n}", ["0" * 32], None)
            bus._dispatch([b"message", channel.encode(), announced])
        assert member.dropped == [] and len(bus._audiences) == 0
    finally:
        bus.stop()
