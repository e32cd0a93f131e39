"""Bad input gets a clear error naming the function and the argument at fault."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import typing
from typing import Any

import pytest

import tiercache
from tiercache import tiered_cache
from tiercache._decorator import decorator, options
from tiercache._decorator.config import Settings


def f(a: int) -> int:
    return a


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"ttl_l1": 0}, ValueError, r"tiered_cache\(\): ttl_l1 must be a finite number > 0.*None to turn"),
        ({"ttl_l1": -5}, ValueError, r"ttl_l1"),
        ({"ttl_l2": float("inf")}, ValueError, r"ttl_l2 must be a finite number"),
        ({"ttl_l2": "60"}, TypeError, r"ttl_l2 must be a number of seconds \(or a timedelta\) or None"),
        ({"ttl_l1": datetime.timedelta(0)}, ValueError, r"ttl_l1 .* > 0, not datetime.timedelta\(0\)"),
        ({"stale_ttl": datetime.timedelta(seconds=-1)}, ValueError, r"stale_ttl must be a finite number > 0"),
        ({"ttl_l1": True}, TypeError, r"ttl_l1 must be a number"),
        ({"ttl_l1": None, "ttl_l2": None}, ValueError, r"both None"),
        ({"max_entries": 0}, ValueError, r"max_entries must be >= 1"),
        ({"max_entries": 1.5}, TypeError, r"max_entries must be an int, not float"),
        ({"l1_policy": "lfu"}, ValueError, r"l1_policy must be one of \['lru', 'tinylfu'\], not 'lfu'"),
        ({"namespace": ""}, ValueError, r"namespace must be non-empty"),
        ({"namespace": "a b"}, ValueError, r"namespace .* without whitespace"),
        ({"namespace": 3}, TypeError, r"namespace must be a str, not int"),
        ({"key": "a"}, TypeError, r"key must be a callable, not str"),
        ({"ignore": 3}, TypeError, r"ignore must be a parameter name or names, not int"),
        ({"ignore": [3]}, TypeError, r"ignore must hold parameter names"),
        ({"key": str, "ignore": "a"}, ValueError, r"key= or ignore=, not both"),
        ({"version": 1.5}, TypeError, r"version must be a str or an int, not float"),
        ({"name": ""}, ValueError, r"name must be a non-empty str"),
        ({"name": "k"}, ValueError, r"tiered_cache\(\): name 'k' is reserved: .* adapters .*<namespace>:k:"),
        ({"name": "tag"}, ValueError, r"name 'tag' is reserved: the keys of a namespace's tags"),
        ({"name": "k:roles"}, ValueError, r"name 'k:roles' is reserved: .* adapters .*<namespace>:k:"),
        ({"name": "tag:x"}, ValueError, r"name 'tag:x' is reserved: the keys of a namespace's tags"),
        ({"enabled": "yes"}, TypeError, r"enabled must be a bool, not str"),
        ({"redis_url": "http://x"}, ValueError, r"redis_url 'http://x' must start with one of redis://"),
        ({"redis_url": "redis://:pw@h:notaport/0"}, ValueError, r"redis_url .* is invalid"),
        ({"clock": 5}, TypeError, r"clock must be a callable"),
    ],
)
def test_bad_decorator_arguments(options: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        tiered_cache(**options)(f)


def test_ignore_of_an_unknown_parameter_names_the_function_and_its_parameters() -> None:
    with pytest.raises(ValueError, match=r"'f'.*ignore names \['b'\].*its parameters: \['a'\]"):
        tiered_cache(ignore=("b",))(f)


def test_decorating_a_non_callable() -> None:
    with pytest.raises(TypeError, match=r"tiered_cache\(\) must decorate a function, not int"):
        tiered_cache()(3)


def test_bad_redis_url_does_not_leak_its_password() -> None:
    with pytest.raises(ValueError) as caught:
        tiered_cache(redis_url="http://user:hunter2@example.com")(f)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"redis_url": "mysql://x"}, ValueError, r"tiercache.configure\(\): redis_url"),
        ({"namespace": ""}, ValueError, r"tiercache.configure\(\): namespace"),
        ({"timeout": 0}, ValueError, r"tiercache.configure\(\): timeout must be a finite number > 0"),
        ({"connect_timeout": "1"}, TypeError, r"connect_timeout must be a number of seconds"),
        ({"enabled": 1}, TypeError, r"enabled must be a bool, not int"),
        ({"l2": None}, TypeError, r"l2 must be a bool"),
    ],
)
def test_bad_configure_arguments(options: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        tiercache.configure(**options)


@pytest.mark.parametrize(
    ("environ", "pattern"),
    [
        ({"TIERCACHE_REDIS_URL": "nope"}, r"tiercache environment: redis_url 'nope'"),
        ({"TIERCACHE_TIMEOUT": "fast"}, r"TIERCACHE_TIMEOUT='fast' is not a number"),
        ({"TIERCACHE_ENABLED": "maybe"}, r"TIERCACHE_ENABLED='maybe' is not one of"),
    ],
)
def test_bad_environment_variables(environ: dict[str, str], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        Settings.from_environment(environ)


def test_environment_variables_set_the_defaults() -> None:
    settings = Settings.from_environment(
        {
            "TIERCACHE_REDIS_URL": "redis://cache:6380/2",
            "TIERCACHE_NAMESPACE": "svc",
            "TIERCACHE_TIMEOUT": "0.05",
            "TIERCACHE_CONNECT_TIMEOUT": "1",
            "TIERCACHE_ENABLED": "off",
            "TIERCACHE_L2": "yes",
        }
    )
    assert settings == Settings(
        redis_url="redis://cache:6380/2",
        namespace="svc",
        timeout=0.05,
        connect_timeout=1.0,
        enabled=False,
        l2=True,
    )


def test_settings_repr_hides_the_password() -> None:
    settings = Settings(redis_url="redis://app:hunter2@cache:6379/0")
    assert "hunter2" not in repr(settings)
    assert "redis://app:***@cache:6379/0" in repr(settings)


def test_configure_redis_url_none_returns_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERCACHE_REDIS_URL", "redis://from-env:6379/0")
    assert tiercache.configure(redis_url=None).redis_url == "redis://from-env:6379/0"


def test_every_option_has_exactly_one_check_and_one_default() -> None:
    """Every option declares its check, and the decorator's typed overload names the same options."""
    fields = {field.name for field in dataclasses.fields(options.Options)}
    assert all(field.metadata["kind"] is not None for field in dataclasses.fields(options.Options))
    overloads = typing.get_overloads(decorator.tiered_cache)
    assert set(inspect.signature(overloads[-1]).parameters) == fields
    defaults = {p.name: p.default for p in inspect.signature(overloads[-1]).parameters.values()}
    checked = options.Options.checked({})
    for field in dataclasses.fields(options.Options):
        assert options.Options.checked({field.name: defaults[field.name]}) == checked, field.name


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: tiered_cache(ttl=5), r"tiered_cache\(\): unknown option\(s\) \['ttl'\]"),
        (lambda: tiered_cache(60, 60, 60), r"ttl_l1 and ttl_l2 by position"),
        (lambda: tiered_cache(60, ttl_l1=5), r"ttl_l1 given by position and by name"),
        (lambda: tiered_cache(lambda v: 1, None), r"ttl_l1 must be a number of seconds .*or None"),
    ],
)
def test_options_given_wrongly_are_named(call: Any, pattern: str) -> None:
    """An unknown option, too many positions, or one given twice raise naming the option."""
    with pytest.raises(TypeError, match=pattern):
        call()


def test_durations_may_be_timedeltas() -> None:
    """As cashews and dogpile take them: every duration option, and what TTL functions return."""
    minute = datetime.timedelta(minutes=1)

    @tiered_cache(minute, ttl_l2=datetime.timedelta(hours=1), stale_ttl=minute, timeout=minute, lock=minute)
    def f(x: int) -> int:
        return x

    parameters = f.cache_parameters()
    assert [parameters[name] for name in ("ttl_l1", "ttl_l2", "stale_ttl", "timeout", "lock")] == [
        60.0,
        3600.0,
        60.0,
        60.0,
        60.0,
    ]
    tiercache.configure(timeout=datetime.timedelta(milliseconds=250))
    assert tiercache.configure().timeout == 0.25


def test_a_ttl_function_may_return_a_timedelta() -> None:
    clock = [0.0]

    @tiered_cache(ttl_l1=lambda value: datetime.timedelta(seconds=value), ttl_l2=None, clock=lambda: clock[0])
    def f(x: int) -> int:
        return x

    f(5), f(50)
    clock[0] = 10.0
    assert not f.cache_contains(5) and f.cache_contains(50)


def test_a_preset_of_options_decorates_bare_or_with_more_options() -> None:
    """functools.partial(tiered_cache, ...) is how teams share settings: both uses work."""
    l1_only = functools.partial(tiered_cache, ttl_l1=60, ttl_l2=None)

    @l1_only  # was: "ttl_l1 given by position and by name"
    def bare(x: int) -> int:
        return x

    @l1_only(ttl_l1=5)
    def called(x: int) -> int:
        return x

    class Service:
        @l1_only
        @classmethod
        def build(cls, x: int) -> str:
            return f"{cls.__name__}:{x}"

    assert bare(1) == 1 and called(1) == 1 and Service.build(1) == "Service:1"
    assert (bare.cache_parameters()["ttl_l1"], bare.cache_parameters()["ttl_l2"]) == (60.0, None)
    assert called.cache_parameters()["ttl_l1"] == 5.0
    assert Service.build.cache_contains(1)


def test_positional_ttls_and_cache_parameters() -> None:
    """ttl_l1/ttl_l2 by position land where their names would; cache_parameters shows no secrets."""

    @tiered_cache(30, None, signing_key=b"k" * 16, redis_url="redis://:secret@localhost:1/0")
    def f(x: int) -> int:
        return x

    parameters = f.cache_parameters()
    assert parameters["ttl_l1"] == 30 and parameters["ttl_l2"] is None
    assert "signing_key" not in parameters and "redis_url" not in parameters
    assert "secret" not in repr(parameters)


@pytest.mark.parametrize("option", ["ttl_l1", "ttl_l2", "stale_ttl"])
def test_a_lifetime_redis_cannot_hold_is_refused_at_decoration(option: str) -> None:
    """1e16 s overflowed the envelope's deadline: every call raised struct.error."""
    with pytest.raises(ValueError, match=rf"tiered_cache\(\): {option} must be at most"):
        tiered_cache(**{option: 1e16})


def test_a_ttl_function_asking_for_ever_keeps_for_the_longest_lifetime_there_is(fake_l2: object) -> None:
    lookup = tiered_cache(ttl_l1=None, ttl_l2=lambda result: 1e300, name="arguments.forever")(lambda key: key)
    assert lookup("k") == "k" and lookup("k") == "k"
    assert lookup.cache_stats().l2_hits == 1
