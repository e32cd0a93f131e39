"""Key derivation: canonical, typed, stable across processes, and explicit about what it refuses."""

from __future__ import annotations

import copy
import dataclasses
import enum
import os
import pathlib
import random
import subprocess
import sys
import textwrap
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.strategies import hashables, normal_form, values
from tiercache import UnkeyableArgumentError, tiered_cache
from tiercache._decorator.keys import SHALLOW_MAX_ITEMS, canonical_bytes, digest, shallow_key
from tiercache.testing import forget_local_caches


def key_of(*values: Any) -> bytes:
    return canonical_bytes(values, tuple(f"p{i}" for i in range(len(values))), "mod.f")


def shuffled(value: Any, rng: random.Random) -> Any:
    """Return an equal copy of ``value`` whose dicts were built in another insertion order."""
    if type(value) is dict:
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if type(value) is list:
        return [shuffled(item, rng) for item in value]
    if type(value) is tuple:
        return tuple(shuffled(item, rng) for item in value)
    return copy.deepcopy(value)


@given(values, st.randoms())
def test_equal_values_in_any_dict_order_have_one_encoding(value: Any, rng: random.Random) -> None:
    """Equal values (dicts built in any order, sets in any iteration order) encode identically."""
    assert key_of(value) == key_of(shuffled(value, rng))


@given(values, values)
@settings(max_examples=300)
def test_encoding_is_injective_on_typed_values(a: Any, b: Any) -> None:
    """Two values share an encoding exactly when they are the same typed value."""
    assert (key_of(a) == key_of(b)) == (normal_form(a) == normal_form(b))


@given(st.lists(hashables, min_size=2, max_size=2, unique_by=normal_form))
def test_argument_boundaries_are_part_of_the_encoding(pair: list[Any]) -> None:
    """(a, b) and (b, a), or one argument holding both, never collide."""
    a, b = pair
    assert key_of(a, b) != key_of(b, a)
    assert key_of(a, b) != key_of((a, b))


@pytest.mark.parametrize(
    ("left", "right"),
    [(1, "1"), (1, b"1"), ("1", b"1"), (1, True), (1, 1.0), (0, False), ([1], (1,)), ({1}, frozenset({1}))],
)
def test_equal_looking_values_of_other_types_are_other_keys(left: Any, right: Any) -> None:
    """f(1), f("1"), f(b"1"), f(True), f(1.0) are five entries."""
    assert key_of(left) != key_of(right)


def test_keys_are_stable_across_processes_and_hash_seeds() -> None:
    """The digest of a set/dict argument is the same under any PYTHONHASHSEED."""
    program = textwrap.dedent(
        """
        from tiercache._decorator.keys import canonical_bytes, digest
        value = ({"b", "a", "c", "d"}, {"x": frozenset({1, 2, 3}), "y": ("t", 1.5)})
        print(digest(canonical_bytes(value, ("a", "b"), "f"), b"p"))
        """
    )
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1
    assert outputs == {
        digest(key_of({"b", "a", "c", "d"}, {"x": frozenset({1, 2, 3}), "y": ("t", 1.5)}), b"p")
    }


def test_digest_is_keyed_by_the_secret() -> None:
    assert digest(b"x", b"p") != digest(b"x", b"p", b"secret")
    assert digest(b"x", b"p", b"secret") != digest(b"x", b"p", b"other")


class Color(enum.Enum):
    RED = 1


class Shade(enum.IntEnum):
    DARK = 1


class UserId(str):
    __slots__ = ()


class Account:
    def __init__(self, number: int) -> None:
        self.number = number

    def __cache_key__(self) -> Any:
        return ("account", self.number)


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,
        Shade.DARK,
        UserId("u1"),
        OrderedDict(a=1),
        pathlib.PurePosixPath("/a/b"),
        Account(7),
        int,
        Color,
    ],
)
def test_enums_paths_types_subclasses_and_hooks_are_keyable(value: Any) -> None:
    """Beyond builtins: enums, classes, PurePaths, subclasses of keyable types, __cache_key__."""
    assert key_of(value) == key_of(copy.copy(value) if not isinstance(value, type) else value)


def test_subclass_values_and_hook_results_are_distinct_from_their_base_values() -> None:
    assert key_of(UserId("u1")) != key_of("u1")
    assert key_of(Shade.DARK) != key_of(1)
    assert key_of(Account(7)) != key_of(("account", 7))
    assert key_of(Account(7)) == key_of(Account(7))
    assert key_of(Account(7)) != key_of(Account(8))


def test_unkeyable_argument_error_names_function_parameter_type_and_remedies() -> None:
    with pytest.raises(UnkeyableArgumentError) as caught:
        canonical_bytes(("ok", {"opts": [1, object()]}), ("name", "config"), "app.resolve")
    message = str(caught.value)
    assert isinstance(caught.value, TypeError)
    assert "app.resolve()" in message
    assert "argument 'config'" in message
    assert "config['opts'][1]" in message
    assert "builtins.object" in message
    assert "key=" in message and "ignore=('config',)" in message and "__cache_key__" in message


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


@dataclasses.dataclass
class Labelled:
    item: Any
    label: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class OtherPoint:
    x: Any
    y: Any


class Query(pydantic.BaseModel):
    """A request model as FastAPI hands it on (mutable: keyed as it is at the call)."""

    text: Any
    page: int = 1


class Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="allow")

    item: Any


def extra_model(item: Any, extra: dict[str, Any]) -> Extra:
    return Extra(item=item, **extra)


records = st.recursive(
    values,
    lambda inner: st.one_of(
        st.builds(Point, inner, inner),
        st.builds(Labelled, inner, st.text(max_size=3)),
        st.builds(Query, text=inner, page=st.integers(0, 2)),
        st.builds(extra_model, inner, st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2)),
        st.lists(inner, max_size=3),
    ),
    max_leaves=6,
)


def record_form(value: Any) -> Any:
    """``normal_form``, and records by their class and compared fields (the oracle)."""
    if type(value) is Point:
        return ("Point", record_form(value.x), record_form(value.y))
    if type(value) is Labelled:
        return ("Labelled", record_form(value.item))
    if type(value) is Query:
        return ("Query", record_form(value.text), value.page)
    if type(value) is Extra:
        extra = value.model_extra or {}
        return ("Extra", record_form(value.item), frozenset((k, record_form(v)) for k, v in extra.items()))
    if type(value) is list:
        return ("list", tuple(record_form(item) for item in value))
    return normal_form(value)


@given(records, records)
@settings(max_examples=300)
def test_dataclasses_and_pydantic_models_share_a_key_exactly_when_they_compare_equal(a: Any, b: Any) -> None:
    """As lru_cache keys them: same class and equal compared fields (compare=False fields aside;
    a model's extra fields count)."""
    assert (key_of(a) == key_of(b)) == (record_form(a) == record_form(b))


def test_dataclasses_of_other_classes_or_field_names_are_other_keys() -> None:
    assert key_of(Point(1, 2)) != key_of(OtherPoint(1, 2))
    assert key_of(Point(1, 2)) != key_of((1, 2))
    assert key_of(Point(1, 2)) != key_of(Point(2, 1))
    assert key_of(Labelled(1, "a")) == key_of(Labelled(1, "b"))


def test_pydantic_models_of_other_classes_or_private_state_are_other_keys() -> None:
    class Secret(pydantic.BaseModel):
        x: int
        _state: Any = pydantic.PrivateAttr(default=None)

    first, second = Secret(x=1), Secret(x=1)
    second._state = "t"
    assert (first == second) is False and key_of(first) != key_of(second)
    assert key_of(Query(text="a")) == key_of(Query(text="a", page=1)) != key_of({"text": "a", "page": 1})
    with pytest.raises(UnkeyableArgumentError, match=r"argument 'p0' \(at p0\.text\[0\]\)"):
        key_of(Query(text=[object()]))
    with pytest.raises(UnkeyableArgumentError, match=r"\(at p0\.__pydantic_extra__\['x'\]\)"):
        key_of(Extra(item=1, x=object()))


def test_a_dataclass_that_compares_by_identity_or_holds_the_unkeyable_is_refused_by_name() -> None:
    @dataclasses.dataclass(eq=False)
    class Handle:
        fd: int

    with pytest.raises(UnkeyableArgumentError, match=r"argument 'p0'.*eq=False compares by identity"):
        key_of(Handle(3))
    with pytest.raises(UnkeyableArgumentError, match=r"argument 'p0' \(at p0\.x\[1\]\)"):
        key_of(Point([1, object()], 2))


def test_cyclic_argument_is_refused_not_a_recursion_error() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(UnkeyableArgumentError, match="nested deeper"):
        key_of(looped)


# -- through the decorator: binding, ignore=, key=, methods ---------------------------------


def test_positional_keyword_and_default_spellings_are_one_entry() -> None:
    """f(1, "x"), f(1, b="x"), f(a=1, b="x") and f(1) with default b="x" share one entry."""
    runs: list[Any] = []

    @tiered_cache(ttl_l2=None)
    def f(a: int, b: str = "x") -> tuple[int, str]:
        runs.append((a, b))
        return a, b

    assert f(1, "x") == f(1, b="x") == f(a=1, b="x") == f(1) == (1, "x")
    assert runs == [(1, "x")]
    assert f.cache_key(1) == f.cache_key(1, "x") == f.cache_key(b="x", a=1)


def test_typed_entries_through_the_decorator() -> None:
    runs: list[Any] = []

    @tiered_cache(ttl_l2=None)
    def f(a: object) -> str:
        runs.append(a)
        return type(a).__name__

    assert [f(1), f("1"), f(b"1"), f(True), f(1.0)] == ["int", "str", "bytes", "bool", "float"]
    assert [f(1), f("1"), f(b"1"), f(True), f(1.0)] == ["int", "str", "bytes", "bool", "float"]
    assert len(runs) == 5


def test_lists_dicts_and_sets_are_accepted_and_dict_order_does_not_matter() -> None:
    runs: list[Any] = []

    @tiered_cache(ttl_l2=None)
    def f(config: dict[str, Any], tags: set[str], items: list[int]) -> int:
        runs.append(1)
        return len(runs)

    assert f({"a": 1, "b": [1, 2]}, {"x", "y"}, [1, 2]) == 1
    assert f({"b": [1, 2], "a": 1}, {"y", "x"}, [1, 2]) == 1
    assert f({"b": [1, 2], "a": 1}, {"y", "x"}, [2, 1]) == 2


def test_redis_key_names_namespace_and_function_and_hides_argument_values(isolated_settings: str) -> None:
    @tiered_cache(version=3)
    def get_session(session_id: str) -> None:
        return None

    key = get_session.cache_key("s3cr3t-session-id")
    assert key.startswith(f"{isolated_settings}:{__name__}.{get_session.__qualname__}@3:")
    assert "s3cr3t" not in key
    assert len(key.rsplit(":", 1)[1]) == 32


def test_version_and_name_change_the_key() -> None:
    def body(x: int) -> int:
        return x

    a = tiered_cache(name="svc.lookup")(body)
    b = tiered_cache(name="svc.lookup", version="2")(body)
    c = tiered_cache(name="svc.other")(body)
    assert len({a.cache_key(1), b.cache_key(1), c.cache_key(1)}) == 3


def test_ignore_leaves_arguments_out_of_the_key() -> None:
    runs: list[int] = []

    @tiered_cache(ttl_l2=None, ignore=("client", "log"))
    def fetch(client: object, key: str, log: object = None) -> str:
        runs.append(1)
        return key.upper()

    assert fetch(object(), "a") == fetch(object(), "a", log=object()) == "A"
    assert len(runs) == 1


def test_key_function_replaces_the_arguments() -> None:
    runs: list[int] = []

    @tiered_cache(ttl_l2=None, key=lambda user, *, verbose=False: user["id"])
    def profile(user: dict[str, Any], *, verbose: bool = False) -> str:
        runs.append(1)
        return str(user["id"])

    assert profile({"id": 7, "name": "a"}) == profile({"id": 7, "name": "b"}, verbose=True) == "7"
    assert len(runs) == 1


def test_unkeyable_argument_through_the_decorator_names_the_function() -> None:
    @tiered_cache(ttl_l2=None)
    def resolve(category: str, client: object) -> None:
        return None

    with pytest.raises(TypeError, match=r"resolve\(\): argument 'client'.*ignore=\('client',\)"):
        resolve("storage", object())


class Repository:
    """Methods: ``self`` is an argument like any other."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.runs = 0

    def __cache_key__(self) -> str:
        return self.region

    @tiered_cache(ttl_l2=None)
    def lookup(self, name: str) -> str:
        self.runs += 1
        return f"{self.region}/{name}"

    @tiered_cache(ttl_l2=None, ignore="self")
    def shared(self, name: str) -> str:
        self.runs += 1
        return name.upper()

    @classmethod
    @tiered_cache(ttl_l2=None)
    def by_class(cls, name: str) -> str:
        return f"{cls.__name__}:{name}"

    @tiered_cache(ttl_l2=None)
    @classmethod
    def by_class_outer(cls, name: str) -> str:
        return f"{cls.__name__}:{name}"

    @tiered_cache(ttl_l2=None)
    @staticmethod
    def static(name: str) -> str:
        return name * 2


def test_self_keys_through_cache_key_hook() -> None:
    """An instance with __cache_key__ keys by it: equal keys share entries, others do not."""
    eu, eu2, us = Repository("eu"), Repository("eu"), Repository("us")
    assert eu.lookup("a") == "eu/a" and eu2.lookup("a") == "eu/a" and us.lookup("a") == "us/a"
    assert (eu.runs, eu2.runs, us.runs) == (1, 0, 1)


def test_ignore_self_shares_one_entry_between_instances() -> None:
    one, two = Repository("eu"), Repository("us")
    assert one.shared("x") == two.shared("x") == "X"
    assert one.runs + two.runs == 1


def test_self_without_hook_is_a_clear_error() -> None:
    class Plain:
        @tiered_cache(ttl_l2=None)
        def method(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"argument 'self'.*ignore=\('self',\).*__cache_key__"):
        Plain().method(1)


def test_classmethods_and_staticmethods_in_either_decorator_order() -> None:
    assert Repository.by_class("a") == "Repository:a"
    assert Repository.by_class_outer("a") == "Repository:a"
    assert Repository("eu").by_class_outer("b") == "Repository:b"
    assert Repository.static("ab") == Repository("eu").static("ab") == "abab"


def test_cache_key_is_stable_for_an_instance_independent_of_identity() -> None:
    assert Repository.lookup.cache_key(Repository("eu"), "a") == Repository.lookup.cache_key(
        Repository("eu"), "a"
    )
    assert Repository.lookup.cache_key(Repository("eu"), "a") != Repository.lookup.cache_key(
        Repository("us"), "a"
    )


def test_uuid_keys_are_stable() -> None:
    value = uuid.UUID(int=5)
    assert key_of(value) == key_of(uuid.UUID(int=5)) != key_of(str(value))


# -- shallow keys: flat containers of exact types key as they are, typed ---------------------

exact_scalars = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.binary(max_size=2))
near_scalars = st.one_of(exact_scalars, st.booleans(), st.sampled_from([0.0, 1.0, 2.0]))
flat = st.one_of(
    near_scalars,
    st.dictionaries(near_scalars.filter(lambda v: v == v), near_scalars, max_size=4),
    st.lists(near_scalars, max_size=4),
    st.lists(near_scalars, max_size=4).map(tuple),
    st.sets(near_scalars, max_size=4),
    st.frozensets(near_scalars, max_size=4),
)


@settings(max_examples=500)
@given(st.lists(flat, min_size=1, max_size=3), st.lists(flat, min_size=1, max_size=3))
def test_shallow_keys_are_equal_exactly_for_the_same_typed_values(a: list[Any], b: list[Any]) -> None:
    key_a, key_b = shallow_key(tuple(a)), shallow_key(tuple(b))
    if key_a is not None and key_b is not None:
        assert (key_a == key_b) == (normal_form(a) == normal_form(b))
        hash(key_a)


@given(st.lists(flat, min_size=1, max_size=3))
def test_a_shallow_key_is_made_only_of_exact_types(values_: list[Any]) -> None:
    exact = {str, int, bytes, type(None)}

    def all_exact(value: Any) -> bool:
        if type(value) is dict:
            return all(type(k) in exact and type(v) in exact for k, v in value.items())
        if type(value) in (list, tuple, set, frozenset):
            return all(type(item) in exact for item in value)
        return type(value) in exact

    assert (shallow_key(tuple(values_)) is not None) == all(all_exact(value) for value in values_)


def test_dict_arguments_hit_l1_typed_and_in_any_order() -> None:
    runs: list[Any] = []

    @tiered_cache(ttl_l2=None)
    def search(filters: Any, page: int = 1) -> int:
        runs.append(filters)
        return len(runs)

    assert search({"a": 1, "b": "x"}) == search({"b": "x", "a": 1}) == 1  # insertion order: no matter
    assert search({1: "a"}) != search({True: "a"}) != search({1.0: "a"})  # types: they matter
    assert search([1, 2]) != search((1, 2))
    assert search({"a": 1, "b": "x"}, page=2) == 7
    hits_before = search.cache_stats().l1_hits
    for _ in range(3000):  # fast path, sampled and timed calls alike
        assert search({"a": 1, "b": "x"}) == 1
    assert search.cache_stats().l1_hits == hits_before + 3000


def test_invalidating_a_call_with_a_dict_argument_drops_its_entry(fake_l2: Any) -> None:
    version = [1]

    @tiered_cache
    def search(filters: dict[str, int]) -> int:
        return version[0]

    assert search({"a": 1}) == 1
    version[0] = 2
    search.cache_invalidate({"a": 1})
    assert search({"a": 1}) == 2


@pytest.mark.parametrize("l2", ["fake_l2", "real_l2"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: Point("storage", "s3"),  # a frozen dataclass: an lru_cache habit
        lambda: Query(text="shoes", page=2),  # the request model a FastAPI handler passes on
    ],
    ids=["dataclass", "pydantic"],
)
def test_equal_record_arguments_are_one_entry_in_both_tiers(
    l2: str, make: Callable[[], Any], request: pytest.FixtureRequest
) -> None:
    """Records key by value: equal ones are one entry in L1, in Redis, and to invalidate."""
    request.getfixturevalue(l2)
    version = [1]

    @tiered_cache(ttl_l1=60, ttl_l2=600, name=f"keys.resolve.{l2}.{type(make()).__name__}")
    def resolve(ref: Any) -> int:
        return version[0]

    assert resolve(make()) == 1
    assert resolve(make()) == 1
    assert resolve.cache_stats().l1_hits == 1
    forget_local_caches()  # (as another process finds it: L2 only)
    assert resolve(make()) == 1
    assert resolve.cache_stats().l2_hits == 1
    version[0] = 2
    resolve.cache_invalidate(make())
    assert resolve(make()) == 2


def test_containers_past_the_shallow_bound_key_canonically() -> None:
    big = {i: i for i in range(SHALLOW_MAX_ITEMS + 1)}
    assert shallow_key((big,)) is None and shallow_key((dict(list(big.items())[:-1]),)) is not None

    @tiered_cache(ttl_l2=None)
    def size(filters: dict[int, int]) -> int:
        return len(filters)

    assert size(big) == size(dict(big)) == SHALLOW_MAX_ITEMS + 1
    assert size.cache_stats().l1_hits == 1
