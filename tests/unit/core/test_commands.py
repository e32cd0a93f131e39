"""Each L2 command is one ``Command``: its maker, and the two stores' methods of its name, agree."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tiercache._core import ops
from tiercache._l2.stores import AsyncStore, SyncStore


def _all_parameters(function: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)[1:]  # (less self)


@pytest.mark.parametrize("kind", ops.KINDS, ids=lambda kind: kind.method)
def test_both_stores_take_what_the_command_carries(kind: ops.Kind) -> None:
    sync, coroutine = getattr(SyncStore, kind.method), getattr(AsyncStore, kind.method)
    assert _all_parameters(sync) == _all_parameters(coroutine) == kind.params
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(coroutine)


@pytest.mark.parametrize("kind", ops.KINDS, ids=lambda kind: kind.method)
def test_each_command_is_made_by_the_function_of_its_name(kind: ops.Kind) -> None:
    maker = getattr(ops, kind.method)
    made = tuple(inspect.signature(maker).parameters)
    assert made[0] == "endpoint" and made[-1] == "owner"
    assert made[1:-1] == kind.params


class _Recorder:
    """A store that records which method a command called, with what."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: (name, args)


@pytest.mark.parametrize("kind", ops.KINDS, ids=lambda kind: kind.method)
def test_a_command_calls_its_store_method_with_its_arguments_by_name(kind: ops.Kind) -> None:
    arguments = {name: f"<{name}>" for name in kind.params}
    keyword_only = {
        name
        for name, p in inspect.signature(getattr(ops, kind.method)).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    positional = [value for name, value in arguments.items() if name not in keyword_only]
    keywords = {name: value for name, value in arguments.items() if name in keyword_only}
    command = getattr(ops, kind.method)(object(), *positional, **keywords)
    assert command.kind is kind
    assert command.perform(_Recorder()) == (kind.method, tuple(arguments.values()))
    assert all(command.arg(name) == value for name, value in arguments.items())


def test_every_kind_is_listed_and_no_two_share_a_method() -> None:
    listed = {kind.method for kind in ops.KINDS}
    defined = {value.method for value in vars(ops).values() if isinstance(value, ops.Kind)}
    assert listed == defined and len(listed) == len(ops.KINDS)


def test_the_keys_a_command_touches_include_the_generation_and_the_tags() -> None:
    endpoint: Any = object()
    tagged = ops.read_tagged(endpoint, "k", "gen", ("t1", "t2"))
    assert tagged.keys == ("k",) and set(tagged.names()) == {"k", "gen", "t1", "t2"}
    assert ops.read(endpoint, "k", None).names() == ("k",)
    assert set(ops.write_many(endpoint, (("a", b"", 1), ("b", b"", 1)), None, "gen").names()) == {
        "a",
        "b",
        "gen",
    }
    assert ops.raise_generation(endpoint, "gen", 0, 1).keys == ()
    assert ops.raise_generation(endpoint, "gen", 0, 1).names() == ("gen",)
