"""Tags: ``invalidate_tags()`` drops every entry carrying a tag, in every function, tier and process,
under the guarantee of ``cache_invalidate()``."""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

import tiercache
from tests.support.races import race_worker, stale_samples
from tests.support.staleness import staleness_ms
from tiercache import InvalidationError, tiered_cache, tiered_cache_many
from tiercache._decorator import registry
from tiercache._decorator.tag_names import digest_of, tag_key
from tiercache._l2.envelope import TAGGED, open_envelope
from tiercache._tools.redis_process import RedisProcess

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"tags.{prefix}.{next(_names)}"


def by_user(user_id: str, **_: Any) -> list[str]:
    return [f"user:{user_id}"]


class Service:
    """Three lookups about users, all tagged ``user:<id>``, reading one mutable "database"."""

    def __init__(self, **options: Any) -> None:
        self.db: dict[str, str] = {"42": "Ada", "43": "Grace"}
        self.runs: list[str] = []
        prefix = unique("service")

        @tiered_cache(name=f"{prefix}.session", tags=by_user, **options)
        def get_session(user_id: str) -> dict[str, str]:
            self.runs.append(f"session:{user_id}")
            return {"user": user_id, "name": self.db[user_id]}

        @tiered_cache(
            name=f"{prefix}.profile", tags=lambda user_id: [f"user:{user_id}", "profiles"], **options
        )
        def get_profile(user_id: str) -> str:
            self.runs.append(f"profile:{user_id}")
            return self.db[user_id]

        @tiered_cache(name=f"{prefix}.permissions", tags=["permissions"], **options)
        def get_permissions(user_id: str) -> list[str]:
            self.runs.append(f"permissions:{user_id}")
            return [self.db[user_id]]

        self.get_session, self.get_profile, self.get_permissions = get_session, get_profile, get_permissions

    def all(self, user_id: str) -> tuple[Any, ...]:
        return self.get_session(user_id), self.get_profile(user_id), self.get_permissions(user_id)


@pytest.fixture(params=["l1", "fake", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "fake":
        request.getfixturevalue("fake_l2")
    elif request.param == "real":
        request.getfixturevalue("real_l2")
    return str(request.param)


def options_for(backend: str) -> dict[str, Any]:
    return {"ttl_l2": None} if backend == "l1" else {}


# -- what tags= and invalidate_tags() accept ---------------------------------------------------


def test_bad_tags_are_refused_naming_the_option_and_the_function() -> None:
    with pytest.raises(
        TypeError, match=r"tiered_cache\(\): tags must be a list of tag names \(str\), not str"
    ):
        tiered_cache(tags="user:1")
    with pytest.raises(TypeError, match=r"tiered_cache\(\): tags must hold non-empty str tag names, not 7"):
        tiered_cache(tags=["a", 7])
    with pytest.raises(ValueError, match="65 tags; an entry carries 64 at most"):
        tiered_cache(tags=[f"t{i}" for i in range(65)])
    with pytest.raises(TypeError, match="tags is called with the function's arguments, before it runs"):
        tiered_cache(tags=lambda user_id, result: [result["team"]])
    with pytest.raises(TypeError, match="apply to single calls"):
        tiered_cache_many(tags=["a"])

    @tiered_cache(ttl_l2=None, tags=lambda key: f"item:{key}", name=unique("bad"))
    def lookup(key: str) -> str:
        return key

    with pytest.raises(
        TypeError, match=r"tags\.bad\.\d+: tags=<lambda>\(\) returned a value that must be a list"
    ):
        lookup("k")
    with pytest.raises(
        TypeError, match=r"tiercache.invalidate_tags\(\) must hold non-empty str tag names, not 1"
    ):
        tiercache.invalidate_tags(1)  # type: ignore[arg-type]
    assert lookup.cache_parameters()["tags"] is not None


# -- one invalidation, every function and tier -------------------------------------------------


def test_invalidate_tags_drops_every_function_s_entries_carrying_the_tag(backend: str) -> None:
    service = Service(**options_for(backend))
    assert service.all("42") == ({"user": "42", "name": "Ada"}, "Ada", ["Ada"])
    service.all("43")
    service.all("42")
    assert len(service.runs) == 6  # each once: the second round were hits
    service.db["42"] = "Ada Lovelace"
    tiercache.invalidate_tags("user:42")
    service.runs.clear()
    assert service.get_session("42")["name"] == "Ada Lovelace"
    assert service.get_profile("42") == "Ada Lovelace"
    assert service.get_permissions("42") == ["Ada"]  # not tagged user:42: still cached
    service.all("43")
    assert service.runs == ["session:42", "profile:42"]
    service.runs.clear()
    tiercache.invalidate_tags("permissions", "nobody-uses-this")
    assert service.get_permissions("42") == ["Ada Lovelace"] and service.get_permissions("43") == ["Grace"]
    assert service.runs == ["permissions:42", "permissions:43"]


@pytest.mark.parametrize("backend_name", ["fake", "real"])
def test_another_process_reading_redis_never_gets_an_entry_invalidated_by_tag(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    """Entries stay in Redis after invalidate_tags(); their tokens no longer match: a miss for all."""
    request.getfixturevalue("fake_l2" if backend_name == "fake" else "real_l2")
    name = unique("l2")
    db = {"k": "v1"}
    writer = tiered_cache(name=name, tags=lambda key: [f"item:{key}"], coherent=False)(lambda key: db[key])
    reader = tiered_cache(ttl_l1=None, name=name, tags=lambda key: [f"item:{key}"])(lambda key: "computed")
    assert writer("k") == "v1" and reader("k") == "v1"  # the reader's is an L2 hit
    assert reader.cache_stats().l2_hits == 1
    db["k"] = "v2"
    tiercache.invalidate_tags("item:k")
    assert reader("k") == "computed"
    assert writer("k") == "computed"  # the reader's value, from L2 (the writer's L1 was dropped)


def test_entries_carry_their_tags_tokens_and_tags_live_in_keys_of_their_own(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    name = unique("layout")
    lookup = tiered_cache(name=name, tags=lambda key: [f"item:{key}", "all"])(lambda key: key * 2)
    lookup("k")
    client = redis_server.client()
    payload = client.get(lookup.cache_key("k"))
    envelope = open_envelope(payload)
    assert envelope.tagged and payload[3] & TAGGED
    tokens = [
        client.get(tag_key(isolated_settings, digest)) for digest in sorted(map(digest_of, ["item:k", "all"]))
    ]
    assert bytes(envelope.body[:17]) == bytes([2]) + b"".join(tokens)
    assert 0 < client.pttl(tag_key(isolated_settings, digest_of("all"))) <= 86_400_000


def test_tags_with_signing_and_compression(real_l2: str, redis_server: RedisProcess) -> None:
    """The tag block sits before the compressed body, and the MAC covers both."""
    name = unique("signed")
    signing = "a-signing-key-of-16-bytes+"
    db = {"k": "x" * 5000}

    def make(ttl_l1: float | None) -> Any:
        return tiered_cache(ttl_l1=ttl_l1, name=name, tags=["big"], signing_key=signing)(lambda key: db[key])

    writer, reader = make(600), make(None)
    assert writer("k") == db["k"] and reader("k") == db["k"] and reader.cache_stats().l2_hits == 1
    payload = redis_server.client().get(writer.cache_key("k"))
    assert payload[3] & TAGGED and payload[3] & 4 and len(payload) < 1000  # zstd: flag 4
    db["k"] = "y" * 5000
    tiercache.invalidate_tags("big")
    assert reader("k") == db["k"] and writer("k") == db["k"]
    assert reader.cache_stats().l2_rejected == 0


def test_tag_digests_are_keyed_by_the_signing_key(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    """Tag keys, announcements and spans carried blake2b(name): `user:742113` was found among a
    million ids in a second with hashlib alone. With a key configured they are keyed by it (by
    the oldest, as key names are, so that adding a key renames nothing), and invalidate_tags()
    reaches entries keyed by any key the process holds."""
    old, new = "the-old-signing-key-0123456", "the-new-signing-key-6543210"
    tiercache.configure(signing_key=old)
    db = {"k": "v1"}
    lookup = tiered_cache(ttl_l1=None, name=unique("keyed"), tags=["user:742113"])(lambda key: db[key])
    assert lookup("k") == "v1"
    client = redis_server.client()
    keyed = tag_key(isolated_settings, digest_of("user:742113", old.encode()))
    assert client.exists(keyed) and not client.exists(tag_key(isolated_settings, digest_of("user:742113")))
    tiercache.configure(signing_key=[new, old])  # a rotation's first step: nothing renamed
    assert lookup("k") == "v1" and lookup.cache_stats().l2_hits >= 1
    db["k"] = "v2"
    tiercache.invalidate_tags("user:742113")
    assert lookup("k") == "v2"
    tiercache.configure(signing_key=[new])  # the last step: keyed by the new key from now on
    db["k2"] = "w"
    assert lookup("k2") == "w"
    assert client.exists(tag_key(isolated_settings, digest_of("user:742113", new.encode())))


def test_a_tag_key_lost_from_redis_never_brings_invalidated_entries_back(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    """An entry never carries "no token": a tag key that expired or was evicted means a miss."""
    name = unique("lost")
    db = {"k": "v1"}
    writer = tiered_cache(ttl_l1=None, name=name, tags=["catalog"])(lambda key: db[key])
    assert writer("k") == "v1"
    db["k"] = "v2"
    tiercache.invalidate_tags("catalog")
    redis_server.client().delete(tag_key(isolated_settings, digest_of("catalog")))  # expired, evicted
    assert writer("k") == "v2"  # not v1, though the tag key is gone as it was before any invalidation
    assert writer("k") == "v2" and writer.cache_stats().l2_hits == 1  # and tagging goes on


def test_cache_set_and_cache_get_carry_tags(real_l2: str) -> None:
    name = unique("entries")
    lookup = tiered_cache(name=name, tags=by_user)(lambda user_id: f"computed {user_id}")
    lookup.cache_set("set by hand", "42")
    reader = tiered_cache(ttl_l1=None, name=name, tags=by_user)(lambda user_id: "reader computed")
    assert reader.cache_get("42") == "set by hand"
    tiercache.invalidate_tags("user:42")
    assert lookup.cache_get("42") is tiercache.NO_VALUE
    assert reader.cache_get("42") is tiercache.NO_VALUE
    assert lookup("42") == "computed 42"


@pytest.mark.asyncio
async def test_ainvalidate_tags_and_async_functions(real_l2: str) -> None:
    db = {"42": "Ada"}
    runs: list[str] = []

    @tiered_cache(name=unique("async"), tags=by_user)
    async def get_session(user_id: str) -> str:
        runs.append(user_id)
        return db[user_id]

    assert await get_session("42") == "Ada" and await get_session("42") == "Ada"
    db["42"] = "Grace"
    await tiercache.ainvalidate_tags("user:42")
    assert await get_session("42") == "Grace" and runs == ["42", "42"]


# -- runs under way when the tag is invalidated --------------------------------------------------
# (A single run that read before the invalidation: invalidation/test_guarantee.py, how="tags".)


def test_concurrent_hits_never_end_on_a_value_invalidated_by_tag(real_l2: str) -> None:
    """100 trials: 4 threads hit while a fifth changes the truth and invalidates by tag."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    stale = 0
    try:
        for _ in range(100):
            db = {"v": 0}
            lookup = tiered_cache(name=unique("stress"), tags=["stress"])(lambda key: db["v"])
            stop = threading.Event()

            def hit(function: Any = lookup, done: threading.Event = stop) -> None:
                while not done.is_set():
                    function(1)

            hitters = [threading.Thread(target=hit) for _ in range(4)]
            for thread in hitters:
                thread.start()
            deadline = time.monotonic() + 0.03
            while time.monotonic() < deadline:
                db["v"] += 1
                tiercache.invalidate_tags("stress")
            stop.set()
            for thread in hitters:
                thread.join()
            stale += lookup(1) != db["v"]
    finally:
        sys.setswitchinterval(before)
    assert stale == 0, f"{stale} of 100 trials ended on a value invalidated by tag"


def test_a_call_after_invalidate_tags_never_joins_a_run_an_earlier_invalidation_left_unnoted(
    redis_server: RedisProcess, real_l2: str
) -> None:
    """Redis stalls a tagged call's read while invalidate_tags() runs; the call then starts a run.

    That first invalidate_tags() dropped the call's note before its run existed; after the
    second one returns, a new call must start a run of its own, not join the first (which read
    the data before it changed).
    """
    tiercache.configure(timeout=5)  # the stalled read waits for Redis: it is the point
    db = {"x": "v1", "warm-up": "-"}
    runs: list[str] = []
    running, gate = threading.Event(), threading.Event()
    lookup = tiered_cache(name=unique("unnoted"), tags=["t"])(
        lambda key: _slow_first(db, key, runs, running, gate)
    )
    cache = lookup.__tiercache__
    lookup("warm-up")  # the listener, the generation and the tag's token are in place
    redis_server.pause()  # Redis stalls: nothing it is asked is answered until it resumes
    stall = threading.Timer(0.4, redis_server.resume)
    stall.start()
    early: list[str] = []
    first = threading.Thread(target=lambda: early.append(lookup("x")))
    first.start()
    _until(lambda: cache.tags.notes.noted(digest_of("t"), "x"))  # noted; its read waits
    tiercache.invalidate_tags("t")  # waits for Redis too; its local drop took the note at once
    assert running.wait(5)  # the stalled call now runs the function, which read v1
    db["x"] = "v2"
    tiercache.invalidate_tags("t")
    later: list[str] = []
    second = threading.Thread(target=lambda: later.append(lookup("x")))
    second.start()
    second.join(2)
    gate.set()
    for thread in (first, second, stall):
        thread.join(5)
    assert later == ["v2"], "a call made after invalidate_tags() returned joined a run that read v1"
    assert early == ["v1"]


def test_a_run_whose_note_the_bound_on_notes_let_go_is_not_joined_after_invalidate_tags(
    real_l2: str,
) -> None:
    """A run under way while 2,000 other keys pass through an L1 of 10 (the notes keep what L1 holds)."""
    db = {"x": "v1", **{str(n): str(n) for n in range(2000)}}
    runs: list[str] = []
    running, gate = threading.Event(), threading.Event()
    lookup = tiered_cache(name=unique("pruned"), tags=["t"], max_entries=10)(
        lambda key: _slow_first(db, key, runs, running, gate)
    )
    early: list[str] = []
    first = threading.Thread(target=lambda: early.append(lookup("x")))
    first.start()
    assert running.wait(5)  # its run read v1
    for n in range(2000):
        lookup(str(n))
    db["x"] = "v2"
    tiercache.invalidate_tags("t")
    later: list[str] = []
    second = threading.Thread(target=lambda: later.append(lookup("x")))
    second.start()
    second.join(2)
    gate.set()
    for thread in (first, second):
        thread.join(5)
    assert later == ["v2"], "a call made after invalidate_tags() returned joined a run that read v1"


def _slow_first(
    db: dict[str, str], key: str, runs: list[str], running: threading.Event, gate: threading.Event
) -> str:
    """Read ``db[key]``; the first run for ``x`` then waits for ``gate``."""
    value = db[key]
    runs.append(key)
    if key == "x" and runs.count("x") == 1:
        running.set()
        gate.wait(10)
    return value


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# -- other processes ----------------------------------------------------------------------------


def test_a_write_delayed_on_its_way_cannot_undo_another_processes_tag_invalidation(
    redis_server: RedisProcess, real_l2: str, isolated_settings: str
) -> None:
    """Process A computes from v1 through a proxy delaying its commands 30 ms; B invalidates the tag."""
    with race_worker(redis_server, isolated_settings) as worker:
        stale = stale_samples(
            worker,
            redis_server,
            isolated_settings,
            "tcompute",
            lambda key: tiercache.invalidate_tags(f"item:{key}"),
            lambda: tiered_cache(ttl_l1=None, name="race.tagged", tags=lambda key: [f"item:{key}"])(
                lambda key: "recomputed"
            ),
        )
    assert stale == [], f"{len(stale)} of 20 samples served v1 from Redis after the tag's invalidation"


def test_four_processes_stop_serving_a_value_invalidated_by_tag_within_100ms(
    redis_server: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"tags-coherence-{time.monotonic_ns()}"
    versions = 100
    tiercache.configure(redis_url=redis_server.url, namespace=namespace)
    staleness = staleness_ms(
        redis_server.url, namespace, versions, lambda: tiercache.invalidate_tags("item:k"), tagged=True
    )
    p50, p99 = statistics.median(staleness), staleness[int(len(staleness) * 0.99) - 1]
    with capsys.disabled():
        print(f"\ntag invalidation staleness over {len(staleness)} pairs, ms: p50 {p50:.2f} p99 {p99:.2f}")
    assert len(staleness) == 4 * versions
    assert p99 < 100


# -- Redis unreachable or refusing ----------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Any:
    server = RedisProcess(tmp_path / "own").start()
    tiercache.configure(redis_url=server.url, timeout=0.05)
    yield server
    server.stop()


def test_an_unreachable_redis_clears_the_tagged_functions_once_it_is_back(own_server: RedisProcess) -> None:
    db = {"k": "v1"}
    name = unique("outage")
    lookup = tiered_cache(name=name, tags=["catalog"])(lambda key: db[key])
    untagged = tiered_cache(name=unique("untouched"))(lambda key: db[key])
    assert lookup("k") == "v1" and untagged("k") == "v1"
    own_server.pause()
    try:
        db["k"] = "v2"
        tiercache.invalidate_tags("catalog")  # no exception: remembered
        assert lookup.cache_stats().pending_invalidations >= 1
        assert untagged.cache_stats().pending_invalidations == 0
        assert lookup("k") == "v2"
    finally:
        own_server.resume()
    time.sleep(0.1)
    other_process = tiered_cache(ttl_l1=None, name=name, tags=["catalog"])(lambda key: "computed")
    deadline = time.monotonic() + 10
    for attempt in itertools.count():  # (L1 hits touch no Redis: other keys' misses replay it)
        if not lookup.cache_stats().pending_invalidations:
            break
        assert time.monotonic() < deadline
        db[f"other{attempt}"] = "x"
        lookup(f"other{attempt}")
        time.sleep(0.05)
    assert other_process("k") in ("v2", "computed")


def test_a_refused_tag_invalidation_raises_naming_the_redis_error(own_server: RedisProcess) -> None:
    lookup = tiered_cache(name=unique("refused"), tags=["catalog"])(lambda key: key)
    lookup("k")
    own_server.client().config_set("min-replicas-to-write", 1)  # every write is refused now
    try:
        with pytest.raises(InvalidationError, match="NOREPLICAS"):
            tiercache.invalidate_tags("catalog")
    finally:
        own_server.client().config_set("min-replicas-to-write", 0)


def test_tagged_functions_on_fakeredis_and_a_process_without_tagged_functions(
    fake_server: fakeredis.FakeServer, fake_l2: fakeredis.FakeServer, isolated_settings: str
) -> None:
    """A process with no tagged function (an admin tool) still moves the tags on in Redis."""
    tiercache.invalidate_tags("user:1")
    client = fakeredis.FakeRedis(server=fake_server)
    assert client.get(tag_key(isolated_settings, digest_of("user:1"))) is not None


# -- a model ------------------------------------------------------------------------------------

USERS = st.sampled_from(["1", "2", "3"])


class TaggedUsers(RuleBasedStateMachine):
    """Two functions about users (L1 + L2, and L2 only) tagged ``user:<id>`` and ``all``.

    Every change to the data is followed by the invalidation of one of its tags; tag keys get
    lost from Redis (an eviction) and processes restart. No call may return anything but the
    data as it is now.
    """

    def __init__(self) -> None:
        super().__init__()
        self.db: dict[str, int] = {"1": 0, "2": 0, "3": 0}
        self.name = unique("model")
        self.cached = self._function(ttl_l1=600)
        self.uncached = self._function(ttl_l1=None)

    def _function(self, **options: Any) -> Any:
        db = self.db
        return tiered_cache(name=self.name, tags=lambda user_id: [f"user:{user_id}", "all"], **options)(
            lambda user_id: db[user_id]
        )

    @rule(user=USERS)
    def call_with_l1(self, user: str) -> None:
        assert self.cached(user) == self.db[user]

    @rule(user=USERS)
    def call_from_l2(self, user: str) -> None:
        assert self.uncached(user) == self.db[user]

    @rule(user=USERS)
    def change_one(self, user: str) -> None:
        self.db[user] += 1
        tiercache.invalidate_tags(f"user:{user}")

    @rule()
    def change_all(self) -> None:
        for user in self.db:
            self.db[user] += 1
        tiercache.invalidate_tags("all")

    @rule(tag=st.sampled_from(["user:1", "user:2", "user:3", "all"]))
    def lose_a_tag_key(self, tag: str) -> None:
        server: fakeredis.FakeServer = self.server  # type: ignore[attr-defined]
        fakeredis.FakeRedis(server=server).delete(tag_key(self.namespace, digest_of(tag)))  # type: ignore[attr-defined]

    @rule()
    def restart(self) -> None:
        self.cached = self._function(ttl_l1=600)

    @rule(user=USERS)
    def set_by_hand(self, user: str) -> None:
        self.db[user] += 1
        self.cached.cache_set(self.db[user], user)
        # The L2-only reader is another process here: a run of it that just ended lingers for
        # late callers until the set's announcement reaches it (the documented window).
        flights = self.uncached.__tiercache__.flights.thread
        deadline = time.monotonic() + 2
        while flights._landed:
            assert time.monotonic() < deadline, "the announcement never arrived"
            time.sleep(0.001)


def test_tagged_entries_against_a_model(
    fake_server: fakeredis.FakeServer, fake_l2: fakeredis.FakeServer, isolated_settings: str
) -> None:
    class Machine(TaggedUsers):
        server = fake_server
        namespace = isolated_settings

    run_state_machine_as_test(
        Machine, settings=hypothesis_settings(max_examples=40, stateful_step_count=30, deadline=None)
    )


def test_every_namespace_in_use_and_the_settings_one_are_told(
    real_l2: str, redis_server: RedisProcess, isolated_settings: str
) -> None:
    """Tags mean the same in every namespace: this process's functions' ones, and the default,
    where other processes' functions are even when this one has none there."""
    elsewhere = tiered_cache(namespace=f"{isolated_settings}-other", tags=["t"], name=unique("ns"))(
        lambda k: k
    )
    elsewhere("k")
    client = redis_server.client()
    keys = [
        tag_key(namespace, digest_of("t")) for namespace in (isolated_settings, f"{isolated_settings}-other")
    ]
    before = [client.get(key) for key in keys]
    tiercache.invalidate_tags("t")
    after = [client.get(key) for key in keys]
    assert all(token is not None for token in after) and after[0] != before[0] and after[1] != before[1]


def test_notes_of_keys_l1_let_go_are_bounded(backend: str) -> None:
    """A fixed tag on 5,000 keys through an L1 of 10: the notes keep what L1 holds, not all."""
    runs: list[int] = []
    lookup = tiered_cache(max_entries=10, name=unique("bounded"), tags=["t"], **options_for(backend))(
        lambda n: runs.append(n) or n
    )
    for n in range(5000):
        lookup(n)
    cache = lookup.__tiercache__
    assert len(cache.tags.notes) <= 2 * 10 + 1024 + 1
    held = [n for n in range(4990, 5000) if lookup(n) == n]
    assert len(runs) == 5000 and len(held) == 10  # the last ten are L1 hits
    tiercache.invalidate_tags("t")
    for n in range(4990, 5000):
        lookup(n)
    assert len(runs) == 5010  # every one of them was dropped


def test_a_process_without_tagged_functions_raises_when_redis_cannot_be_told(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its settings' Redis is unreachable (the suite's default): nothing could replay it later."""
    monkeypatch.setattr(registry, "all_caches", list)  # no cached function in this process
    with pytest.raises(InvalidationError, match=r"invalidate_tags\(\) was refused .* nothing can replay it"):
        tiercache.invalidate_tags("user:1")
    monkeypatch.undo()
    lookup = tiered_cache(ttl_l2=None, tags=["t"], name=unique("l1only"))(lambda key: key)
    lookup("k")
    tiercache.invalidate_tags("t")  # a tagged function here: a warning, once, not an exception
    tiercache.invalidate_tags("t")
    assert sum("could not tell" in record.getMessage() for record in caplog.records) <= 1


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
def test_a_tag_drop_during_cache_set_cannot_hide_its_entry_from_later_invalidations(
    l2: str, request: pytest.FixtureRequest
) -> None:
    """Forced: a drop of the tags (an announcement's echo) lands while cache_set() talks to Redis.

    It took away the note of the key cache_set() was about to keep in L1, so the next
    invalidation of the tag could not find that entry (found by the model above).
    """
    request.getfixturevalue(l2)
    db = {"u": 1}

    @tiered_cache(ttl_l1=600, tags=lambda user_id: ["all"], name=unique("set-race"))
    def read(user_id: str) -> int:
        return db[user_id]

    assert read("u") == 1
    cache = read.__tiercache__
    original = cache.redis_key

    def echo_then_key(call: Any) -> str:
        cache.tags.drop([digest_of("all")])  # an earlier invalidation's echo, arriving now
        return original(call)

    cache.redis_key = echo_then_key  # type: ignore[method-assign]
    try:
        db["u"] = 5
        read.cache_set(5, "u")
    finally:
        del cache.redis_key
    assert read("u") == 5
    db["u"] = 6
    tiercache.invalidate_tags("all")
    assert read("u") == 6
