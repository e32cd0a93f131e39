"""Spans for L2 operations and for computations on a miss, for applications that trace.

tiercache uses the OpenTelemetry API as a library should: its spans go to the application's
tracer provider (the global one, unless ``tiercache.metrics.otel.trace()`` named another), and
while that is the API's default, a no-op, none are made at all. Nothing here imports
OpenTelemetry: a process that never imported it cannot have set a provider. L1 hits never
come here, so they cost the same traced or not.

Every span says which cached function (``tiercache.function``) and what happened in the tier
(``tiercache.outcome``), and names the entry by the digest other processes' announcements use
(``tiercache.key_digest``, keyed when values are signed): never by the call's arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from tiercache._core.ops import Command, Compute, Overran

__all__ = ["choose_provider", "compute_span", "l2_span", "tracer"]

_chosen: Any = None  # a provider named by trace(); None: the global one
_known: tuple[Any, Any] = (None, None)  # (provider, its tracer for us)


def choose_provider(provider: Any) -> None:
    """Send spans to ``provider`` from now on (None: to the global tracer provider)."""
    global _chosen
    _chosen = provider


def tracer() -> Any:
    """Return the tracer to make spans with, or None while the application does not trace."""
    provider = _chosen
    if provider is None:
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return None
        # The provider set_tracer_provider() set, read as the API keeps it: asking
        # get_tracer_provider() costs a microsecond per L2 operation in a process that does not
        # trace (it reads the environment each time), a hundred times this.
        provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
        if provider is _UNKNOWN:  # (an API that keeps it elsewhere: ask it)
            provider = trace.get_tracer_provider()
        if provider is None or isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
    return _tracer_of(provider)


_UNKNOWN: Any = object()


def _tracer_of(provider: Any) -> Any:
    global _known
    known, found = _known
    if known is not provider:
        found = provider.get_tracer("tiercache", _version())
        _known = (provider, found)
    return found


def _version() -> str | None:
    try:
        return metadata.version("tiercache")
    except metadata.PackageNotFoundError:  # (run from a source tree)
        return None


@contextmanager
def l2_span(found: Any, op: Command) -> Iterator[Callable[[Any], Any]]:
    """Make the span of ``op``; yield what to pass its reply through, to record the outcome."""
    from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: PLC0415 - only once tracing

    operation = op.kind.span
    # Not made the current span: nothing runs inside an L2 operation, and attaching it to the
    # context would cost a third again of the span itself.
    span = found.start_span(f"tiercache.l2.{operation}", kind=SpanKind.CLIENT)
    span.set_attribute("tiercache.operation", operation)
    span.set_attribute("tiercache.endpoint", op.endpoint.name)
    owner = op.owner
    if owner is not None:
        span.set_attribute("tiercache.function", owner.label)
    keys = op.keys
    if len(keys) != 1:
        span.set_attribute("tiercache.keys", len(keys))
    elif owner is not None:
        span.set_attribute("tiercache.key_digest", owner.coherence.digest_for(keys[0]))

    def record(reply: Any) -> Any:
        span.set_attribute("tiercache.outcome", op.kind.outcome(op, reply))
        return reply

    try:
        yield record
    except BaseException as exc:
        span.set_attribute("tiercache.outcome", "error")
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


@contextmanager
def compute_span(found: Any, op: Compute) -> Iterator[None]:
    """Make the span of a computation on a miss; the function's own spans go inside it."""
    with found.start_as_current_span("tiercache.compute") as span:
        owner = op.owner
        if owner is not None:
            span.set_attribute("tiercache.function", owner.label)
            redis_key = getattr(op.call, "redis_key", None)
            if redis_key is not None:
                span.set_attribute("tiercache.key_digest", owner.coherence.digest_for(redis_key))
        try:
            yield
        except BaseException as exc:
            span.set_attribute("tiercache.outcome", "overran" if isinstance(exc, Overran) else "error")
            raise
        span.set_attribute("tiercache.outcome", "computed")
