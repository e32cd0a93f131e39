"""The adapters' set(): sets of one key at once, and sets Redis cannot take (the sync adapter, in threads)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.concurrency import at_once
from tiercache import MultiTierCache, MultiTierCacheAdapter, MultiTierCacheSettings
from tiercache._adapter.flows import update
from tiercache._core.shells import run
from tiercache._tools.redis_process import RedisProcess


def adapters(url: str) -> tuple[MultiTierCache, MultiTierCache]:
    """An adapter with an L1, and one that reads Redis on every get (what another process sees)."""
    namespace = f"adapter-sets-{time.monotonic_ns()}"
    writer = MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=namespace))
    redis_view = MultiTierCache(
        MultiTierCacheSettings(l2_url=url, namespace=namespace, coherent=False, write_back_l1_on_l2_hit=False)
    )
    return writer, redis_view


def test_two_threads_setting_one_key_leave_this_adapter_answering_what_redis_holds(real_l2: str) -> None:
    """300 trials: two set() of one key at once; afterwards this adapter's L1 agrees with Redis."""
    writer, redis_view = adapters(real_l2)
    disagreed = 0
    for trial in range(300):
        at_once([lambda i=i: writer.set("k", f"{trial}-{i}") for i in range(2)])
        disagreed += writer.get("k") != redis_view.get("k")
    assert disagreed == 0, f"{disagreed} of 300 trials left L1 holding another value than Redis"


@pytest.mark.parametrize("how", ["set", "set_many", "update"])  # (update: Django's add, incr and touch)
def test_a_get_under_way_during_a_set_here_never_keeps_the_older_value_over_it(
    real_l2: str, how: str
) -> None:
    """Forced: a get reads Redis ("old"), this adapter sets "new", then the get keeps its answer.

    The get's lease was taken before the set, and the set voided none: the get kept "old" in L1
    over "new", and this adapter answered "old" for l1_ttl_seconds, though Redis (and every other
    process) held "new".
    """
    writer, redis_view = adapters(real_l2)
    with writer, redis_view:
        writer.set("k", "old")
        writer._tiers.local.clear()  # (the next get reads Redis)
        remote = writer._tiers.remote
        take_read = remote.take_read
        reading, read = threading.Event(), threading.Event()

        def answered_then_held(*args: object) -> object:
            reading.set()
            assert read.wait(5)
            return take_read(*args)

        got: list[object] = []
        setattr(remote, "take_read", answered_then_held)
        try:
            getter = threading.Thread(target=lambda: got.append(writer.get("k")))
            getter.start()
            assert reading.wait(5)
        finally:
            delattr(remote, "take_read")  # (the set's own reads go as they do)
        if how == "set":
            writer.set("k", "new")
        elif how == "set_many":
            writer.set_many({"k": "new"})
        else:
            run(update(writer._tiers, "k", lambda current: "new", None))
        read.set()
        getter.join(5)
        assert got == ["old"]  # (what Redis held when it read)
        assert redis_view.get("k") == "new"
        assert writer.get("k") == "new"  # this adapter's own set, not the older read kept over it


@pytest.mark.asyncio
async def test_a_get_awaiting_redis_during_a_set_here_never_keeps_the_older_value_over_it(
    real_l2: str,
) -> None:
    """The async adapter, forced as above: a get's read of "old" is held until a set of "new" is done."""
    settings = MultiTierCacheSettings(l2_url=real_l2, namespace=f"adapter-sets-async-{time.monotonic_ns()}")
    async with MultiTierCacheAdapter(settings) as cache:
        await cache.set("k", "old")
        cache._tiers.local.clear()  # (the next get reads Redis)
        endpoint = cache._tiers.endpoint()
        assert endpoint is not None
        store = endpoint.astore()
        read_many = store.read_many
        reading, read = asyncio.Event(), asyncio.Event()

        async def answered_then_held(*args: Any) -> Any:
            reply = await read_many(*args)
            reading.set()
            await read.wait()
            return reply

        setattr(store, "read_many", answered_then_held)
        try:
            getter = asyncio.create_task(cache.get("k"))
            await asyncio.wait_for(reading.wait(), 5)
        finally:
            delattr(store, "read_many")  # (the set's own reads go as they do)
        await cache.set("k", "new")
        read.set()
        assert await getter == "old"  # (what Redis held when it read)
        assert await cache.get("k") == "new"  # this adapter's own set, not the older read kept over it


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to pause or fill."""
    server = RedisProcess(tmp_path).start()
    yield server
    server.stop()


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["set", "set_many"])
def test_a_set_redis_could_not_take_never_brings_the_replaced_value_back(
    own_server: RedisProcess, how: str
) -> None:
    """Redis stops answering (a partition: it keeps its data); set() keeps the new value in L1 and
    invalidates the old one once Redis answers again."""
    namespace = f"adapter-outage-{how}"
    # (Not following the channel: a listener that loses it flushes L1, which is not the point here.)
    settings = MultiTierCacheSettings(l2_url=own_server.url, namespace=namespace, coherent=False)
    writer = MultiTierCache(settings)
    writer.set("k", "old")
    own_server.pause()
    writer.get("probe")  # times out: the breaker opens, and L2 is skipped until Redis answers again
    if how == "set":
        writer.set("k", "new")
    else:
        writer.set_many({"k": "new"})
    assert writer.get("k") == "new"  # from L1
    assert writer.get_metrics()["pending_invalidations"] == 1
    own_server.resume()
    until(lambda: not writer.get_metrics()["degraded"])  # the probe finds Redis back
    # The next L2 operation replays the drop first.
    writer.get("unrelated")
    other = MultiTierCache(dataclasses.replace(settings, write_back_l1_on_l2_hit=False))
    assert other.get("k") != "old"  # another process
    writer.invalidate_l1()
    assert writer.get("k") != "old"  # this one, once its L1 entry is gone


def test_a_set_a_full_redis_refuses_drops_the_replaced_value(own_server: RedisProcess) -> None:
    """maxmemory with noeviction refuses the SET; the DEL that replaces it needs no memory."""
    settings = MultiTierCacheSettings(l2_url=own_server.url, namespace="adapter-full")
    writer = MultiTierCache(settings)
    writer.set_many({"k": "old", "j": "old"})
    client = own_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        writer.set_many({"k": "new", "j": "new"})
    finally:
        client.config_set("maxmemory", 0)
    other = MultiTierCache(dataclasses.replace(settings, coherent=False, write_back_l1_on_l2_hit=False))
    assert other.get_many(["k", "j"]) == {}
    assert writer.get_many(["k", "j"]) == {"k": "new", "j": "new"}  # L1 keeps what Redis refused


def test_a_timeout_under_a_millisecond_never_leaves_the_replaced_value(real_l2: str) -> None:
    """A lifetime of 0.4 ms once rounded to PX 0, which Redis refuses: the old value stayed for all."""
    writer, redis_view = adapters(real_l2)
    writer.set("k", "old")
    writer.set("k", "new", ttl=0.0004)
    assert writer.get_metrics()["l2_errors"] == 0  # Redis took it (for a millisecond)
    assert redis_view.get("k") != "old"
    assert writer.get("k") != "old"


def test_a_refused_write_is_logged_without_the_value(
    own_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's pipeline errors quote the command: the value's bytes must not reach the log."""
    writer = MultiTierCache(MultiTierCacheSettings(l2_url=own_server.url, namespace="adapter-refused-log"))
    client = own_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        writer.set_many({"k": "private-session-token", "j": "x"})
    finally:
        client.config_set("maxmemory", 0)
    assert "maxmemory" in caplog.text  # the refusal is logged...
    assert "private-session-token" not in caplog.text  # ...not what was refused


@pytest.mark.parametrize("ttl", [1e16, 1e300])
def test_a_lifetime_redis_cannot_hold_is_refused_naming_it(ttl: float) -> None:
    with pytest.raises(ValueError, match=r"MultiTierCache.*ttl.*at most"):
        MultiTierCache(MultiTierCacheSettings(l2_enabled=False)).set("k", 1, ttl=ttl)
