"""Bytes planted in Redis by someone who can write to it: never a crash, an exception, or a stall.

Each payload is planted in the suite's real redis-server inside a well-formed envelope (signing
off, so it reaches the decoder), and the call that reads it runs in a thread with a 128 KiB stack,
musl's (Alpine Python's) default, where deep C recursion crashes the process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import tracemalloc
from typing import Any

import msgpack
import pytest

from tests.support.stacks import in_small_stack
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._l2.codec import (
    MAX_HASHED,
    MAX_ITEMS,
    MAX_NESTING,
    MAX_OBJECTS,
    DecodeError,
    decode_value,
    encode_value,
)
from tiercache._l2.envelope import NO_TOKEN, seal
from tiercache._tools.redis_process import RedisProcess

_names = itertools.count()
P = 2**61 - 1  # an int's hash is the int modulo this


def tuple_chain(levels: int, inside: Any = None) -> bytes:
    data = msgpack.packb([] if inside is None else inside)
    for _ in range(levels):
        data = msgpack.packb(msgpack.ExtType(1, data))
    return data


def colliding_bigints(count: int) -> list[int]:
    """Ints beyond 64 bits that all hash to 7."""
    return [7 + k * P for k in range(16, 16 + count)]


def bigint_ext(value: int) -> msgpack.ExtType:
    return msgpack.ExtType(4, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


HOSTILE = {
    "64 nested extensions (192 bytes)": lambda: tuple_chain(64),
    "5,000 nested extensions": lambda: tuple_chain(5000),
    "31 extensions of 1,000 nested lists": lambda: tuple_chain(31, inside=_deep_list(1000)),
    "a map of 32k colliding big ints": lambda: msgpack.packb(
        {bigint_ext(k): 1 for k in colliding_bigints(32_768)}
    ),
    "a set of 32k colliding big ints": lambda: msgpack.packb(
        msgpack.ExtType(2, msgpack.packb([bigint_ext(k) for k in colliding_bigints(32_768)]))
    ),
    "a frozenset of 32k colliding big ints": lambda: msgpack.packb(
        msgpack.ExtType(3, msgpack.packb([bigint_ext(k) for k in colliding_bigints(32_768)]))
    ),
    "63 maps of 4,095 colliding big ints (each under the bound)": lambda: msgpack.packb(
        [{bigint_ext(k): 1 for k in colliding_bigints(4095)} for _ in range(63)]
    ),
    "63 sets of 4,095 colliding big ints": lambda: msgpack.packb(
        [msgpack.ExtType(2, msgpack.packb([bigint_ext(k) for k in colliding_bigints(4095)]))] * 63
    ),
    "8 MiB of two-character strings": lambda: two_character_strings(8 * 1024 * 1024),
    "4 lists of 2 MiB of one-character strings": lambda: msgpack.packb([["a"] * (1 << 20)] * 4),
    "8 MiB of empty lists": lambda: (
        b"\xdd" + (8 * 1024 * 1024 - 16).to_bytes(4, "big") + b"\x90" * (8 * 1024 * 1024 - 16)
    ),
}


def two_character_strings(size: int) -> bytes:
    count = (size - 5) // 3
    return b"\xdd" + count.to_bytes(4, "big") + b"\xa2ab" * count


def _deep_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_values_are_refused_quickly_without_crashing(name: str) -> None:
    """In a 128 KiB thread: a DecodeError within a second, never a crash or a stall."""
    payload = HOSTILE[name]()
    started = time.monotonic()
    with pytest.raises(DecodeError):
        in_small_stack(lambda: decode_value(payload))
    assert time.monotonic() - started < 1.0


def test_amplification_is_bounded_while_decoding() -> None:
    """An 8 MiB payload of empty lists is refused having built at most MAX_OBJECTS of them."""
    payload = HOSTILE["8 MiB of empty lists"]()
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode_value(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(
    "name", ["8 MiB of two-character strings", "4 lists of 2 MiB of one-character strings"]
)
def test_items_are_bounded_in_all_before_they_are_built(name: str) -> None:
    """8 MiB of two-character strings (746 bytes of zstd) made some 200 MB of objects per read."""
    payload = HOSTILE[name]()
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=r"max_array_len|items"):
            decode_value(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_values_past_a_reader_s_bounds_stay_in_l1() -> None:
    """What every reader would refuse is not written: encode_value refuses it (L1 only)."""
    with pytest.raises(TypeError, match="past what a reader accepts"):
        encode_value(list(range(MAX_ITEMS + 1)))
    with pytest.raises(TypeError, match="past what a reader accepts"):
        encode_value(
            [{(i, i): i for i in range(MAX_HASHED // 2 + 1)}, {(i, -i): i for i in range(MAX_HASHED // 2)}]
        )


def test_legitimate_values_at_the_bounds_still_decode() -> None:
    """The bounds leave room for real values: deep tuples, big string-keyed maps, long lists."""
    deep = ()
    for _ in range(MAX_NESTING - 1):
        deep = (deep,)
    for value in (
        deep,
        {f"k{i}": i for i in range(100_000)},  # str keys: any size
        {i: i for i in range(100_000)},  # 64-bit int keys: any size
        {(i, i): i for i in range(MAX_HASHED)},  # tuple keys: up to the bound
        set(range(100_000)),
        [[i] for i in range(MAX_OBJECTS - 10)],
        _deep_list(400),  # (deeper lists than this cannot even be compared in Python)
    ):
        assert decode_value(encode_value(value)) == value


def test_values_nested_past_the_bound_cannot_be_written_either() -> None:
    deep = ()
    for _ in range(MAX_NESTING + 1):
        deep = (deep,)
    with pytest.raises(TypeError):
        encode_value(deep)


# -- the same, planted in Redis ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_planted_hostile_value_is_a_miss(name: str, real_l2: str, redis_server: RedisProcess) -> None:
    @tiered_cache(name=f"hostile.{next(_names)}")
    def lookup(key: str) -> str:
        return f"fresh {key}"

    redis_server.client().set(lookup.cache_key("k"), seal(HOSTILE[name](), 0, NO_TOKEN, 2**62))
    started = time.monotonic()
    assert in_small_stack(lambda: lookup("k")) == "fresh k"
    assert time.monotonic() - started < 2.0
    stats = lookup.cache_stats()
    assert stats.l2_corrupt + stats.l2_rejected == 1 and stats.misses == 1


@pytest.mark.parametrize("planted", [b"x" * 256, b"9" * 40, b"-1", b"\xff\x00"])
def test_a_malformed_generation_is_a_miss_never_an_exception(
    planted: bytes, real_l2: str, redis_server: RedisProcess
) -> None:
    """Sync, async, signed or not, and the adapter: every call still returns its value."""
    for signing in (None, "a-signing-key-of-16-bytes+"):
        name = f"hostile.gen.{next(_names)}"
        sync = tiered_cache(name=name, signing_key=signing)(lambda key: f"v-{key}")

        @tiered_cache(name=name, signing_key=signing)
        async def asynchronous(key: str) -> str:
            return f"v-{key}"

        sync.cache_key("k")  # resolves the function's settings: its generation key is known now
        redis_server.client().set(sync.__tiercache__.generation_key, planted)
        for _ in range(2):
            assert sync("k") == "v-k"
            assert asyncio.run(asynchronous("k")) == "v-k"
        assert sync.cache_stats().l2_corrupt >= 1
    settings = MultiTierCacheSettings(l2_url=real_l2, namespace=f"hostile-{next(_names)}")
    redis_server.client().set(f"{settings.namespace}:gen", planted)
    with MultiTierCache(settings) as cache:
        cache.set("k", "v")
        assert cache.get("k") == "v"
        cache.invalidate_l1()
        cache.get("k")  # from L2 or not at all: never an exception


def test_a_malformed_generation_is_rewritten(real_l2: str, redis_server: RedisProcess) -> None:
    """Left there, a planted generation (256 MB, in the attack) was read again every half second."""
    lookup = tiered_cache(name=f"hostile.gen-repair.{next(_names)}")(lambda key: key)
    lookup.cache_key("k")
    generation_key = lookup.__tiercache__.generation_key
    redis_server.client().set(generation_key, b"x" * 100_000)
    assert lookup("k") == "k"
    lookup("j")  # (the next L2 operation replays the repair)
    assert redis_server.client().get(generation_key) == b"0"


@pytest.mark.parametrize(
    ("first", "levels"), [((1, "scalars only"), 1), ((dt.datetime(2026, 1, 1), "a datetime"), 2)]
)
def test_the_deepest_legitimate_value_decodes_in_112_kib_of_stack(
    first: tuple[Any, ...], levels: int
) -> None:
    """32 levels of extension values decode in a thread with a 112 KiB stack (the docs' figure),
    under musl's 128 KiB; the first level's contents with or without an extension value."""
    deep: Any = first
    for _ in range(MAX_NESTING - levels):
        deep = (deep,)
    payload = encode_value([deep, first])
    assert in_small_stack(lambda: decode_value(payload), 112 * 1024) == [deep, first]
