"""Django's own cache tests, from the Django source distribution uv.lock pins, against TieredCache.

    python tests/django_suite/run.py            # (the nox session django_suite runs this)

Django's wheel ships no tests: the sdist of the installed Django version is taken from the URL
and SHA-256 that uv.lock records (downloaded once into ~/.cache/tiercache, checked each time),
and its ``tests/cache`` package imported as Django's runner would. ``BaseCacheTests`` (every
backend's contract) then runs against ``TieredCache`` on a redis-server started here: with L1,
with L1 off (``L1_ENABLED=False``: every read from Redis), and with L1 off and signed values
pickled (``PICKLE_SIGNED_VALUES``); Django's own ``RedisCacheTests`` run on the same server as
the reference. Culling is left out as for Django's RedisCache (Redis evicts by its own policy).
A case expected to fail is named with its reason; it must fail (an unexpected success fails
the run too).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import sys
import tarfile
import tempfile
import tomllib
import unittest
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tiercache._tools.redis_process import RedisProcess  # noqa: E402

#: Cases that fail with L1 off and nothing pickled, by test name: why.
NOT_PICKLED: dict[str, str] = {
    "test_data_types": "a function and a class as values: only pickle carries them, and without "
    "PICKLE_SIGNED_VALUES nothing read from Redis is unpickled (with L1 they live in L1)",
    "test_cache_read_for_model_instance": "a model instance: the same (with L1 it lives in L1)",
}
#: What every TieredCache here is given, besides its namespace.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "with L1": ({"L1_ENABLED": True}, {}),
    "with L1 off": ({"L1_ENABLED": False}, NOT_PICKLED),
    "with L1 off, signed and pickled": (
        {"L1_ENABLED": False, "SIGNING_KEY": "django-suite-signing-key", "PICKLE_SIGNED_VALUES": True},
        {},
    ),
}


def sdist(version: str) -> Path:
    """Return the Django sdist of ``version`` that uv.lock names, downloaded and checked."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    entries = [p for p in lock["package"] if p["name"] == "django" and p["version"] == version]
    if not entries or "sdist" not in entries[0]:
        raise SystemExit(f"django_suite: uv.lock names no sdist of Django {version}")
    url, digest = entries[0]["sdist"]["url"], entries[0]["sdist"]["hash"].removeprefix("sha256:")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tiercache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / url.rsplit("/", 1)[1]
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - uv.lock's https URL
            body = response.read()
        if hashlib.sha256(body).hexdigest() != digest:
            raise SystemExit(f"django_suite: {url} does not have the SHA-256 uv.lock records")
        path.write_bytes(body)
    return path


def extract_cache_tests(archive: Path, into: Path) -> None:
    """Put the sdist's ``tests/cache`` package at ``into/cache`` (nothing else is read)."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/tests/cache/" in m.name]
        for member in members:
            target = into / "cache" / member.name.split("/tests/cache/", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())


def configure_django(redis_url: str) -> None:
    from django.conf import settings  # noqa: PLC0415

    settings.configure(
        DEBUG=False,
        SECRET_KEY="django_suite",  # noqa: S106 - signs nothing that leaves the run
        USE_TZ=False,
        LANGUAGE_CODE="en",  # (as Django's own test settings: its i18n cases expect it)
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            # (Django's tests/cache finds the backends to test in CACHES: this runs RedisCacheTests.)
            "reference": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                # (no /0: its test_redis_pool_options sets the db by OPTIONS, which a URL's overrides)
                "LOCATION": redis_url.removesuffix("/0"),
            },
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    import django  # noqa: PLC0415

    django.setup()


def expected_to_fail(test: Any) -> Any:
    """Return ``test`` marked to fail, in a copy: unittest's mark would change it in every class."""

    @functools.wraps(test)
    def case(self: Any) -> Any:
        return test(self)

    return unittest.expectedFailure(case)


def tiered_case(n: int, redis_url: str, options: dict[str, Any], different: dict[str, str]) -> type:
    """Return BaseCacheTests over TieredCache with ``options``, as Django's RedisCacheTests is made."""
    from cache import tests as django_tests  # noqa: PLC0415
    from django.test import TestCase, override_settings  # noqa: PLC0415

    backend = {
        "BACKEND": "tiercache.contrib.django.TieredCache",
        "LOCATION": redis_url,
        "OPTIONS": {**options, "NAMESPACE": f"django-suite-{n}"},
    }
    caches = django_tests.caches_setting_for_tests(base=backend, exclude=django_tests.redis_excluded_caches)
    members = {test: expected_to_fail(getattr(django_tests.BaseCacheTests, test)) for test in different}
    case = type(f"TieredCacheTests{n}", (django_tests.BaseCacheTests, TestCase), members)
    case.__module__ = "cache.tests"
    return override_settings(CACHES=caches)(case)


#: Django's middleware, cache_page, header and template-response tests, each written for LocMemCache.
OVER_LOCMEM: tuple[str, ...] = (
    "CacheUtils",
    "PrefixedCacheUtils",
    "CacheHEADTest",
    "CacheI18nTest",
    "PrefixedCacheI18nTest",
    "CacheMiddlewareTest",
    "TestWithTemplateResponse",
)


def over_tiered_cache(name: str, redis_url: str, options: dict[str, Any]) -> type:
    """Return Django's test class ``name`` with each LocMemCache it sets up made a TieredCache."""
    from cache import tests as django_tests  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    written_for = getattr(django_tests, name)
    caches = {
        alias: {
            **{k: v for k, v in params.items() if k != "LOCATION"},
            "BACKEND": "tiercache.contrib.django.TieredCache",
            "LOCATION": redis_url,
            # (each alias a store of its own, as LocMemCache's LOCATIONs are)
            "OPTIONS": {**options, "NAMESPACE": f"django-suite-{name}-{alias}"},
        }
        for alias, params in written_for._overridden_settings["CACHES"].items()
    }
    case = type(name, (written_for,), {})
    case.__module__ = "cache.tests"
    return override_settings(CACHES=caches)(case)


def main() -> int:
    import django  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="django-suite-") as folder:
        extract_cache_tests(sdist(django.__version__), Path(folder))
        sys.path.insert(0, folder)
        server = RedisProcess(Path(folder) / "redis").start()
        try:
            configure_django(server.url)
            from django.test.runner import DiscoverRunner  # noqa: PLC0415

            django_tests = importlib.import_module("cache.tests")
            cases: dict[str, type] = {
                label: tiered_case(n, server.url, options, different)
                for n, (label, (options, different)) in enumerate(VARIANTS.items())
            }
            for label, (options, _) in VARIANTS.items():
                for name in OVER_LOCMEM:
                    cases[f"{name}, {label}"] = over_tiered_cache(name, server.url, options)
            cases["Django's RedisCache (reference)"] = django_tests.RedisCacheTests
            runner = DiscoverRunner(verbosity=1, interactive=False)
            runner.setup_test_environment()
            databases = runner.setup_databases()
            results = {}
            try:
                for label, case in cases.items():
                    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
                    results[label] = runner.run_suite(suite)
            finally:
                runner.teardown_databases(databases)
                runner.teardown_test_environment()
        finally:
            server.stop()
    print(
        f"\nDjango {django.__version__}'s tests/cache against TieredCache "
        "(culling excluded, as for RedisCache):"
    )
    failed = False
    for label, result in results.items():
        passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
        passed -= len(result.expectedFailures) + len(result.unexpectedSuccesses)
        print(
            f"  {label}: {result.testsRun} run, {passed} passed, {len(result.skipped)} skipped, "
            f"{len(result.expectedFailures)} expected failures, {len(result.failures) + len(result.errors)} "
            f"failed, {len(result.unexpectedSuccesses)} unexpected successes"
        )
        failed = failed or not result.wasSuccessful()
    for label, (_, different) in VARIANTS.items():
        for test, reason in different.items():
            print(f"  {label}, expected to fail: {test}: {reason}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
