"""The pytest plugin, run the way users run it: in a test project of its own (pytester)."""

from __future__ import annotations

import re

import pytest

from tests.support.paths import ROOT
from tiercache import tiered_cache
from tiercache._tools.redis_process import RedisProcess, free_port
from tiercache.testing import assert_cache_stats

CACHED = """
    import asyncio
    import pytest
    from tiercache import tiered_cache
    from tiercache.testing import assert_cache_stats

    runs = []

    @tiered_cache(ttl_l1=60, ttl_l2=3600)
    def resolve_adapter(category, name):
        runs.append((category, name))
        return f"{category}.{name}"
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_project=CACHED + source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_isolated_fixture_gives_every_test_fresh_caches(pytester: pytest.Pytester) -> None:
    """Each test under tiercache_isolated starts with empty L1s and zeroed stats, in its own namespace."""
    result = run(
        pytester,
        """
    seen = set()

    @pytest.mark.parametrize("round", [1, 2])
    def test_cold_each_time(tiercache_isolated, round):
        resolve_adapter("storage", "s3")
        resolve_adapter("storage", "s3")
        assert_cache_stats(resolve_adapter, calls=2, misses=1, l1_hits=1, l2_hits=0)
        assert tiercache_isolated.startswith("test-") and tiercache_isolated not in seen
        seen.add(tiercache_isolated)

    def test_without_l2(tiercache_isolated):
        resolve_adapter("queue", "sqs")
        assert_cache_stats(resolve_adapter, l2_lookups=0, l2_errors=0)
    """,
    )
    result.assert_outcomes(passed=3)


def test_isolated_fixture_empties_an_adapter_made_at_import_too(pytester: pytest.Pytester) -> None:
    """An adapter built at import time (as Django builds its backend) starts each test empty and
    zeroed, as a cached function does: it carried one test's entries into the next."""
    result = run(
        pytester,
        """
    from tiercache import MultiTierCache, MultiTierCacheSettings

    adapters = MultiTierCache(MultiTierCacheSettings(l2_enabled=False))

    @pytest.mark.parametrize("round", [1, 2])
    def test_adapter_starts_empty(tiercache_isolated, round):
        assert adapters.get("storage") is None
        adapters.set("storage", round)
        assert adapters.get("storage") == round
        metrics = adapters.get_metrics()
        assert (metrics["gets"], metrics["sets"], metrics["l1_hits"], metrics["misses"]) == (2, 1, 1, 1)
        assert metrics["l1_size"] == 1
    """,
    )
    result.assert_outcomes(passed=2)


def test_l2_fixture_defaults_to_fakeredis(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiercache_l2 without TIERCACHE_REDIS_URL is a fakeredis the function really writes to."""
    monkeypatch.delenv("TIERCACHE_REDIS_URL", raising=False)
    result = run(
        pytester,
        """
    import fakeredis

    def test_l2(tiercache_l2):
        assert isinstance(tiercache_l2, fakeredis.FakeRedis)
        resolve_adapter("storage", "s3")
        assert tiercache_l2.exists(resolve_adapter.cache_key("storage", "s3"))
        from tiercache.testing import forget_local_caches
        forget_local_caches()  # as another process would have it: an empty L1, zeroed stats
        resolve_adapter("storage", "s3")
        assert_cache_stats(resolve_adapter, l2_hits=1, misses=0)
    """,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.redis_server
def test_l2_fixture_uses_the_configured_server_and_cleans_up(
    pytester: pytest.Pytester, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TIERCACHE_REDIS_URL set, tiercache_l2 uses that server and deletes its namespace after."""
    monkeypatch.setenv("TIERCACHE_REDIS_URL", redis_server.url)
    result = run(
        pytester,
        """
    import redis

    def test_l2(tiercache_l2, tiercache_isolated):
        assert isinstance(tiercache_l2, redis.Redis)
        resolve_adapter("storage", "s3")
        key = resolve_adapter.cache_key("storage", "s3")
        assert key.startswith(tiercache_isolated + ":") and tiercache_l2.exists(key)
        print("NAMESPACE=" + tiercache_isolated)
    """,
        "-s",
    )
    result.assert_outcomes(passed=1)
    namespace = next(line for line in result.outlines if "NAMESPACE=" in line).split("NAMESPACE=")[1]
    assert redis_server.client().keys(f"{namespace}:*") == []


def test_l2_fixture_says_when_the_configured_server_does_not_answer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable TIERCACHE_REDIS_URL fails the test in one line naming it, password hidden."""
    monkeypatch.setenv("TIERCACHE_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = run(pytester, "\n    def test_l2(tiercache_l2):\n        pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*tiercache_l2: TIERCACHE_REDIS_URL=redis://:***@127.0.0.1:* does not answer*"]
    )
    result.stdout.no_fnmatch_line("*hunter2*")


def test_l2_fixture_names_both_versions_when_fakeredis_cannot_make_a_client(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fakeredis too old for the redis-py beside it fails the test in one line naming both versions."""
    monkeypatch.delenv("TIERCACHE_REDIS_URL", raising=False)
    # What fakeredis 2.40.0 raises with redis-py 8.2.0, from inside its client's class.
    pytester.makeconftest(
        """
        import fakeredis

        class TooOld:
            def __init__(self, *args, **kwargs):
                raise AttributeError("'method_descriptor' object has no attribute '__closure__'")

        fakeredis.FakeRedis = TooOld
        """
    )
    result = run(pytester, "\n    def test_l2(tiercache_l2):\n        pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*tiercache_l2: fakeredis 2.* cannot make a client with redis-py *.* (AttributeError: *)*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*def __init__*")


def test_disabled_marker_and_fixture_bypass_the_cache(pytester: pytest.Pytester) -> None:
    """@pytest.mark.tiercache_disabled and the tiercache_disabled fixture make every call run the function."""
    result = run(
        pytester,
        """
    @pytest.mark.tiercache_disabled
    def test_marker():
        runs.clear()
        resolve_adapter("storage", "s3")
        resolve_adapter("storage", "s3")
        assert len(runs) == 2

    def test_fixture(tiercache_disabled):
        runs.clear()
        resolve_adapter("storage", "s3")
        resolve_adapter("storage", "s3")
        assert len(runs) == 2

    def test_enabled_again_after(tiercache_isolated):
        runs.clear()
        resolve_adapter("storage", "s3")
        resolve_adapter("storage", "s3")
        assert len(runs) == 1
    """,
        "--strict-markers",
    )
    result.assert_outcomes(passed=3)


def test_async_functions_and_the_failure_message(pytester: pytest.Pytester) -> None:
    """assert_cache_stats works on async functions; its failure lists what differs and the counters."""
    result = run(
        pytester,
        """
    @tiered_cache(ttl_l1=60, ttl_l2=None)
    async def get_session(session_id):
        return {"id": session_id}

    def test_fails(tiercache_isolated):
        asyncio.run(get_session("abc"))
        asyncio.run(get_session("abc"))
        assert_cache_stats(get_session, l1_hits=2, misses=1)
    """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cache stats of test_project.get_session are not as expected:",
            "*  l1_hits: expected 2, got 1",
            "*  all counters: calls=2 l1_hits=1 l2_hits=0 misses=1 *",
        ]
    )
    result.stdout.no_fnmatch_line("*misses: expected*")
    # The traceback ends at the user's own line, not inside tiercache (__tracebackhide__).
    result.stdout.fnmatch_lines(["*assert_cache_stats(get_session, l1_hits=2, misses=1)"])
    result.stdout.no_fnmatch_line("*raise AssertionError*")
    result.stdout.no_fnmatch_line("*tiercache/testing.py*")


def test_assert_cache_stats_checks_its_arguments() -> None:
    """Unknown stat names and objects that are not cached functions are TypeErrors naming them."""

    @tiered_cache(ttl_l1=60, ttl_l2=None)
    def f(x: int) -> int:
        return x

    f(1)
    stats = assert_cache_stats(f, calls=1, misses=1, l1_hit_rate=0.0, combined_hit_rate=0.0)
    assert stats.misses == 1
    with pytest.raises(TypeError, match="assert_cache_stats: unknown stat l1_hit;"):
        assert_cache_stats(f, l1_hit=1)
    with pytest.raises(TypeError, match="expected a @tiered_cache function, not function"):
        assert_cache_stats(lambda: None, calls=1)
    with pytest.raises(AssertionError, match=r"l1_hit_rate: expected 0\.5, got 0\.0"):
        assert_cache_stats(f, l1_hit_rate=0.5)


def test_the_examples_in_docs_testing_md_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/testing.md's example module and tests run as a project of their own, and pass."""
    monkeypatch.delenv("TIERCACHE_REDIS_URL", raising=False)
    page = (ROOT / "docs" / "testing.md").read_text()
    files = re.findall(r"<!-- pytester file: (\S+) -->\n<!-- skip: next -->\n```python\n(.*?)```", page, re.S)
    assert [name for name, _ in files] == ["adapters.py", "test_adapters.py"]
    for name, source in files:
        pytester.makepyfile(**{name.removesuffix(".py"): source})
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=3)
