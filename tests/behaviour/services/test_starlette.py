"""FastAPI and Starlette: a cached session lookup behind endpoints, with the framework's test client."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import tiercache
from tests.support.leftovers import connections_to, tiercache_threads
from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess
from tiercache.contrib.starlette import caching, lifespan
from tiercache.metrics.prometheus import TiercacheCollector


def connections(server: RedisProcess) -> set[int]:
    return connections_to(server.port)


@pytest.fixture
def quiet(redis_server: RedisProcess) -> set[int]:
    """Close what earlier tests left open; return this process's connections before the app runs."""
    tiercache.close()
    return connections(redis_server)


def session_app(redis_url: str, namespace: str, name: str) -> tuple[FastAPI, dict[str, Any], list[str]]:
    """A FastAPI app over a cached session lookup called ``name`` (each test its own: stats by name)."""
    sessions: dict[str, Any] = {"s1": {"user": "ada"}, "s2": {"user": "grace"}}
    lookups: list[str] = []

    @tiered_cache(ttl_l1=60, ttl_l2=300, name=name)
    async def get_session(session_id: str) -> dict[str, Any] | None:
        lookups.append(session_id)  # the slow lookup (a database, say)
        return sessions.get(session_id)

    registry = CollectorRegistry()
    registry.register(TiercacheCollector())
    app = FastAPI(lifespan=lifespan(redis_url=redis_url, namespace=namespace))
    app.mount("/metrics", make_asgi_app(registry=registry))

    @app.get("/sessions/{session_id}")
    async def read_session(session_id: str) -> dict[str, Any]:
        session = await get_session(session_id)
        if session is None:
            raise HTTPException(status_code=404)
        return session

    @app.post("/sessions/{session_id}/logout")
    async def logout(session_id: str) -> dict[str, bool]:
        sessions.pop(session_id, None)
        await get_session.cache_invalidate(session_id)
        return {"ok": True}

    @app.get("/cache/stats")
    def cache_stats() -> dict[str, Any]:
        return {name: stats.as_dict() for name, stats in tiercache.stats().items()}

    return app, sessions, lookups


def test_a_cached_session_lookup_behind_fastapi(
    redis_server: RedisProcess, isolated_settings: str, quiet: set[int]
) -> None:
    app, _, lookups = session_app(redis_server.url, isolated_settings, "app.get_session")
    with TestClient(app) as client:
        assert client.get("/sessions/s1").json() == {"user": "ada"}
        assert client.get("/sessions/s1").json() == {"user": "ada"}
        assert lookups == ["s1"]  # the second request was an L1 hit
        stats = client.get("/cache/stats").json()["app.get_session"]
        assert (stats["calls"], stats["l1_hits"], stats["misses"]) == (2, 1, 1)
        exported = client.get("/metrics/").text
        assert 'tiercache_calls_total{function="app.get_session"} 2.0' in exported
        assert client.post("/sessions/s1/logout").json() == {"ok": True}
        assert client.get("/sessions/s1").status_code == 404  # invalidated: not served stale
        assert lookups == ["s1", "s1"]
        assert connections(redis_server) - quiet  # the app's own
    # Shut down: the lifespan closed tiercache, on the app's own event loop.
    assert tiercache_threads() == []
    assert connections(redis_server) <= quiet


def test_the_app_can_start_again_after_shutting_down(
    redis_server: RedisProcess, isolated_settings: str, quiet: set[int]
) -> None:
    """As a test suite does, one TestClient after another: the second startup reopens."""
    app, _, lookups = session_app(redis_server.url, isolated_settings, "app.get_session_again")
    with TestClient(app) as client:
        assert client.get("/sessions/s2").json() == {"user": "grace"}
    assert tiercache_threads() == []
    with TestClient(app) as client:
        assert client.get("/sessions/s2").json() == {"user": "grace"}
        stats = client.get("/cache/stats").json()["app.get_session_again"]
        assert stats["l2_hits"] == 1, stats  # L1 was flushed at shutdown; Redis still had it
    assert lookups == ["s2"]
    assert tiercache_threads() == [] and connections(redis_server) <= quiet


def test_a_starlette_lifespan_of_its_own_can_nest_caching(
    redis_server: RedisProcess, isolated_settings: str, quiet: set[int]
) -> None:
    @tiered_cache(ttl_l1=60, ttl_l2=300, name="app.resolve_adapter")
    async def resolve_adapter(category: str, name: str) -> str:
        return f"{category}/{name}"

    started: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> Any:
        async with caching(redis_url=redis_server.url, namespace=isolated_settings):
            started.append("up")
            yield

    async def resolve(request: Request) -> JSONResponse:
        params = request.path_params
        return JSONResponse({"adapter": await resolve_adapter(params["category"], params["name"])})

    app = Starlette(routes=[Route("/adapters/{category}/{name}", resolve)], lifespan=app_lifespan)
    with TestClient(app) as client:
        assert client.get("/adapters/llm/openai").json() == {"adapter": "llm/openai"}
        assert client.get("/adapters/llm/openai").json() == {"adapter": "llm/openai"}
    assert started == ["up"]
    assert resolve_adapter.cache_stats().l1_hits == 1
    assert tiercache_threads() == [] and connections(redis_server) <= quiet
