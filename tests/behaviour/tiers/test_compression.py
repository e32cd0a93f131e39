"""Compressed L2 values: zstd or zlib, flagged in the envelope, signed as stored, bounded inflation."""

from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
import zlib
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache
from tests.support.stacks import in_small_stack
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._core.checks import DEFAULT_COMPRESS_MIN_BYTES, DEFAULT_MAX_VALUE_BYTES
from tiercache._l2 import compression
from tiercache._l2.codec import DecodeError, encode_value
from tiercache._l2.compression import compress, has_zstd, inflate
from tiercache._l2.envelope import COMPRESSED, NO_TOKEN, SIGNED, ZLIB, ZSTD, open_envelope, seal
from tiercache._tools.redis_process import RedisProcess

pytestmark = pytest.mark.skipif(not has_zstd(), reason="zstd is not installed (tiercache[zstd])")

_names = itertools.count()
PROFILE = {"user": "u-1", "roles": ["reader", "writer"], "bio": "likes caching " * 200}


def _zstd() -> Any:
    module = compression._zstd
    assert module is not None
    return module


@pytest.fixture
def zlib_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has no zstd, as on a Python before 3.14 without the extra."""
    monkeypatch.setattr(compression, "_zstd", None)


def lookup_function(name: str, runs: list[str] | None = None, **options: Any) -> Any:
    @tiered_cache(ttl_l1=None, name=name, **options)
    def profile(user_id: str) -> dict[str, Any]:
        if runs is not None:
            runs.append(user_id)
        return {**PROFILE, "user": user_id}

    return profile


# -- the codec of bodies ----------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(body=st.binary(min_size=0, max_size=5000), zstd=st.booleans())
def test_compressed_bodies_inflate_to_what_was_compressed(body: bytes, zstd: bool) -> None:
    saved = compression._zstd
    try:
        if not zstd:
            compression._zstd = None
        packed = compress(body)
    finally:
        compression._zstd = saved
    if packed is None:  # not shorter: stored as it is
        return
    flag, data = packed
    assert flag == (ZSTD if zstd else ZLIB) and len(data) < len(body)
    assert inflate(flag, memoryview(data), len(body)) == body
    with pytest.raises(DecodeError, match="past"):
        inflate(flag, data, len(body) - 1)


@pytest.mark.parametrize("flag", [ZSTD, ZLIB])
def test_damaged_truncated_or_padded_bodies_are_decode_errors(flag: int) -> None:
    body = encode_value(PROFILE)
    data = _zstd().compress(body) if flag == ZSTD else zlib.compress(body)
    assert inflate(flag, data, len(body)) == body
    for bad in (data[: len(data) // 2], data + b"tail", data + data, b"\x00" * 40, b""):
        with pytest.raises(DecodeError):
            inflate(flag, bad, len(body) + 100)
    with pytest.raises(DecodeError, match="unknown compression"):
        inflate(ZSTD | ZLIB, data, len(body))


def test_a_zstd_frame_asking_for_a_large_window_is_refused_before_it_is_allocated() -> None:
    # Streamed, so the frame states no size and keeps the window asked for: 128 MiB.
    compressor = _zstd().ZstdCompressor(options={_zstd().CompressionParameter.window_log: 27})
    big_window = compressor.compress(b"x" * 100) + compressor.flush()
    with pytest.raises(DecodeError, match="does not inflate"):
        inflate(ZSTD, big_window, 64 * 1024)


def test_without_zstd_a_zstd_body_is_a_decode_error_and_zlib_is_used(zlib_only: None) -> None:
    packed = compress(encode_value(PROFILE))
    assert packed is not None and packed[0] == ZLIB
    with pytest.raises(DecodeError, match="no zstd here"):
        inflate(ZSTD, b"\x28\xb5\x2f\xfd" + b"\x00" * 20, 1000)


def test_the_envelope_carries_the_compression_flag() -> None:
    for flag in (0, ZSTD, ZLIB):
        envelope = open_envelope(seal(b"body" * 16, 3, NO_TOKEN, 99, signed=True, compression=flag))
        assert envelope.compression == flag and envelope.signed and envelope.generation == 3
    with pytest.raises(DecodeError, match="twice"):
        open_envelope(seal(b"body", 3, NO_TOKEN, 99, compression=COMPRESSED))


# -- through the tiers ------------------------------------------------------------------------


def stored_flags(client: Any, key: str) -> tuple[int, int]:
    payload = client.get(key)
    return payload[3], len(payload)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_large_values_are_stored_compressed_and_read_back(
    backend: str, fake_server: fakeredis.FakeServer, request: pytest.FixtureRequest
) -> None:
    if backend == "fake":
        request.getfixturevalue("fake_l2")
        client: Any = fakeredis.FakeRedis(server=fake_server)
    else:
        request.getfixturevalue("real_l2")
        client = request.getfixturevalue("redis_server").client()
    name = f"compression.round-trip.{next(_names)}"
    runs: list[str] = []
    writer = lookup_function(name, runs)
    value = writer("u-1")
    flags, size = stored_flags(client, writer.cache_key("u-1"))
    assert flags & ZSTD and size < len(encode_value(value)) // 3
    reader = lookup_function(name, runs)  # another process: its own L1, the same Redis
    assert reader("u-1") == value and runs == ["u-1"]
    assert reader.cache_stats().l2_hits == 1
    small = tiered_cache(name=f"{name}.small")(lambda user_id: {"user": user_id})
    small("u-2")
    assert stored_flags(client, small.cache_key("u-2"))[0] & COMPRESSED == 0


def test_async_functions_read_compressed_values(real_l2: str) -> None:
    name = f"compression.async.{next(_names)}"

    @tiered_cache(ttl_l1=None, name=name)
    async def profile(user_id: str) -> dict[str, Any]:
        return {**PROFILE, "user": user_id}

    async def main() -> None:
        first = await profile("u-1")
        other = tiered_cache(ttl_l1=None, name=name)(profile.__wrapped__)  # another process
        assert await other("u-1") == first
        assert other.cache_stats().l2_hits == 1

    asyncio.run(main())


def test_zlib_and_zstd_processes_read_each_others_values(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"compression.mixed.{next(_names)}"
    runs: list[str] = []
    zstd = compression._zstd
    monkeypatch.setattr(compression, "_zstd", None)
    zlib_writer = lookup_function(name, runs)
    value = zlib_writer("u-1")
    assert stored_flags(redis_server.client(), zlib_writer.cache_key("u-1"))[0] & ZLIB
    monkeypatch.setattr(compression, "_zstd", zstd)
    assert lookup_function(name, runs)("u-1") == value and runs == ["u-1"]
    lookup_function(name, runs)("u-2")  # written with zstd now
    monkeypatch.setattr(compression, "_zstd", None)
    without = lookup_function(name, runs)
    assert without("u-2") == {**PROFILE, "user": "u-2"}  # unreadable here: a miss, computed again
    assert runs == ["u-1", "u-2", "u-2"] and without.cache_stats().l2_corrupt == 1


def test_compressed_values_are_signed_as_stored(real_l2: str, redis_server: RedisProcess) -> None:
    signing = "a-signing-key-of-16-bytes+"
    name = f"compression.signed.{next(_names)}"
    runs: list[str] = []
    writer = lookup_function(name, runs, signing_key=signing)
    value = writer("u-1")
    client = redis_server.client()
    key = writer.cache_key("u-1")
    payload = client.get(key)
    assert payload[3] == SIGNED | ZSTD
    assert lookup_function(name, runs, signing_key=signing)("u-1") == value and runs == ["u-1"]
    tampered = bytearray(payload)
    tampered[40] ^= 0x01  # inside the compressed body, so still a valid-looking frame perhaps
    client.set(key, bytes(tampered))
    reader = lookup_function(name, runs, signing_key=signing)
    assert reader("u-1") == value and runs == ["u-1", "u-1"]
    assert reader.cache_stats().l2_rejected == 1  # refused before anything was inflated
    # An unsigned compressed value where signing is required: refused the same way.
    unsigned_writer = lookup_function(f"{name}.unsigned", runs)
    unsigned_writer("u-3")
    signed_reader = lookup_function(f"{name}.unsigned", runs, signing_key=signing)
    client.set(signed_reader.cache_key("u-3"), client.get(unsigned_writer.cache_key("u-3")))
    assert signed_reader("u-3") == {**PROFILE, "user": "u-3"} and signed_reader.cache_stats().l2_rejected == 1


def test_max_value_bytes_bounds_the_value_before_compression(
    real_l2: str, redis_server: RedisProcess
) -> None:
    name = f"compression.bound.{next(_names)}"
    runs: list[str] = []
    # About 3 KB encoded, some 300 bytes compressed: over a 2,000-byte bound all the same.
    writer = lookup_function(name, runs, max_value_bytes=2000)
    writer("u-1")
    assert redis_server.client().get(writer.cache_key("u-1")) is None
    assert writer.cache_stats().oversized == 1


def test_compress_min_bytes_is_a_setting_checked_by_name(
    real_l2: str, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tiercache._decorator.config.current().compress_min_bytes == DEFAULT_COMPRESS_MIN_BYTES
    tiercache.configure(compress_min_bytes=None)
    off = lookup_function(f"compression.off.{next(_names)}")
    off("u-1")
    assert stored_flags(redis_server.client(), off.cache_key("u-1"))[0] & COMPRESSED == 0
    tiercache.configure(compress_min_bytes=10)
    tiny = tiered_cache(name=f"compression.tiny.{next(_names)}")(lambda user_id: {"user": user_id * 20})
    tiny("u-1")
    assert stored_flags(redis_server.client(), tiny.cache_key("u-1"))[0] & COMPRESSED
    with pytest.raises(ValueError, match=r"configure\(\): compress_min_bytes must be at least 1"):
        tiercache.configure(compress_min_bytes=0)
    with pytest.raises(TypeError, match=r"configure\(\): compress_min_bytes must be a whole number"):
        tiercache.configure(compress_min_bytes="big")
    environ = {"TIERCACHE_COMPRESS_MIN_BYTES": "off"}
    assert tiercache._decorator.config.Settings.from_environment(environ).compress_min_bytes is None
    environ = {"TIERCACHE_COMPRESS_MIN_BYTES": "4096"}
    assert tiercache._decorator.config.Settings.from_environment(environ).compress_min_bytes == 4096
    with pytest.raises(ValueError, match="TIERCACHE_COMPRESS_MIN_BYTES"):
        tiercache._decorator.config.Settings.from_environment({"TIERCACHE_COMPRESS_MIN_BYTES": "lots"})
    with pytest.raises(ValueError, match="MultiTierCacheSettings: compress_min_bytes"):
        MultiTierCacheSettings(compress_min_bytes=-5)
    assert (
        MultiTierCacheSettings.from_env({"TIERCACHE_COMPRESS_MIN_BYTES": "none"}).compress_min_bytes is None
    )


def test_the_adapter_compresses_and_reads_back(real_l2: str, redis_server: RedisProcess) -> None:
    settings = MultiTierCacheSettings(l2_url=real_l2, namespace=f"compression-{next(_names)}")
    with MultiTierCache(settings) as writer, MultiTierCache(settings) as reader:
        writer.set("profile", PROFILE)
        assert redis_server.client().get(f"{settings.namespace}:k:profile")[3] & ZSTD
        assert reader.get("profile") == PROFILE
    off = MultiTierCacheSettings(l2_url=real_l2, namespace=settings.namespace, compress_min_bytes=None)
    with MultiTierCache(off) as writer:
        writer.set("plain", PROFILE)
        assert redis_server.client().get(f"{settings.namespace}:k:plain")[3] & COMPRESSED == 0


# -- bombs ------------------------------------------------------------------------------------


def bomb(flag: int, size: int) -> bytes:
    """A few KB that inflate to ``size`` bytes of one long msgpack str."""
    body = b"\xdb" + (size - 5).to_bytes(4, "big") + b"a" * (size - 5)
    return _zstd().compress(body, level=19) if flag == ZSTD else zlib.compress(body, 9)


@pytest.mark.parametrize("flag", [ZSTD, ZLIB])
def test_a_planted_compression_bomb_is_a_miss_without_inflating_it(
    flag: int, real_l2: str, redis_server: RedisProcess
) -> None:
    """A small payload inflating to 1 GiB: refused past max_value_bytes, in a 1 MiB stack."""
    runs: list[str] = []
    lookup = lookup_function(f"compression.bomb.{next(_names)}", runs)
    data = bomb(flag, 1 << 30)
    assert len(data) < 1_200_000 and len(data) < DEFAULT_MAX_VALUE_BYTES
    redis_server.client().set(lookup.cache_key("u-1"), seal(data, 0, NO_TOKEN, 2**62, compression=flag))
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert in_small_stack(lambda: lookup("u-1")) == {**PROFILE, "user": "u-1"}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    assert peak < 3 * DEFAULT_MAX_VALUE_BYTES  # one bounded output buffer, never the gigabyte
    assert runs == ["u-1"] and lookup.cache_stats().l2_corrupt == 1
    # The computed value replaced it.
    assert open_envelope(redis_server.client().get(lookup.cache_key("u-1"))).compression == ZSTD


def test_a_bomb_within_a_small_max_value_bytes_is_refused_by_that_bound(
    real_l2: str, redis_server: RedisProcess
) -> None:
    runs: list[str] = []
    lookup = lookup_function(f"compression.small-bomb.{next(_names)}", runs, max_value_bytes=4096)
    redis_server.client().set(
        lookup.cache_key("u-1"), seal(bomb(ZSTD, 1 << 20), 0, NO_TOKEN, 2**62, compression=ZSTD)
    )
    assert lookup("u-1")["user"] == "u-1" and lookup.cache_stats().l2_corrupt == 1
