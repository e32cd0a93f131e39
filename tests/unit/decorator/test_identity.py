"""Functions one factory makes never share entries: their free variables are part of their identity."""

from __future__ import annotations

import functools
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

from tests.support.strategies import normal_form, values
from tiercache import tiered_cache
from tiercache._decorator.identity import closure_identity
from tiercache._decorator.registry import named_caches

DB = {"users": {1: "alice"}, "orders": {1: "order-1"}}


def make_getter(table: str, **options: Any) -> Any:
    @tiered_cache(ttl_l1=60, ttl_l2=600, **options)
    def get(row_id: int) -> str:
        return DB[table][row_id]

    return get


def test_a_factorys_functions_keep_their_own_entries(fake_l2: Any) -> None:
    users = make_getter("users")
    assert users(1) == "alice"  # now in Redis
    # A function of its own (an empty L1, as in a process that builds only `orders`) asks Redis,
    # and does not find what `users` wrote there.
    orders = make_getter("orders")
    assert orders(1) == "order-1"
    assert users.cache_key(1) != orders.cache_key(1)
    assert make_getter("users").cache_key(1) == users.cache_key(1)  # the same table: one function


def run_closure_worker(url: str, namespace: str, factory: str, table: str, seed: str) -> tuple[str, str]:
    """Run a process that builds ``factory``'s function and calls it once: (its line, its log)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.workers.closure", url, namespace, factory, table, "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": seed},
        check=True,
    )
    return out.stdout.strip(), out.stderr


def test_the_identity_is_the_same_in_every_process(real_l2: str, isolated_settings: str) -> None:
    def run(table: str, seed: str) -> str:
        return run_closure_worker(real_l2, isolated_settings, "getter", table, seed)[0]

    first = run("users", "1")
    assert first.startswith("alice") and first.endswith("ran")
    assert run("orders", "2").startswith("order-1")  # not the users row another process wrote
    again = run("users", "3")  # another process, another hash seed: the same key
    assert again.endswith("cached") and again.split(" (")[0] == "alice"


def test_a_nested_function_over_a_client_a_lock_and_a_constant_shares_entries_across_processes(
    real_l2: str, isolated_settings: str
) -> None:
    """Each process holds its own client and lock: their type names the function, as in one."""
    first, log = run_closure_worker(real_l2, isolated_settings, "loader", "users", "1")
    assert first.startswith("alice") and first.endswith("ran") and log == ""
    again, log = run_closure_worker(real_l2, isolated_settings, "loader", "users", "2")
    assert again == first.replace(" ran", " cached") and log == ""


def test_a_captured_start_time_splits_the_processes_and_says_so(real_l2: str, isolated_settings: str) -> None:
    first, log = run_closure_worker(real_l2, isolated_settings, "stamped", "users", "1")
    assert first.endswith("ran") and "'config' ['started']" in log and "looks like this process's own" in log
    again, _ = run_closure_worker(real_l2, isolated_settings, "stamped", "users", "2")
    assert again.endswith("ran")  # its own keys: what the warning said


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_equal_free_variables_mean_one_identity(a: Any, b: Any) -> None:
    def make(captured: Any) -> Callable[[], Any]:
        def function() -> Any:
            return captured

        return function

    same = normal_form(a) == normal_form(b)
    assert (closure_identity(make(a)) == closure_identity(make(b))) == same


def test_a_nested_function_over_objects_without_an_encoding_decorates_and_caches(fake_l2: Any) -> None:
    """A lock, a client, a Mock, an Event, a 2 MB constant: app factories and tests capture these."""
    from unittest import mock  # noqa: PLC0415

    class Client:
        def fetch(self, key: str) -> str:
            return f"row {key}"

    def make_loader(client: Any) -> Any:
        lock, event, blob = threading.Lock(), threading.Event(), b"x" * (2 << 20)
        runs: list[str] = []

        @tiered_cache(ttl_l1=60, ttl_l2=600)
        def load(key: str) -> str:
            with lock:
                event.set()
                runs.append(key)
                return str(client.fetch(key)) + str(len(blob))

        load.runs = runs  # type: ignore[attr-defined]
        return load

    load = make_loader(Client())
    assert load("k") == load("k") == f"row k{2 << 20}" and load.runs == ["k"]  # type: ignore[attr-defined]
    assert set(load.cache_parameters()["free_variables"]) == {"blob", "runs"}
    assert set(load.cache_parameters()["free_variables_by_type"]) == {"client", "event", "lock"}
    mocked = mock.Mock()
    mocked.fetch.return_value = "mocked"
    # A Mock is not a Client: its type alone keeps its keys apart from the first's.
    assert make_loader(mocked)("k") == f"mocked{2 << 20}"
    with pytest.raises(TypeError, match="free variable 'client'"):  # another Client, while the first lives
        make_loader(Client())
    del load  # (in a reference cycle: the registry collects it before it calls it a twin)
    assert make_loader(Client())("k") == f"row k{2 << 20}"  # the first is gone: nothing to confuse
    gc.collect()
    client = Client()
    one, two = make_loader(client), make_loader(client)  # one client, two locks: one thing computed
    assert one("j") == two("j") == f"row j{2 << 20}" and two.runs == []


def test_two_live_functions_that_differ_only_in_objects_without_an_encoding_are_refused() -> None:
    def make(lock: Any, **options: Any) -> Any:
        @tiered_cache(**options)
        def get(key: str) -> str:
            with lock:
                return key

        return get

    class Connection:
        pass

    first = make(Connection())
    with pytest.raises(
        TypeError,
        match=r"make\.<locals>\.get.*second time.*free variable 'lock'.*Connection.*name=.*version=",
    ):
        make(Connection())
    assert make(Connection(), name="locked.get")  # the name is the identity: the user's word
    assert make(Connection(), version="v2")  # another version: other keys
    assert make(Connection(), ttl_l2=None)  # L1 only: nothing shared to confuse
    shared = Connection()
    assert make(shared, version="shared") and make(shared, version="shared")  # one object: one thing
    locked = make(threading.RLock()), make(threading.RLock())  # a lock never changes a result
    assert locked[0]("k") == locked[1]("k") == "k"
    del first


def test_functions_kept_in_l1_alone_share_nothing_and_are_not_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def make(lock: Any) -> Any:
        @tiered_cache(ttl_l2=None)
        def get(key: str) -> str:
            with lock:
                return key

        return get

    one, two = make(threading.Lock()), make(threading.Lock())
    assert one("k") == two("k") == "k"
    assert not any("share one Redis key prefix" in record.getMessage() for record in caplog.records)


def test_a_value_that_looks_like_this_processs_own_is_warned_of(
    fake_l2: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start time in a config dict splits every process's keys from the others': said, not silent."""

    def make(config: dict[str, Any]) -> Any:
        @tiered_cache
        def get(key: str) -> str:
            return f"{key}@{config['region']}"

        return get

    get = make({"region": "eu", "started": time.time()})
    assert get("k") == "k@eu"
    warned = [r.getMessage() for r in caplog.records if "looks like this process's own" in r.getMessage()]
    assert len(warned) == 1 and "'config'" in warned[0] and "['started']" in warned[0]
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    assert make({"region": "eu", "pid": 4242}).cache_parameters()["free_variables"] == ("config",)
    assert any("this process's id" in r.getMessage() for r in caplog.records)
    caplog.clear()
    make({"region": "eu", "retries": 3, "workers": 1})  # (pid 1 in a container: a constant all the same)
    assert not any("looks like" in r.getMessage() for r in caplog.records)


def test_with_version_the_encodable_free_variables_still_count(fake_l2: Any) -> None:
    users, orders = make_getter("users", version=3), make_getter("orders", version=3)
    assert users.cache_key(1) != orders.cache_key(1)


def test_lambdas_need_a_name_for_redis() -> None:
    with pytest.raises(TypeError, match=r"lambda has no name of its own.*name="):
        tiered_cache(lambda key: key)
    assert tiered_cache(name="named.lambda")(lambda key: key).cache_key("k")
    assert tiered_cache(ttl_l2=None)(lambda key: key)("k") == "k"


def test_helpers_defined_below_and_self_recursion_are_read_at_the_first_call(fake_l2: Any) -> None:
    def make(step: int) -> Any:
        @tiered_cache
        def walk(n: int) -> int:
            return 0 if n <= 0 else helper(n) + walk(n - step)

        def helper(n: int) -> int:
            return step

        return walk

    one, two = make(1), make(2)
    assert one(4) == 4 and two(4) == 4
    assert one.cache_key(4) != two.cache_key(4)
    assert make(1).cache_key(4) == one.cache_key(4)


def test_a_helper_assigned_below_without_an_encoding_joins_by_its_type(fake_l2: Any) -> None:
    def make() -> Any:
        @tiered_cache
        def get(key: str) -> str:
            return f"{key}:{type(later).__name__}"

        later = threading.Lock()
        return get

    get = make()
    assert get("k") == "k:lock"
    assert get.cache_parameters()["free_variables_by_type"] == ("later",)


def test_functions_held_by_free_variables_count_by_name_and_closure(fake_l2: Any) -> None:
    def upper(s: str) -> str:
        return s.upper()

    def lower(s: str) -> str:
        return s.lower()

    def make(transform: Callable[[str], str]) -> Any:
        @tiered_cache
        def get(key: str) -> str:
            return transform(key)

        return get

    assert make(upper).cache_key("k") != make(lower).cache_key("k")
    assert make(upper).cache_key("k") == make(upper).cache_key("k")
    assert make(len).cache_key("k") == make(len).cache_key("k")  # builtins: by name


def _logged(function: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()  # a decorator's own state: not what the function computes

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        with lock:
            return function(*args)

    return wrapper


@_logged
def _module_level(key: str) -> str:
    return key


def test_a_function_under_another_decorator_is_read_through_wrapped(fake_l2: Any) -> None:
    cached = tiered_cache(_module_level)
    assert cached("k") == "k" and ":tests.unit.decorator.test_identity._module_level:" in cached.cache_key(
        "k"
    )


class _Maker:
    @classmethod
    def build(cls, key: str) -> str:
        return key


def test_classmethods_and_builtins_in_a_closure_count_by_their_qualified_names(fake_l2: Any) -> None:
    def make(helper: Callable[[str], Any]) -> Any:
        @tiered_cache
        def get(key: str) -> str:
            return str(helper(key))

        return get

    assert make(_Maker.build).cache_key("k") == make(_Maker.build).cache_key("k")
    assert make(_Maker.build).cache_key("k") != make(len).cache_key("k") != make(str.upper).cache_key("k")
    assert closure_identity(make(_Maker.build).__wrapped__).endswith(
        b"tests.unit.decorator.test_identity._Maker._Maker.build"
    )


def test_twins_are_named_in_the_order_they_were_decorated() -> None:
    """stats() names the younger of two live functions of one name ``#2``, whatever their addresses."""
    made = [tiered_cache(ttl_l2=None, name="tests.twins")(lambda x, n=n: x + n) for n in range(6)]
    names = [name for name, cache in named_caches() if name.startswith("tests.twins")]
    assert names == ["tests.twins", *(f"tests.twins#{n}" for n in range(2, 7))]
    order = [cache for name, cache in named_caches() if name.startswith("tests.twins")]
    assert order == [function.__tiercache__ for function in made]
