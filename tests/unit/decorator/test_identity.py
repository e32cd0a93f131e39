"""Functions one factory makes never share entries: their free variables are part of their identity."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

from tests.support.strategies import normal_form, values
from tiercache import tiered_cache
from tiercache._decorator.identity import closure_identity

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


def test_the_identity_is_the_same_in_every_process(real_l2: str, isolated_settings: str) -> None:
    def run(table: str, seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-m", "tests.support.workers.closure", real_l2, isolated_settings, table, "1"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        return out.stdout.strip()

    first = run("users", "1")
    assert first.startswith("alice") and first.endswith("ran")
    assert run("orders", "2").startswith("order-1")  # not the users row another process wrote
    again = run("users", "3")  # another process, another hash seed: the same key
    assert again.endswith("cached") and again.split(" (")[0] == "alice"


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_equal_free_variables_mean_one_identity(a: Any, b: Any) -> None:
    def make(captured: Any) -> Callable[[], Any]:
        def function() -> Any:
            return captured

        return function

    same = normal_form(a) == normal_form(b)
    assert (closure_identity(make(a), 1 << 20) == closure_identity(make(b), 1 << 20)) == same


def test_free_variables_without_an_encoding_are_refused() -> None:
    def make(lock: Any, **options: Any) -> Any:
        @tiered_cache(**options)
        def get(key: str) -> str:
            with lock:
                return key

        return get

    with pytest.raises(
        TypeError, match=r"make\.<locals>\.get.*free variable 'lock'.*_thread\.lock.*name=.*version="
    ):
        make(threading.Lock())
    make(threading.Lock(), name="locked.get")  # the name is the identity: the user's word
    make(threading.Lock(), version="v2")
    make(threading.Lock(), ttl_l2=None)  # L1 only: nothing shared to confuse


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


def test_a_helper_assigned_below_without_an_encoding_fails_the_first_call(fake_l2: Any) -> None:
    def make() -> Any:
        @tiered_cache
        def get(key: str) -> str:
            return str(later)

        later = threading.Lock()
        return get

    get = make()
    with pytest.raises(TypeError, match=r"free variable 'later'"):
        get("k")


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
    assert closure_identity(make(_Maker.build).__wrapped__, 1 << 16).endswith(
        b"tests.unit.decorator.test_identity._Maker._Maker.build"
    )
