"""The per-function fast path: a generated wrapper with the cached function's own signature.

CPython binds each call's arguments in C (defaults, keywords, positional-only) as for any call,
so the wrapper starts with its parameters in place: no ``inspect.Signature.bind`` per call. When
every key value is of an exact type (str, int, bytes, None) their tuple is the L1 key as it is,
and an L1 hit costs a dict lookup, a ``move_to_end`` (the LRU bump), one clock read and one
countdown tick; anything else goes to the slow path, which builds a canonical key.
"""

from __future__ import annotations

import inspect
import keyword
import linecache
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from tiercache._core.stats import StatsRecorder
from tiercache._decorator.keys import EXACT_TYPES, shallow_key
from tiercache._l1.lru import MISSING, LocalCache

__all__ = ["EXACT_WARMUP", "SAMPLE_EVERY", "EntryPoints", "FastPath", "SampledLookup", "generate"]

_P = inspect.Parameter

#: Calls timed one by one before sampling starts, so small call counts report exact latency.
EXACT_WARMUP: Final = 1024
#: Past warm-up, one fast-path hit in this many is timed, standing for the others: timing and
#: keeping the sample cost well under 1 µs, a few ns per hit on average.
SAMPLE_EVERY: Final = 128


class SampledLookup:
    """The fast path's timed call: one L1 look-up in each sampling window (see StatsRecorder)."""

    def __init__(self, local: LocalCache, stats: StatsRecorder) -> None:
        self._local = local
        self._stats = stats
        self._window = 1
        #: The generated wrapper's: how many untimed hits until the next sampled one.
        self.refill: Callable[[int], None] = lambda n: None

    def lookup(self, l1_key: Hashable) -> Any:
        """Answer the sampled call from L1 if it can, timing it; else MISSING.

        The sampled call closes its window: a hit is recorded with the window's weight, standing
        for the window's untimed hits; a miss leaves it to the slow path, recorded alone.
        """
        weight = self._window
        if weight == 1 and self._stats.ticks() >= EXACT_WARMUP:
            self._window = SAMPLE_EVERY
        self.refill(self._window)
        started = time.perf_counter_ns()
        value, _ = self._local.lookup(l1_key)  # (a stale entry stays for the slow path)
        if value is not MISSING:
            self._stats.sampled_hit(time.perf_counter_ns() - started, weight)
        return value


@dataclass(frozen=True)
class EntryPoints:
    """Where the wrapper hands a call over: after an L1 miss, or always; and its sampled look-up.

    ``sample`` times an L1 look-up (MISSING on a miss). ``miss`` and ``slow`` return the call's
    flow, which the wrapper hands to ``run`` itself: a recursive cached function then costs three
    frames per level (the wrapper, ``run`` and the function), not one more for a hand-off helper.
    ``canonical`` is ``slow`` for a wrapper that already found the key neither exact nor shallow:
    it goes straight to the canonical encoding. ``keyed`` is ``miss`` for a function without L1:
    the wrapper built the key, and no look-up ticked.
    """

    run: Callable[..., Any]
    miss: Callable[..., Any]
    sample: Callable[..., Any]
    slow: Callable[..., Any]
    canonical: Callable[..., Any]
    keyed: Callable[..., Any]


@dataclass(frozen=True)
class FastPath:
    """The generated functions of one cached function."""

    wrapper: Callable[..., Any]
    bind: Callable[..., tuple[Any, ...]]
    ticks: Callable[[], int]
    refill: Callable[[int], None]


def _mangle_for(names: set[str]) -> str:
    mangle = "_tc_"
    while any(name.startswith(mangle) for name in names):
        mangle = "_" + mangle
    return mangle


@dataclass
class _Calling:
    """How the generated functions take and pass on the cached function's arguments."""

    params: list[inspect.Parameter]
    mangle: str  # starts every name of ours in the generated source, clear of the parameters'
    namespace: dict[str, Any]  # the generated module's globals: builtins we use, defaults
    positional: list[str]  # expressions passed positionally, in order
    keywords: list[tuple[str, str]]  # (name, expression); name "" for **kwargs

    @classmethod
    def of(cls, signature: inspect.Signature) -> _Calling:
        params = list(signature.parameters.values())
        p = _mangle_for({param.name for param in params})
        namespace: dict[str, Any] = {
            f"{p}type": type,
            f"{p}str": str,
            f"{p}int": int,
            f"{p}bytes": bytes,
            f"{p}KeyError": KeyError,
            f"{p}MISSING": MISSING,
            f"{p}shallow": shallow_key,
        }
        positional: list[str] = []
        keywords: list[tuple[str, str]] = []
        for index, param in enumerate(params):
            if param.default is not _P.empty:
                namespace[f"{p}d{index}"] = param.default
            if param.kind is _P.VAR_POSITIONAL:
                positional.append(f"*{param.name}")
            elif param.kind is _P.VAR_KEYWORD:
                keywords.append(("", f"**{param.name}"))
            elif param.kind is _P.KEYWORD_ONLY:
                keywords.append((param.name, param.name))
            else:
                positional.append(param.name)
        return cls(params, p, namespace, positional, keywords)

    @property
    def handoff(self) -> str:
        """The ``args, kwargs`` the slow path calls the function with."""
        pos = "(" + "".join(f"{expr}, " for expr in self.positional) + ")"
        if not self.keywords:
            return f"{pos}, None"
        return f"{pos}, {{" + ", ".join(f"{n!r}: {e}" if n else e for n, e in self.keywords) + "}"

    @property
    def arguments(self) -> str:
        """The arguments as a call passes them on (to a key function)."""
        return ", ".join([*self.positional, *(f"{n}={e}" if n else e for n, e in self.keywords)])


def generate(
    function: Callable[..., Any],
    signature: inspect.Signature,
    *,
    label: str,
    key_names: tuple[str, ...],
    key_function: Callable[..., Any] | None,
    is_async: bool,
    local: LocalCache | None,
    entry: EntryPoints,
    copier: Callable[[Any], Any] | None = None,
) -> FastPath:
    """Compile the wrapper, the key binder and the countdown accessors for ``function``.

    The key is ``key_names`` (parameters, in order) or, when given, ``key_function``'s result.
    ``copier`` (``copy=``) makes each L1 hit return a copy
    (the slow path's ``run`` copies what it returns itself).
    """
    calling = _Calling.of(signature)
    p = calling.mangle
    if key_function is not None:
        calling.namespace[f"{p}key"] = key_function
        setup, values = [f"{p}kv = {p}key({calling.arguments})"], [f"{p}kv"]
    else:
        setup, values = [], list(key_names)
    if copier is not None:
        calling.namespace[f"{p}copy"] = copier
    by_name = {param.name: param for param in calling.params}
    variadic = any(by_name[v].kind in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD) for v in values if v in by_name)
    keyable = not variadic
    fast = local is not None and local.max_entries > 0 and keyable
    body = _wrapper_body(
        calling,
        setup,
        values,
        fast=fast,
        keyed=keyable and not fast,
        is_async=is_async,
        copies=copier is not None,
    )
    own_name = getattr(function, "__name__", "")
    name = own_name if _usable_name(own_name, by_name) else f"{p}wrapper"
    source = _source(calling, name, body, setup, values, is_async=is_async)
    # Named after the function and kept in linecache, so tracebacks show the generated lines.
    filename = f"<tiercache fast path of {label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), calling.namespace)  # noqa: S102 - our own generated source
    data = local.data if local is not None else OrderedDict()
    clock = local.clock if local is not None else float
    wrapper, bind, ticks, refill = calling.namespace[f"{p}factory"](
        data.get,
        data.move_to_end,
        clock,
        EXACT_TYPES,
        entry.run,
        entry.miss if fast else entry.keyed,
        entry.sample,
        entry.canonical if keyable else entry.slow,
    )
    return FastPath(wrapper, bind, ticks, refill)


def _key_values(values: list[str]) -> str:
    return "(" + "".join(f"{v}, " for v in values) + ")"


def _wrapper_body(
    calling: _Calling,
    setup: list[str],
    values: list[str],
    *,
    fast: bool,
    keyed: bool,
    is_async: bool,
    copies: bool = False,
) -> list[str]:
    """Return the wrapper's lines: L1 lookup (with countdown), else a hand-off to the slow path."""
    p = calling.mangle
    by_name = {param.name: param for param in calling.params}
    wait = "await " if is_async else ""
    handoff = f"{_key_values(values)}, {calling.handoff}"
    condition = " and ".join(_exact_check(v, by_name.get(v), p) for v in values) or "True"
    raw_key = values[0] if len(values) == 1 else _key_values(values)
    # The LRU bump is one atomic move_to_end: a drop that lands after our read stands (the key
    # is gone, move_to_end says so), where a pop and re-insert would bring the entry back.
    lookup = [
        f"{p}e = {p}get({p}k)",
        f"if {p}e is not None and {p}e[1] > {p}clock():",
        "    try:",
        f"        {p}touch({p}k)",
        f"    except {p}KeyError:",
        "        pass",
        f"    return {p}copy({p}e[0])" if copies else f"    return {p}e[0]",
    ]
    run_miss = f"return {wait}{p}run({p}miss({p}k, {handoff}))"
    if fast:
        # The sampled call only times its L1 look-up: on a miss it falls through to the same
        # hand-off as the others (one frame fewer per level for a recursive function).
        found = [f"return {p}copy({p}e)" if copies else f"return {p}e"]
        hit = [f"{p}left -= 1", f"if {p}left:", *(f"    {line}" for line in lookup)]
        hit += [
            "else:",
            f"    {p}e = {p}sample({p}k)",
            f"    if {p}e is not {p}MISSING:",
            *(f"        {x}" for x in found),
        ]
        hit += [run_miss]
    body = list(setup)
    if fast:
        body = [f"nonlocal {p}left", *setup]
        body += [f"if {condition}:", f"    {p}k = {raw_key}", *(f"    {line}" for line in hit)]
        # Flat containers of exact types (a dict argument, say) key as they are, typed: see
        # shallow_key. Hashing them costs far less than encoding them.
        body += [f"{p}k = {p}shallow({_key_values(values)})", f"if {p}k is not None:"]
        body += [f"    {line}" for line in hit]
    elif keyed:
        # No L1 to look in, but the key is built here as the fast path builds it, sparing the
        # slow path's search for it (the same L1 key: it names the call's flight and Redis key).
        keyed_run = f"return {wait}{p}run({p}miss({p}k, {handoff}))"
        body += [f"if {condition}:", f"    {p}k = {raw_key}", f"    {keyed_run}"]
        body += [f"{p}k = {p}shallow({_key_values(values)})", f"if {p}k is not None:", f"    {keyed_run}"]
    body.append(f"return {wait}{p}run({p}slow({handoff}))")
    return body


def _source(
    calling: _Calling, name: str, body: list[str], setup: list[str], values: list[str], *, is_async: bool
) -> str:
    """Return the module source: a factory making the wrapper, the key binder and the countdown."""
    p = calling.mangle
    parameters = ", ".join(_render(calling.params, p))
    return "\n".join(
        [
            f"def {p}factory({p}get, {p}touch, {p}clock, {p}exact, {p}run, {p}miss, {p}sample, {p}slow):",
            f"    {p}left = 1",
            f"    {p}added = 1",
            f"    {'async ' if is_async else ''}def {name}({parameters}):",
            *(f"        {line}" for line in body),
            f"    def {p}bind({parameters}):",
            *(f"        {line}" for line in setup),
            f"        return {_key_values(values)}",
            f"    def {p}ticks():",
            f"        return {p}added - {p}left",
            f"    def {p}refill(n):",
            f"        nonlocal {p}added, {p}left",
            f"        {p}added += n",
            f"        {p}left += n",
            f"    return {name}, {p}bind, {p}ticks, {p}refill",
            "",
        ]
    )


_HINTS = {str: "str", "str": "str", int: "int", "int": "int", bytes: "bytes", "bytes": "bytes"}


def _exact_check(value: str, param: inspect.Parameter | None, p: str) -> str:
    # Builtins go by prefixed names: a parameter may well be called ``type`` or ``str``.
    check = f"{p}type({value}) in {p}exact"
    # An exact-type annotation is only a hint to test that type first; the set test still decides.
    hint = (
        _HINTS.get(param.annotation)
        if param is not None and isinstance(param.annotation, (type, str))
        else None
    )
    return f"({p}type({value}) is {p}{hint} or {check})" if hint else check


def _render(params: list[inspect.Parameter], p: str) -> list[str]:
    """Render the parameter list, with ``/`` and a bare ``*`` where the signature has them."""
    out: list[str] = []
    kinds = [param.kind for param in params]
    for index, param in enumerate(params):
        if param.kind is _P.KEYWORD_ONLY and _P.VAR_POSITIONAL not in kinds and "*" not in out:
            out.append("*")
        star = "*" if param.kind is _P.VAR_POSITIONAL else "**" if param.kind is _P.VAR_KEYWORD else ""
        default = f"={p}d{index}" if param.default is not _P.empty else ""
        out.append(f"{star}{param.name}{default}")
        last_positional_only = param.kind is _P.POSITIONAL_ONLY and (
            index + 1 == len(params) or kinds[index + 1] is not _P.POSITIONAL_ONLY
        )
        if last_positional_only:
            out.append("/")
    return out


def _usable_name(name: str, parameters: dict[str, inspect.Parameter]) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and name not in parameters
