"""A shared Redis is a trust boundary: what someone who can write to it can and cannot do to us."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache
from tests.support.strategies import normal_form, values
from tests.support.tls import make_certificates
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._core.remote import DEADLINE_SLACK
from tiercache._decorator import tag_names
from tiercache._decorator.keys import canonical_bytes, digest
from tiercache._decorator.tag_names import digest_of, tag_key
from tiercache._l2.announcement import encode
from tiercache._l2.codec import DecodeError, decode_value, encode_value
from tiercache._l2.coherence import channel_for
from tiercache._l2.deployments import endpoint_for_url
from tiercache._l2.envelope import MAX_GENERATION, NO_TOKEN, seal
from tiercache._l2.errors import BRIEF_CHARS, brief
from tiercache._l2.inbox import SocketInbox, inbox_of
from tiercache._l2.signing import Signer
from tiercache._tools.redis_process import RedisProcess, free_port

KEY_1 = "first-signing-key-0123456789"
KEY_2 = "second-signing-key-9876543210"


def run_counter(**options: Any) -> tuple[Any, list[str]]:
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, name="security.lookup", **options)
    def lookup(user_id: str) -> dict[str, str]:
        runs.append(user_id)
        return {"user": user_id, "role": "reader"}

    return lookup, runs


def plant(server: RedisProcess, key: str, payload: bytes) -> None:
    server.client().set(key, payload)


# -- no code execution from L2 ---------------------------------------------------------------


class Boom:
    def __reduce__(self) -> Any:
        return (print, ("pickle payload executed!",))


def nested_ext(depth: int) -> bytes:
    body = msgpack.packb(None)
    for _ in range(depth):
        body = msgpack.packb(msgpack.ExtType(1, msgpack.packb([msgpack.ExtType(1, body)])))
    return body


HOSTILE = {
    "pickle": pickle.dumps(Boom()),
    "unknown-ext": msgpack.packb(msgpack.ExtType(42, b"import os")),
    "registered-name-not-registered": msgpack.packb(msgpack.ExtType(11, msgpack.packb(["os.system", "id"]))),
    "deep-arrays": b"\x91" * 200_000 + b"\xc0",
    "deep-ext": nested_ext(5_000),
    "1GB-bin": b"\xc6\x40\x00\x00\x00" + b"x" * 10,
    "1G-array": b"\xdd\x40\x00\x00\x00",
    "1G-map": b"\xdf\x40\x00\x00\x00",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_payloads_are_misses_not_code(
    real_l2: str, redis_server: RedisProcess, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw hostile bytes, and the same bytes inside a well-formed envelope of ours."""
    lookup, runs = run_counter()
    lookup("warm")  # learns the generation
    for i, payload in enumerate([HOSTILE[name], seal(HOSTILE[name], 0, NO_TOKEN, 2**62)]):
        plant(redis_server, lookup.cache_key(f"victim{i}"), payload)
        assert lookup(f"victim{i}") == {"user": f"victim{i}", "role": "reader"}
    assert runs == ["warm", "victim0", "victim1"]
    assert "executed" not in capsys.readouterr().out
    stats = lookup.cache_stats()
    assert stats.l2_corrupt + stats.l2_rejected == 2


# -- tamper-evident values -------------------------------------------------------------------


def test_signed_values_round_trip_and_are_signed_in_redis(real_l2: str, redis_server: RedisProcess) -> None:
    writer, _ = run_counter(signing_key=KEY_1)
    reader, runs = run_counter(signing_key=KEY_1)
    writer("alice")
    assert reader("alice") == {"user": "alice", "role": "reader"} and runs == []
    raw = redis_server.client().get(writer.cache_key("alice"))
    assert raw[3] & 1  # the SIGNED flag


def test_forged_unsigned_and_moved_values_are_rejected(
    real_l2: str, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    honest, _ = run_counter(signing_key=KEY_1)
    honest("alice")
    honest("mallory")
    client = redis_server.client()
    genuine = client.get(honest.cache_key("alice"))
    tampered = genuine[:-40] + bytes([genuine[-40] ^ 1]) + genuine[-39:]
    client.set(honest.cache_key("alice"), tampered)  # a flipped bit in the value
    unsigned, _ = run_counter()  # a process with no key, writing unsigned values
    unsigned("bob")
    assert unsigned.cache_key("bob") != honest.cache_key("bob")  # key names are keyed digests
    client.set(honest.cache_key("bob"), client.get(unsigned.cache_key("bob")))
    client.set(honest.cache_key("mallory"), genuine)  # alice's genuine value under mallory's key
    victim, runs = run_counter(signing_key=KEY_1)
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert victim("alice")["user"] == "alice"
        assert victim("bob")["user"] == "bob"
        assert victim("mallory")["user"] == "mallory"
    assert runs == ["alice", "bob", "mallory"]  # every one recomputed, none served
    assert victim.cache_stats().l2_rejected == 3
    assert len([r for r in caplog.records if "signature does not verify" in r.getMessage()]) == 1


def test_key_rotation_newest_signs_all_verify(real_l2: str) -> None:
    old, _ = run_counter(signing_key=KEY_1)
    both, both_runs = run_counter(signing_key=[KEY_2, KEY_1])
    old("alice")
    assert both("alice")["user"] == "alice" and both_runs == []  # verified with the older key
    both.cache_invalidate("alice")
    both("alice")  # written now, signed with the newer key
    new_only, new_runs = run_counter(signing_key=[KEY_2, KEY_1])
    assert new_only("alice")["user"] == "alice" and new_runs == []
    assert old("alice")["user"] == "alice"  # a process not yet given the new key recomputes
    assert old.cache_stats().l2_rejected == 1


def test_signed_and_unsigned_processes_keep_apart(real_l2: str, redis_server: RedisProcess) -> None:
    """Keyed digests put signed values under other names: a keyless process never meets them."""
    signer, _ = run_counter(signing_key=KEY_1)
    plain, runs = run_counter()
    signer("alice")
    assert plain("alice")["user"] == "alice" and runs == ["alice"]
    assert plain.cache_stats().l2_rejected == 0
    assert redis_server.client().exists(signer.cache_key("alice"), plain.cache_key("alice")) == 2


def test_signing_is_configurable_process_wide_and_validated(
    real_l2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiercache.configure(signing_key=KEY_1)
    lookup, _ = run_counter()
    lookup("alice")
    assert lookup.__tiercache__.remote.signer is not None
    with pytest.raises(ValueError, match=r"at least 16 bytes"):
        tiercache.configure(signing_key="short")
    with pytest.raises(TypeError, match=r"tiered_cache\(\): signing_key must be"):
        tiered_cache(signing_key=42)  # type: ignore[arg-type]
    assert "first-signing" not in repr(tiercache.configure())
    monkeypatch.setenv("TIERCACHE_SIGNING_KEY", f"{KEY_2}, {KEY_1}")
    assert tiercache.Settings.from_environment(os.environ).signing_keys == (KEY_2.encode(), KEY_1.encode())
    assert MultiTierCacheSettings.from_env().signing_key == f"{KEY_2}, {KEY_1}"


def test_signer_checks_every_key_and_the_context() -> None:
    signer = Signer((KEY_2.encode(), KEY_1.encode()))
    payload = b"tc\x01\x01payload"
    signed = payload + signer.sign("ns:f:abc", payload)
    assert signer.verify("ns:f:abc", signed)
    assert not signer.verify("ns:f:abd", signed)
    assert not signer.verify("ns:f:abc", signed[:-1] + bytes([signed[-1] ^ 1]))
    assert Signer((KEY_1.encode(),)).verify(
        "ns:f:abc", payload + Signer((KEY_1.encode(),)).sign("ns:f:abc", payload)
    )
    assert not signer.verify("ns:f:abc", b"short")


# -- no secrets in key names -----------------------------------------------------------------


def test_key_names_hold_digests_keyed_by_the_signing_key() -> None:
    plain, _ = run_counter()
    signed, _ = run_counter(signing_key=KEY_1)
    rotated, _ = run_counter(signing_key=[KEY_2, KEY_1])
    session_id = "sess-0042"
    assert session_id not in plain.cache_key(session_id)
    assert plain.cache_key(session_id) != signed.cache_key(session_id)
    assert signed.cache_key(session_id) == rotated.cache_key(session_id)  # a new key renames nothing
    # Without the key, a guess of the id cannot be checked against the name.
    unkeyed_guess = digest(canonical_bytes((session_id,), ("user_id",), "security.lookup"), b"", None)
    assert unkeyed_guess not in signed.cache_key(session_id)


@given(st.lists(values, min_size=2, max_size=60, unique_by=normal_form))
@settings(max_examples=150)
def test_distinct_arguments_never_share_a_digest(sample: list[Any]) -> None:
    digests = {digest(canonical_bytes((v,), ("x",), "f"), b"1|f|x|") for v in sample}
    assert len(digests) == len(sample)


def test_a_large_sample_of_ids_has_no_colliding_digests() -> None:
    ids = (
        [f"user-{i}" for i in range(100_000)]
        + list(range(100_000))
        + [str(i).encode() for i in range(50_000)]
    )
    digests = {digest(canonical_bytes((v,), ("x",), "f"), b"1|f|x|") for v in ids}
    assert len(digests) == len(ids)


# -- bounded sizes ---------------------------------------------------------------------------


def test_values_over_max_value_bytes_stay_in_l1(real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(max_value_bytes=1024, name="security.blob")
    def blob(size: int) -> bytes:
        return b"x" * size

    assert len(blob(10_000)) == 10_000
    assert blob(10_000) is blob(10_000)  # L1 still holds it
    assert not redis_server.client().exists(blob.cache_key(10_000))
    blob(100)
    assert redis_server.client().exists(blob.cache_key(100))
    assert blob.cache_stats().oversized == 1


def test_planted_payloads_over_the_bound_are_refused_before_decoding(
    real_l2: str, redis_server: RedisProcess
) -> None:
    lookup, runs = run_counter(max_value_bytes=4096)
    lookup("warm")
    huge = seal(encode_value(["x" * 100_000]), 0, NO_TOKEN, 2**62)
    plant(redis_server, lookup.cache_key("victim"), huge)
    assert lookup("victim")["user"] == "victim"
    assert runs == ["warm", "victim"] and lookup.cache_stats().l2_rejected == 1


# -- credentials -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(
        Path(tmp_path_factory.mktemp("acl")),
        None,
        "--user", "alice", "on", ">alice-hunter2-pw", "~*", "+@all",
        "--user", "default", "off",
    )  # fmt: skip
    yield server.start()
    server.stop()


def test_acl_username_and_password(acl_server: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    tiercache.configure(redis_url=f"redis://alice:alice-hunter2-pw@127.0.0.1:{acl_server.port}/0")
    good, runs = run_counter()
    good("a")
    good("a")
    assert runs == ["a"]
    tiercache.configure(redis_url=f"redis://alice:wrong-hunter2@127.0.0.1:{acl_server.port}/0")
    with caplog.at_level(logging.DEBUG):
        bad, _ = run_counter()
        assert bad("a")["user"] == "a"
        settings = MultiTierCacheSettings(l2_host="127.0.0.1", l2_port=acl_server.port, l2_username="alice",
                                          l2_password="alice-hunter2-pw")  # fmt: skip  # noqa: S106
        cache = MultiTierCache(settings)
        cache.set("k", 1)
        assert MultiTierCache(settings).get("k") == 1
    assert bad.cache_stats().l2_errors == 1
    text = caplog.text + repr(settings) + repr(cache) + repr(bad.cache_stats()) + repr(tiercache.configure())
    assert "hunter2" not in text


def _start_tls_server(d: Path, san: str) -> RedisProcess:
    """A redis-server that speaks only TLS, with a certificate for ``san``, wanting client certs."""
    make_certificates(d, san)
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-auth-clients", "yes", "--tls-cert-file", str(d / "server.crt"),
           "--tls-key-file", str(d / "server.key"), "--tls-ca-cert-file", str(d / "ca.crt")]  # fmt: skip
    server = RedisProcess(d, port)  # for its binary and stop(); started here, where only TLS listens
    argv = [server.binary, "--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server.process = subprocess.Popen([*argv, "--dir", str(d), *tls], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:  # it speaks only TLS: a plain PING would fail, so wait for it to accept
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.02)
    return server


def _tls_server(factory: pytest.TempPathFactory, name: str, san: str) -> Iterator[tuple[RedisProcess, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = Path(factory.mktemp(name))
    server = _start_tls_server(d, san)
    yield server, d
    server.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess, Path]]:
    """A TLS-only redis-server whose certificate is for 127.0.0.1."""
    yield from _tls_server(tmp_path_factory, "tls", "IP:127.0.0.1")


@pytest.fixture(scope="module")
def wrong_host_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess, Path]]:
    """A TLS-only redis-server on 127.0.0.1 whose (CA-signed) certificate is for another host."""
    yield from _tls_server(tmp_path_factory, "tls-wrong-host", "DNS:elsewhere.example")


def test_a_certificate_for_another_host_is_refused(
    wrong_host_tls_server: tuple[RedisProcess, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Signed by the trusted CA, but not for 127.0.0.1: an unreachable Redis, whatever redis-py."""
    server, d = wrong_host_tls_server
    query = f"ssl_ca_certs={d / 'ca.crt'}&ssl_certfile={d / 'client.crt'}&ssl_keyfile={d / 'client.key'}"
    url = f"rediss://127.0.0.1:{server.port}/0?{query}"
    endpoint = endpoint_for_url(url, timeout=2, connect_timeout=2)
    assert endpoint.store().client.connection_pool.connection_kwargs["ssl_check_hostname"] is True
    tiercache.configure(redis_url=url, connect_timeout=2, timeout=2)
    lookup, runs = run_counter()
    lookup("a")
    lookup("a")
    assert runs == ["a", "a"]  # (no L1 here) every value came from the function, none from that server
    assert lookup.cache_stats().l2_hits == 0 and lookup.cache_stats().l2_errors >= 1
    assert any("hostname" in r.getMessage() or "match" in r.getMessage() for r in caplog.records)
    endpoint.close()


def test_tls_with_a_client_certificate(tls_server: tuple[RedisProcess, Path]) -> None:
    server, d = tls_server
    query = f"ssl_ca_certs={d / 'ca.crt'}&ssl_certfile={d / 'client.crt'}&ssl_keyfile={d / 'client.key'}"
    url = f"rediss://127.0.0.1:{server.port}/0?{query}"
    tiercache.configure(redis_url=url, connect_timeout=2, timeout=2)
    lookup, runs = run_counter()
    lookup("a")
    lookup("a")
    assert runs == ["a"] and lookup.cache_stats().l2_hits == 1
    settings = MultiTierCacheSettings(
        l2_host="127.0.0.1", l2_port=server.port, l2_ssl=True, l2_ssl_ca_certs=str(d / "ca.crt"),
        l2_ssl_certfile=str(d / "client.crt"), l2_ssl_keyfile=str(d / "client.key"), l2_timeout=2,
        l2_connect_timeout=2,
    )  # fmt: skip
    cache = MultiTierCache(settings)
    cache.set("k", {"secure": True})
    other = MultiTierCache(settings)  # (another process's, as coherence sees it: its own L1)
    assert other.get("k") == {"secure": True}
    # Announcements are heard over TLS too, read off the TLS socket.
    bus = other._tiers.endpoint().bus  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while not bus.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(bus._subscription.inbox, SocketInbox)  # type: ignore[union-attr]
    for n in range(5):
        cache.set("k", n)
        while other.get("k") != n and time.monotonic() < deadline:
            time.sleep(0.002)
        assert other.get("k") == n
    listener = redis.Redis.from_url(url).pubsub()
    listener.subscribe("tls-burst")
    inbox = inbox_of(listener)
    assert isinstance(inbox, SocketInbox) and inbox.read(2) == [b"subscribe", b"tls-burst", 1]
    publisher = redis.Redis.from_url(url).pipeline(transaction=False)
    for n in range(50):
        publisher.publish("tls-burst", b"%d" % n)
    publisher.execute()
    # (many TLS records arriving together: each is read, none waits for more traffic)
    assert [inbox.read(1) for _ in range(50)] == [[b"message", b"tls-burst", b"%d" % n] for n in range(50)]
    listener.close()


def test_tls_without_a_client_certificate_degrades(tls_server: tuple[RedisProcess, Path]) -> None:
    server, d = tls_server
    tiercache.configure(
        redis_url=f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={d / 'ca.crt'}", connect_timeout=2
    )
    lookup, _ = run_counter()
    assert lookup("a")["user"] == "a"
    assert lookup.cache_stats().l2_errors == 1


def test_settings_check_certificate_files_exist() -> None:
    with pytest.raises(ValueError, match=r"l2_ssl_ca_certs '/nonexistent/ca.crt' is not a readable file"):
        MultiTierCacheSettings(l2_ssl=True, l2_ssl_ca_certs="/nonexistent/ca.crt")


def test_digest_function_is_blake2b() -> None:
    assert digest(b"x", b"p") == hashlib.blake2b(b"px", digest_size=16).hexdigest()


# -- fuzzing ---------------------------------------------------------------------------------

msgpack_trees = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        | st.builds(lambda code, body: msgpack.ExtType(code, msgpack.packb(body)), st.integers(0, 127), inner)
    ),
    max_leaves=20,
)


@given(msgpack_trees)
@settings(max_examples=400)
def test_well_formed_msgpack_of_any_shape_decodes_or_is_a_decode_error(tree: Any) -> None:
    """Structured input reaches deeper than random bytes: ext codes we own, with wrong insides."""
    try:
        decode_value(msgpack.packb(tree))
    except DecodeError:
        pass


# -- replayed genuine values ----------------------------------------------------------------------


def test_a_genuine_value_planted_back_past_its_deadline_is_refused(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """It carries its deadline under the MAC: re-planted without a TTL, it is still dead."""

    @tiered_cache(ttl_l1=None, ttl_l2=1, name="security.deadline", signing_key=KEY_1)
    def role(user: str) -> str:
        return f"{user}: admin" if grant["on"] else f"{user}: reader"

    grant = {"on": True}
    assert role("mallory") == "mallory: admin"
    saved = redis_server.client().get(role.cache_key("mallory"))
    grant["on"] = False
    time.sleep(1 + DEADLINE_SLACK + 0.2)  # the grant's entry expired, and its deadline passed
    redis_server.client().set(role.cache_key("mallory"), saved)  # planted back, no TTL
    assert role("mallory") == "mallory: reader"
    assert role.cache_stats().l2_rejected == 1


def test_a_generation_planted_back_is_not_followed_by_a_process_that_saw_the_clear(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """After cache_clear(), the old generation and the old values written back bring nothing back
    to a process that knows of the clear; it restores the newer generation in Redis."""
    grant = {"on": True}

    @tiered_cache(ttl_l1=None, name="security.rollback", signing_key=KEY_1)
    def role(user: str) -> str:
        return "admin" if grant["on"] else "reader"

    assert role("mallory") == "admin"
    client = redis_server.client()
    generation_key = role.__tiercache__.generation_key
    saved_value, saved_generation = client.get(role.cache_key("mallory")), client.get(generation_key)
    grant["on"] = False
    role.cache_clear()
    client.set(generation_key, saved_generation or b"0")  # rolled back...
    client.set(role.cache_key("mallory"), saved_value)  # ...with the genuine old value
    assert role("mallory") == "reader"  # (the read fetches the generation with the entry)
    role("mallory")  # the next L2 operation replays its generation
    assert int(client.get(generation_key)) >= 1


def test_a_generation_pinned_at_the_ceiling_cannot_undo_a_clear(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """One SET of the highest generation there is (2**52 - 1) used to make every later clear
    produce one that other processes refused as malformed: they kept the pinned one (and wrote it
    back) and served the revoked values, signing on. A clear there now closes L2 for the function
    in every process that reads it: nothing revoked is served, and that is counted and logged."""
    grant = {"on": True}
    name = "security.pinned"

    def role(user: str) -> str:
        return "admin" if grant["on"] else "reader"

    clearer = tiered_cache(ttl_l1=None, name=name, signing_key=KEY_1)(role)
    reader = tiered_cache(ttl_l1=None, name=name, signing_key=KEY_1, coherent=False)(role)
    client = redis_server.client()
    clearer.cache_key("x")  # (resolves the function's settings: its generation key is known)
    client.set(clearer.__tiercache__.generation_key, MAX_GENERATION - 1)
    users = ("ann", "bob", "eve")
    assert [clearer(user) for user in users] == ["admin"] * 3  # written in the pinned generation
    assert [reader(user) for user in users] == ["admin"] * 3
    assert reader.cache_stats().l2_hits == 3
    grant["on"] = False
    clearer.cache_clear()
    clearer.cache_clear()  # (a second clear at the ceiling changes nothing either)
    late = tiered_cache(ttl_l1=None, name=name, signing_key=KEY_1, coherent=False)(role)
    for function in (reader, clearer, late):
        assert [function(user) for user in users] == ["reader"] * 3, function
    assert reader.cache_stats().l2_corrupt >= 1
    assert int(client.get(clearer.__tiercache__.generation_key)) == MAX_GENERATION  # not written back


def test_an_adapter_generation_pinned_at_the_ceiling_cannot_undo_a_clear(
    real_l2: str, redis_server: RedisProcess
) -> None:
    namespace = f"pinned-{os.getpid()}-{time.monotonic_ns()}"
    settings = MultiTierCacheSettings(l2_url=real_l2, namespace=namespace, signing_key=KEY_1)
    clearer = MultiTierCache(settings)
    reader = MultiTierCache(
        MultiTierCacheSettings(
            l2_url=real_l2,
            namespace=namespace,
            signing_key=KEY_1,
            coherent=False,
            write_back_l1_on_l2_hit=False,
        )
    )
    redis_server.client().set(f"{namespace}:gen", MAX_GENERATION - 1)
    clearer.set("role:mallory", "admin")
    assert reader.get("role:mallory") == "admin"
    clearer.clear()
    assert reader.get("role:mallory") is None
    late = MultiTierCache(
        MultiTierCacheSettings(l2_url=real_l2, namespace=namespace, signing_key=KEY_1, coherent=False)
    )
    assert late.get("role:mallory") is None
    for cache in (clearer, reader, late):
        cache.close()


@pytest.mark.parametrize("plant", ["garbage", "list"])
def test_a_malformed_tag_token_is_reclaimed_counted_and_logged(
    plant: str, real_l2: str, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """`SET <ns>:tag:<digest> garbage!!` (no TTL) used to keep every entry carrying the tag out of L2
    for good, silently: now it reads as no token, is replaced by a fresh one (which, like an
    invalidation, matches no entry written before), counted and logged once."""
    runs: list[str] = []

    @tiered_cache(ttl_l1=None, name="security.tag-token", tags=lambda user: [f"user:{user}"])
    def profile(user: str) -> str:
        runs.append(user)
        return f"profile of {user}"

    profile.cache_key("x")  # (resolves the function's settings)
    key = tag_key(profile.__tiercache__.namespace, digest_of("user:ann"))
    client = redis_server.client()
    if plant == "garbage":
        client.set(key, b"garbage!!")
    else:
        client.rpush(key, b"x")
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert profile("ann") == profile("ann") == "profile of ann"
    assert runs == ["ann"]  # the second call was an L2 hit: the entry reached Redis
    stats = profile.cache_stats()
    assert stats.l2_hits == 1 and stats.l2_corrupt == 1
    assert len(client.get(key) or b"") == 8  # a token again
    assert sum("tag key" in record.getMessage() for record in caplog.records) == 1
    client.set(key, b"garbage again")  # and a value set by hand claims as a run does
    profile.cache_set("set by hand", "ann")
    assert len(client.get(key) or b"") == 8
    assert profile("ann") == "set by hand" and runs == ["ann"]  # (from L2: no L1 here)


def test_redis_supplied_text_reaches_log_lines_escaped_and_cut(
    real_l2: str, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A planted datetime's zone name went into the log raw: newlines (forged lines), ESC, and a
    1 MiB zone made a 1 MiB line."""
    zone = "Fake/Zone\nCRITICAL forged line \x1b[2J" + "x" * (1 << 20)
    fields = [2026, 1, 2, 3, 4, 5, 6, 0, zone]
    inner = msgpack.packb(fields, use_bin_type=True)
    body = msgpack.packb(msgpack.ExtType(5, inner), use_bin_type=True)  # (the codec's datetime)

    @tiered_cache(ttl_l1=None, name="security.zone")
    def when(key: str) -> str:
        return "fresh"

    redis_server.client().set(when.cache_key("k"), seal(body, 0, NO_TOKEN, 2**62))
    with caplog.at_level(logging.WARNING, logger="tiercache"):
        assert when("k") == "fresh"
    (line,) = [record.getMessage() for record in caplog.records if "unreadable" in record.getMessage()]
    assert "\n" not in line and "\x1b" not in line and len(line) < 400
    assert "\\n" in line  # (escaped, so the operator can still see what was planted)


def test_errors_in_log_lines_are_escaped_and_cut() -> None:
    """What redis-py's errors say comes partly from Redis (a sentinel's primary host)."""
    said = brief(ConnectionError("Error connecting to evil\nhost\x1b]0;title\x07:6379" + "x" * 10_000))
    assert "\n" not in said and "\x1b" not in said and "\x07" not in said and len(said) <= BRIEF_CHARS
    assert said.startswith("ConnectionError: Error connecting to evil\\nhost\\x1b]0;title\\x07:6379")


def test_an_old_tag_token_planted_back_does_not_revive_what_an_invalidation_revoked(
    real_l2: str, redis_server: RedisProcess
) -> None:
    """One 8-byte SET of a tag's old token, with the entries saved under it, revived 90 of 100
    revoked entries. A process that read the old token before the invalidation now refuses it
    (and replaces it with a new one); one that never read it is the window that remains."""
    grant = {"on": True}
    users = [f"u{i}" for i in range(20)]

    @tiered_cache(ttl_l1=None, name="security.tag-back", signing_key=KEY_1, tags=["roles"])
    def role(user: str) -> str:
        return "admin" if grant["on"] else "reader"

    assert [role(user) for user in users] == ["admin"] * 20
    client = redis_server.client()
    key = tag_key(role.__tiercache__.namespace, digest_of("roles"))
    saved_token = client.get(key)
    saved = {user: client.get(role.cache_key(user)) for user in users}
    grant["on"] = False
    tiercache.invalidate_tags("roles")
    assert role("u0") == "reader"
    client.set(key, saved_token)  # planted back...
    for user, payload in saved.items():
        client.set(role.cache_key(user), payload)  # ...with the genuine entries written under it
    assert [role(user) for user in users] == ["reader"] * 20
    assert client.get(key) != saved_token  # replaced
    assert role.cache_stats().l2_corrupt >= 1


def test_a_tag_token_another_process_replaced_is_refused_when_planted_back(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, where the invalidation came from another process: heard announced, the token read
    last is retired if it was first read before the announcement's way (ANNOUNCED_WITHIN); a token
    first read since is the new one (this process's own announcement, heard back, retires nothing)."""
    grant = {"on": True}

    @tiered_cache(ttl_l1=None, name="security.tag-back-remote", tags=["roles"])
    def role(user: str) -> str:
        return "admin" if grant["on"] else "reader"

    assert role("ann") == "admin"
    client = redis_server.client()
    namespace = role.__tiercache__.namespace
    key = tag_key(namespace, digest_of("roles"))
    saved_token, saved_entry = client.get(key), client.get(role.cache_key("ann"))
    monkeypatch.setattr(tag_names, "ANNOUNCED_WITHIN", 0.0)  # (as if the token was read long ago)
    grant["on"] = False
    client.set(key, b"newtoken")  # another process's invalidate_tags("roles")...
    channel = channel_for(namespace)
    client.publish(channel, encode(channel, b"stranger", f"{namespace}:tag", [digest_of("roles")], None))
    time.sleep(0.2)  # (...announced, and heard)
    client.set(key, saved_token)  # planted back, with the entry written under it
    client.set(role.cache_key("ann"), saved_entry)
    assert role("ann") == "reader"
    assert client.get(key) not in (saved_token, b"newtoken")
