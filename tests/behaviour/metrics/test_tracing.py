"""OpenTelemetry spans: one per L2 operation and per computation on a miss, none on an L1 hit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._core import tracing
from tiercache._tools.redis_process import RedisProcess
from tiercache.metrics.otel import trace

SECRET = "alice@example.com"  # noqa: S105 - an argument no span may carry


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A tracer provider of the test's own, given to tiercache (the global one can be set once)."""
    provider = TracerProvider()
    trace(provider)
    yield provider
    trace(None)
    provider.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def named(exporter: InMemorySpanExporter) -> list[tuple[str, str | None]]:
    return [(span.name, attributes(span).get("tiercache.outcome")) for span in exporter.get_finished_spans()]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_miss_then_an_l1_hit(real_l2: str, spans: InMemorySpanExporter) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60, name="tracing.lookup")
    def lookup(email: str) -> str:
        return email.upper()

    assert lookup(SECRET) == SECRET.upper()
    # The L2 read (with the generation), the computation, the L2 write.
    assert named(spans) == [
        ("tiercache.l2.read", "miss"),
        ("tiercache.compute", "computed"),
        ("tiercache.l2.write", "stored"),
    ]
    spans.clear()
    assert lookup(SECRET) == SECRET.upper()
    assert named(spans) == []  # an L1 hit makes no span
    digest = lookup.cache_key(SECRET)[-32:]
    lookup.__tiercache__.coherence.drop_local(None)  # (as if another process had cached it)
    lookup(SECRET)
    [read] = spans.get_finished_spans()
    assert (read.name, read.kind) == ("tiercache.l2.read", SpanKind.CLIENT)
    assert attributes(read) == {
        "tiercache.operation": "read",
        "tiercache.endpoint": real_l2,
        "tiercache.function": "tracing.lookup",
        "tiercache.key_digest": digest,
        "tiercache.outcome": "hit",
    }


def test_no_span_carries_the_arguments(real_l2: str, spans: InMemorySpanExporter) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60, tags=lambda email: [f"user:{email}"], lock=True)
    def lookup(email: str) -> str:
        return email

    lookup(SECRET)
    lookup.cache_invalidate(SECRET)
    lookup.cache_clear()
    cache = MultiTierCache(MultiTierCacheSettings(l2_url=real_l2))
    cache.set(SECRET, 1)
    cache.get(SECRET)
    cache.close()
    found = spans.get_finished_spans()
    kinds = {attributes(span)["tiercache.operation"] for span in found if span.kind is SpanKind.CLIENT}
    assert kinds >= {"read", "claim_tags", "lock", "write", "unlock", "invalidate", "clear", "write_many"}
    for span in found:
        assert SECRET not in repr(attributes(span)) and SECRET not in span.name


def test_the_functions_own_spans_nest_in_its_computation(
    real_l2: str, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    inner = provider.get_tracer("app")

    @tiered_cache(ttl_l1=60, ttl_l2=60, name="tracing.nested")
    def lookup(key: str) -> str:
        with inner.start_as_current_span("app.query"):
            return key

    with inner.start_as_current_span("app.request") as request:
        lookup("k")
    by_name = {span.name: span for span in spans.get_finished_spans()}
    computed, query = by_name["tiercache.compute"], by_name["app.query"]
    assert query.parent is not None and query.parent.span_id == computed.context.span_id
    # Ours are the request's children too: they go where the caller's trace goes.
    assert computed.parent is not None and computed.parent.span_id == request.get_span_context().span_id


def test_a_failing_computation_is_an_error_span(real_l2: str, spans: InMemorySpanExporter) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60)
    def broken(key: str) -> str:
        raise LookupError(key)

    with pytest.raises(LookupError):
        broken("k")
    [computed] = [span for span in spans.get_finished_spans() if span.name == "tiercache.compute"]
    assert attributes(computed)["tiercache.outcome"] == "error"
    assert computed.status.status_code is StatusCode.ERROR


@pytest.mark.asyncio
async def test_async_calls_make_the_same_spans(real_l2: str, spans: InMemorySpanExporter) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=60)
    async def lookup(key: str) -> str:
        return key

    await lookup("k")
    await lookup("k")
    assert named(spans) == [
        ("tiercache.l2.read", "miss"),
        ("tiercache.compute", "computed"),
        ("tiercache.l2.write", "stored"),
    ]


@pytest.mark.slow
def test_an_unreachable_redis_makes_error_spans(tmp_path: Any, spans: InMemorySpanExporter) -> None:
    server = RedisProcess(tmp_path).start()

    @tiered_cache(ttl_l1=60, ttl_l2=60, redis_url=server.url)
    def lookup(key: str) -> str:
        return key

    lookup("a")
    server.stop()
    spans.clear()
    lookup("b")
    outcomes = named(spans)
    assert outcomes[0] == ("tiercache.l2.read", "error")
    assert ("tiercache.compute", "computed") in outcomes


def test_off_until_a_provider_is_set() -> None:
    """While the global provider is the API's default, no tracer is even asked for."""
    assert isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)
    assert tracing.tracer() is None


def run(code: str, redis_server: RedisProcess) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code), redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_opentelemetry_installed_nothing_changes(redis_server: RedisProcess) -> None:
    out = run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # (as if not installed: importing it fails)
        import tiercache
        tiercache.configure(redis_url=sys.argv[1])
        @tiercache.tiered_cache(ttl_l1=60, ttl_l2=60)
        def f(x):
            return x
        f(1); f(1)
        loaded = [name for name in sys.modules if name.startswith("opentelemetry.")]
        print(f(1), f.cache_stats().l1_hits, loaded)
        tiercache.close()
        """,
        redis_server,
    )
    assert out.strip() == "1 2 []"


def test_the_global_provider_is_followed_without_asking(redis_server: RedisProcess) -> None:
    out = run(
        """
        import sys, uuid, tiercache
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        tiercache.configure(redis_url=sys.argv[1], namespace=uuid.uuid4().hex)
        @tiercache.tiered_cache(ttl_l1=60, ttl_l2=60)
        def f(x):
            return x
        f(1)  # before the application traces: no span
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        f(2)
        print(",".join(span.name for span in exporter.get_finished_spans()))
        tiercache.close()
        """,
        redis_server,
    )
    assert out.strip() == "tiercache.l2.read,tiercache.compute,tiercache.l2.write"


def test_a_wrong_provider_is_refused() -> None:
    with pytest.raises(TypeError, match=r"trace\(\): tracer_provider must be an opentelemetry Tracer"):
        trace("jaeger")  # type: ignore[arg-type]
