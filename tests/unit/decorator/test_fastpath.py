"""The generated wrapper: same signature as the function, every call spelling one entry,
and the sampled accounting exact."""

from __future__ import annotations

import asyncio
import functools
import inspect
import traceback
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiercache import tiered_cache
from tiercache._decorator.fastpath import EXACT_WARMUP, SAMPLE_EVERY


def rich(
    a: int, b: str = "x", /, c: int = 3, *args: int, d: str, e: int = 5, **kwargs: int
) -> tuple[Any, ...]:
    """Every kind of parameter there is."""
    return (a, b, c, args, d, e, kwargs)


def test_wrapper_has_the_functions_signature_name_doc_and_wrapped() -> None:
    cached = tiered_cache(ttl_l2=None)(rich)
    assert inspect.signature(cached) == inspect.signature(rich)
    assert (cached.__name__, cached.__qualname__, cached.__doc__) == (
        rich.__name__,
        rich.__qualname__,
        rich.__doc__,
    )
    assert cached.__wrapped__ is rich
    assert cached.__module__ == rich.__module__


@given(
    a=st.integers(0, 3),
    b=st.sampled_from(["x", "y"]),
    c=st.integers(2, 4),
    extra=st.lists(st.integers(0, 2), max_size=2),
    d=st.sampled_from(["p", "q"]),
    e=st.integers(4, 6),
    kw=st.dictionaries(st.sampled_from(["k", "m"]), st.integers(0, 2), max_size=2),
)
def test_every_spelling_of_a_call_returns_what_the_function_returns(
    a: int, b: str, c: int, extra: list[int], d: str, e: int, kw: dict[str, int]
) -> None:
    cached = tiered_cache(ttl_l2=None)(rich)
    expected = rich(a, b, c, *extra, d=d, e=e, **kw)
    assert cached(a, b, c, *extra, d=d, e=e, **kw) == expected
    assert cached(a, b, c, *extra, d=d, e=e, **kw) == expected
    if not extra:
        assert cached(a, b, c=c, d=d, e=e, **kw) == expected
    if not extra and (b, c, e) == ("x", 3, 5):
        assert cached(a, d=d, **kw) == expected
    assert cached.cache_stats().misses == 1


def test_defaults_are_the_functions_own_objects() -> None:
    sentinel: list[int] = []

    def f(x: int, into: list[int] = sentinel) -> int:
        into.append(x)
        return len(into)

    cached = tiered_cache(ttl_l2=None, ignore="into")(f)
    assert cached(1) == 1
    assert sentinel == [1]
    assert inspect.signature(cached).parameters["into"].default is sentinel


def test_parameter_names_that_look_like_ours_still_work() -> None:
    @tiered_cache(ttl_l2=None)
    def f(_tc_data: int, _tc_k: int = 2, __tc_left: int = 3) -> int:
        return _tc_data + _tc_k + __tc_left

    assert f(1) == f(1) == 6
    assert f(1, _tc_k=5) == 9


def test_parameters_named_like_builtins() -> None:
    @tiered_cache(ttl_l2=None)
    def lookup(type: str, str: int, int: bytes = b"") -> tuple[object, ...]:
        return (type, str, int)

    assert lookup("adapter", 1) == lookup("adapter", 1) == ("adapter", 1, b"")
    assert lookup.cache_stats().l1_hits == 1


def test_lambdas_and_partials() -> None:
    square = tiered_cache(ttl_l2=None)(lambda x: x * x)
    assert square(3) == square(3) == 9
    partial = functools.partial(pow, 2)
    with pytest.raises(TypeError, match="pass name="):
        tiered_cache(ttl_l2=None)(partial)
    cached = tiered_cache(ttl_l2=None, name="math.power_of_two")(partial)
    assert cached(10) == cached(10) == 1024


def test_zero_argument_functions_have_one_entry() -> None:
    runs: list[int] = []

    @tiered_cache(ttl_l2=None)
    def config() -> dict[str, int]:
        runs.append(1)
        return {"n": len(runs)}

    assert config() == config() == {"n": 1}


def test_binding_errors_read_like_the_functions_own() -> None:
    @tiered_cache(ttl_l2=None)
    def resolve_adapter(category: str, name: str) -> None:
        return None

    with pytest.raises(
        TypeError, match=r"resolve_adapter\(\) missing 1 required positional argument: 'name'"
    ):
        resolve_adapter("storage")  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"resolve_adapter\(\) missing 1 required positional argument: 'name'"
    ):
        resolve_adapter.cache_key("storage")  # type: ignore[call-arg]


def test_exceptions_keep_the_functions_traceback() -> None:
    @tiered_cache(ttl_l2=None)
    def explode(x: int) -> None:
        raise RuntimeError(f"boom {x}")

    with pytest.raises(RuntimeError) as caught:
        explode(1)
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[-1].name == "explode" and frames[-1].line == 'raise RuntimeError(f"boom {x}")'
    assert any("tiercache fast path of" in frame.filename for frame in frames)


def test_generator_functions_are_refused() -> None:
    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        tiered_cache(numbers)


def test_bare_decorator_uses_the_defaults() -> None:
    @tiered_cache
    def f(x: int) -> int:
        return x

    assert f.cache_parameters()["ttl_l1"] == 600 and f.cache_parameters()["ttl_l2"] == 86400


@pytest.mark.parametrize("is_async", [False, True])
def test_sampled_accounting_stays_exact_past_warm_up(is_async: bool) -> None:
    """After warm-up only one hit in SAMPLE_EVERY is timed; the counts stay exact."""
    calls = EXACT_WARMUP + 10 * SAMPLE_EVERY + 7
    if is_async:

        @tiered_cache(ttl_l2=None)
        async def g(x: str) -> str:
            return x

        async def run() -> None:
            for i in range(calls):
                await g("k" if i % 5 else f"k{i}")

        asyncio.run(run())
        stats = g.cache_stats()
    else:

        @tiered_cache(ttl_l2=None)
        def f(x: str) -> str:
            return x

        for i in range(calls):
            f("k" if i % 5 else f"k{i}")
        stats = f.cache_stats()
    distinct = len({"k" if i % 5 else f"k{i}" for i in range(calls)})
    assert stats.calls == calls
    assert stats.misses == distinct
    assert stats.l1_hits == calls - distinct
    assert stats.avg_latency_ms > 0 and stats.p50_ms > 0


def test_sampled_hit_latency_is_weighted_to_stand_for_its_window() -> None:
    @tiered_cache(ttl_l2=None)
    def f(x: str) -> str:
        return x

    for _ in range(EXACT_WARMUP + 100 * SAMPLE_EVERY):
        f("k")
    calls = f.cache_stats().calls  # a snapshot folds the pending samples in
    recorder = f.__tiercache__.stats  # type: ignore[attr-defined]
    # The histogram's total weight approximates the number of calls it describes.
    assert recorder._latency.total_weight == pytest.approx(calls, rel=0.02)


_ARGUMENTS = st.recursive(
    st.one_of(
        st.integers(), st.text(max_size=5), st.floats(allow_nan=False), st.binary(max_size=5), st.none()
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=6,
)


@given(a=_ARGUMENTS, b=_ARGUMENTS)
def test_an_l1_less_wrapper_keys_a_call_as_the_slow_path_would(a: Any, b: Any) -> None:
    """Without L1 the wrapper builds the call's key itself: the same key keys.l1_key() gives."""
    from tiercache._decorator import flow  # noqa: PLC0415 - patched before decorating

    seen: list[Any] = []
    real_serve = flow.serve

    def spy(cache: Any, call: Any) -> Any:
        seen.append((cache, call))
        return real_serve(cache, call)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flow, "serve", spy)

        @tiered_cache(ttl_l1=None, ttl_l2=60, enabled=False)
        def f(a: Any, b: Any = None) -> str:
            return "ran"

    assert f(a, b=b) == "ran"
    ((cache, call),) = seen
    assert call.key_values == (a, b)
    assert call.l1_key == cache.keys.l1_key((a, b))[0]
