"""tiercache.contrib.django.TieredCache against Django's cache contract, on a real redis-server.

The contract tests follow the cases of Django's own ``BaseCacheTests`` (tests/cache/tests.py)
that apply to a Redis-backed cache, written again for pytest; culling (a local-memory notion)
and pickled objects (tiercache never pickles) are left out. Then what only a shared cache can
show: other processes' L1s follow, and incr() is atomic across processes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from typing import Any

import django
import pytest
import redis
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="tiercache-tests",  # noqa: S106 - signs nothing that leaves the test
        INSTALLED_APPS=["django.contrib.sessions"],
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        ROOT_URLCONF=__name__,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
    )
    django.setup()

from django.core.cache import CacheKeyWarning, caches
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path

from tests.support.concurrency import at_once
from tiercache import MultiTierCacheSettings
from tiercache._tools.redis_process import RedisProcess
from tiercache.contrib.django import TieredCache

BACKEND = "tiercache.contrib.django.TieredCache"


def visit(request: HttpRequest) -> JsonResponse:
    """A view that counts a visitor's visits in their session."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"visits": request.session["visits"]})


def leave(request: HttpRequest) -> JsonResponse:
    """A view that ends the visitor's session (as logging out does)."""
    request.session.flush()
    return JsonResponse({"left": True})


urlpatterns = [path("visit", visit), path("leave", leave)]


def caches_setting(url: str, namespace: str, **default: Any) -> dict[str, Any]:
    options = {"NAMESPACE": namespace}
    return {
        "default": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": options, **default},
        "prefix": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": options, "KEY_PREFIX": "cacheprefix"},
        "v2": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": options, "VERSION": 2},
        "custom_key": {
            "BACKEND": BACKEND,
            "LOCATION": url,
            "OPTIONS": options,
            "KEY_FUNCTION": lambda key, prefix, version: f"CUSTOM-{prefix}-{version}-{key}",
        },
    }


@pytest.fixture
def cache(redis_server: RedisProcess, isolated_settings: str) -> Iterator[Any]:
    with override_settings(CACHES=caches_setting(redis_server.url, isolated_settings)):
        yield caches["default"]


# -- Django's contract -------------------------------------------------------------------------


def test_simple_and_none_is_a_value(cache: Any) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


def test_add(cache: Any) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_set_nx_is_add_as_in_django_redis(cache: Any) -> None:
    assert cache.set("nx", "first", nx=True) is True
    assert cache.set("nx", "second", nx=True) is False
    assert cache.get("nx") == "first"
    assert cache.set("nx", "third") is None and cache.get("nx") == "third"


def test_prefix(cache: Any) -> None:
    cache.set("somekey", "value")
    assert caches["prefix"].has_key("somekey") is False
    caches["prefix"].set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert caches["prefix"].get("somekey") == "value2"


def test_get_many(cache: Any) -> None:
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}


def test_delete(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"
    assert cache.delete("nonexistent_key") is False


def test_has_key_and_in(cache: Any) -> None:
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "null" in cache and "goodbye1" not in cache


def test_incr_and_decr(cache: Any) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42 and cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41 and cache.decr("answer", -1) == 42
    for delta in (1, -1):
        with pytest.raises(ValueError, match="not found"):
            cache.incr("does_not_exist", delta)
    with pytest.raises(ValueError, match="not found"):
        cache.decr("does_not_exist")
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")


def test_close_keeps_working(cache: Any) -> None:
    cache.set("key", 1)
    cache.close()  # (Django calls it after every request)
    assert cache.get("key") == 1


def test_data_types(cache: Any) -> None:
    values = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "binary": b"\x78\x9c\x00value",
        "unicode": "Iñtërnâtiônàlizætiøn2",
    }
    for key, value in values.items():
        cache.set(key, value)
        assert cache.get(key) == value
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    cache.clear()
    cache.set_many(values)
    assert cache.get_many(values) == values
    # (And from Redis, not only this process's L1:)
    cache._cache.invalidate_l1()
    assert cache.get_many(values) == values


def test_responses_safe_strings_and_lazy_strings_reach_redis(cache: Any) -> None:
    """cache_page stores responses, {% cache %} safe strings, forms lazy strings: all of them
    used to stay in the writing process's L1 (another process re-ran the view)."""
    from django.http import HttpResponse  # noqa: PLC0415
    from django.utils.safestring import SafeString, mark_safe  # noqa: PLC0415
    from django.utils.translation import gettext_lazy  # noqa: PLC0415

    response = HttpResponse(b"<p>made once</p>", status=203, reason="Made Once")
    response["X-Made-By"] = "test"
    response.set_cookie("seen", "1", max_age=60, httponly=True)
    cache.set("response", response)
    cache.set("fragment", mark_safe("<b>bold</b>"))
    cache.set("lazy", gettext_lazy("Hello"))
    cache._cache.invalidate_l1()  # (from Redis, as another process reads them)
    back = cache.get("response")
    assert type(back) is HttpResponse and back.content == b"<p>made once</p>"
    assert (back.status_code, back.reason_phrase, back["X-Made-By"]) == (203, "Made Once", "test")
    assert back["Content-Type"] == response["Content-Type"]
    assert back.cookies["seen"].value == "1" and back.cookies["seen"]["httponly"]
    fragment = cache.get("fragment")
    assert type(fragment) is SafeString and fragment == "<b>bold</b>"
    lazy = cache.get("lazy")
    assert type(lazy) is str and lazy == "Hello"


def forty_two() -> int:
    return 42


def test_a_lazy_value_that_is_not_a_string_stays_in_l1(cache: Any, caplog: pytest.LogCaptureFixture) -> None:
    from django.utils.functional import lazy  # noqa: PLC0415

    answer = lazy(forty_two, int)()  # (picklable, as a value must be for any Django backend)
    with caplog.at_level("WARNING", logger="tiercache"):
        cache.set("answer", answer)
    assert cache.get("answer") is answer  # from L1
    cache._cache.invalidate_l1()
    assert cache.get("answer") is None
    assert any("a lazy value that is not a string" in r.getMessage() for r in caplog.records)


def test_a_stored_response_of_the_wrong_shape_is_a_miss() -> None:
    import msgpack  # noqa: PLC0415

    from tiercache._l2.codec import DecodeError, decode_value  # noqa: PLC0415

    for fields in ([200, "OK", b"x", [["X", 1]], []], [99999, "OK", b"x", [], []], [200, "OK", "x", [], []]):
        forged = msgpack.packb(msgpack.ExtType(11, msgpack.packb(["django.HttpResponse", fields])))
        with pytest.raises(DecodeError):
            decode_value(forged)


def test_expiration(cache: Any) -> None:
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    time.sleep(1.5)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.has_key("expire3") is False


def test_touch(cache: Any) -> None:
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=3) is True
    time.sleep(1.5)
    assert cache.has_key("expire1") is True
    cache._cache.invalidate_l1()
    assert cache.has_key("expire1") is True  # Redis has the new timeout too
    time.sleep(2)
    assert cache.has_key("expire1") is False
    assert cache.touch("nonexistent") is False


def test_set_many(cache: Any) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []
    assert cache.get("key1") == "spam" and cache.get("key2") == "eggs"
    assert cache.set_many({}) == []
    cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
    time.sleep(1.5)
    assert cache.get("key1") is None and cache.get("key2") is None


def test_delete_many_and_clear(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    assert cache.delete_many(["key1", "key2"]) is None
    assert cache.get("key1") is None and cache.get("key2") is None and cache.get("key3") == "ham"
    assert cache.delete_many([]) is None
    cache.clear()
    assert cache.get("key3") is None


def test_long_and_float_timeouts(cache: Any) -> None:
    month = 60 * 60 * 24 * 30 + 1  # (memcached would read this as a date: we do not)
    cache.set("key1", "eggs", month)
    assert cache.add("key2", "ham", month) is True
    cache.set_many({"key3": "sausage"}, month)
    cache.set("key4", "spam", 100.2)
    cache._cache.invalidate_l1()
    assert cache.get_many(["key1", "key2", "key3", "key4"]) == {
        "key1": "eggs",
        "key2": "ham",
        "key3": "sausage",
        "key4": "spam",
    }


def test_forever_timeout(cache: Any) -> None:
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.add("key1", "new eggs", None) is False
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    time.sleep(1.5)
    cache._cache.invalidate_l1()
    assert cache.get_many(["key1", "key2", "key3", "key5"]) == {
        "key1": "eggs",
        "key2": "ham",
        "key3": "sausage",
        "key5": "belgian fries",
    }


def test_zero_timeout(cache: Any) -> None:
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None and cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_key_versions(cache: Any) -> None:
    v2 = caches["v2"]
    cache.set("answer1", 42)
    assert cache.get("answer1", version=1) == 42 and cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None and v2.get("answer1", version=1) == 42
    v2.set("answer3", 42)
    assert cache.get("answer3") is None and cache.get("answer3", version=2) == 42
    assert cache.add("answer4", 42, version=2) is True
    assert cache.add("answer4", 37, version=2) is False
    assert cache.add("answer4", 37, version=1) is True
    assert cache.get_many(["answer4"], version=2) == {"answer4": 42}
    assert cache.incr("answer4", version=2) == 43
    assert cache.delete("answer4", version=2) is True and cache.get("answer4") == 37


def test_incr_and_decr_version(cache: Any) -> None:
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None and cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.incr_version("does_not_exist")


def test_custom_key_function(cache: Any) -> None:
    caches["custom_key"].set("answer1", 42)
    assert caches["custom_key"].get("answer1") == 42
    assert cache.get("answer1") is None


def test_get_or_set(cache: Any) -> None:
    assert cache.get_or_set("projector", lambda: 42) == 42
    assert cache.get_or_set("projector", 43) == 42
    assert cache.get_or_set("null", None) is None


def test_keys_memcached_would_refuse_warn_as_django_s_redis_backend_does(cache: Any) -> None:
    with pytest.warns(CacheKeyWarning, match="will cause errors if used with memcached"):
        cache.set("key with spaces", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        assert cache.get("key with spaces") == 1


def test_bad_settings_name_the_backend(redis_server: RedisProcess) -> None:
    with pytest.raises(ValueError, match=r"TieredCache: unknown OPTIONS entry 'L1_SIZE'"):
        TieredCache(redis_server.url, {"OPTIONS": {"L1_SIZE": 10}})
    with pytest.raises(ValueError, match="TieredCache: LOCATION must be one Redis URL"):
        TieredCache([redis_server.url, redis_server.url], {})
    with pytest.raises(ValueError, match="TieredCache: LOCATION must be a Redis URL"):
        TieredCache("", {})
    backend = TieredCache(redis_server.url, {})
    with pytest.raises(TypeError, match="TieredCache: timeout must be a number of seconds or None"):
        backend.set("k", 1, timeout="soon")


def test_django_redis_and_redis_cache_options_are_read_as_ours(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    """A settings file moved from django-redis (or Django's RedisCache) used to fail at start-up
    on every one of its OPTIONS: those with a meaning here are now read as ours."""
    options = {
        "NAMESPACE": isolated_settings,
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "COMPRESSOR": "django_redis.compressors.identity.IdentityCompressor",
        "SOCKET_TIMEOUT": 0.5,
        "SOCKET_CONNECT_TIMEOUT": 0.75,
        "CONNECTION_POOL_KWARGS": {"max_connections": 7},
        "IGNORE_EXCEPTIONS": True,
        "db": 3,
    }
    url = redis_server.url.rsplit("/", 1)[0]  # (no database in the URL: db says which)
    backend = TieredCache(url, {"OPTIONS": options})
    chosen = backend._cache.settings
    assert (chosen.l2_timeout, chosen.l2_connect_timeout, chosen.l2_max_connections) == (0.5, 0.75, 7)
    assert chosen.compress_min_bytes is None and chosen.l2_url == f"{url}/3"
    backend.set("moved", {"from": "django-redis"})
    database_3 = redis.Redis.from_url(f"{url}/3")
    assert any(b"moved" in key for key in database_3.keys("*"))
    database_3.close()
    zstd = {"NAMESPACE": isolated_settings, "COMPRESSOR": "django_redis.compressors.zstd.ZStdCompressor"}
    compressing = TieredCache(f"{url}/3", {"OPTIONS": zstd})  # (any compressor: "compress")
    assert compressing._cache.settings.compress_min_bytes == MultiTierCacheSettings().compress_min_bytes


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("SERIALIZER", "django_redis.serializers.pickle.PickleSerializer", "never pickle"),
        ("CLIENT_CLASS", "django_redis.client.SentinelClient", "redis+sentinel://"),
        ("CLIENT_CLASS", "django_redis.client.ShardClient", "redis+cluster://"),
        ("CONNECTION_POOL_KWARGS", {"retry_on_timeout": True}, "a timeout never"),
        ("IGNORE_EXCEPTIONS", False, "never fails a get or a set"),
        ("PASSWORD", "hunter2", "redis://:PASSWORD@host"),
        ("PARSER_CLASS", "redis.connection._HiredisParser", "makes its own Redis clients"),
        ("pool_class", "redis.BlockingConnectionPool", "makes its own Redis clients"),
    ],
)
def test_options_with_no_meaning_here_are_refused_naming_what_to_do(
    redis_server: RedisProcess, option: str, value: Any, says: str
) -> None:
    with pytest.raises(ValueError, match=rf"TieredCache: OPTIONS {option}.*{re.escape(says)}") as caught:
        TieredCache(redis_server.url, {"OPTIONS": {option: value}})
    assert "hunter2" not in str(caught.value)


def test_a_db_option_that_disagrees_with_the_location_is_refused(redis_server: RedisProcess) -> None:
    with pytest.raises(ValueError, match="db=3 and LOCATION's database /0 disagree"):
        TieredCache(redis_server.url, {"OPTIONS": {"db": 3}})


def test_threads_share_one_l1_and_one_pool(cache: Any, redis_server: RedisProcess) -> None:
    """Django makes a backend object per thread; they are one cache underneath."""
    import threading  # noqa: PLC0415

    seen: list[Any] = []
    cache.set("shared", 1)
    thread = threading.Thread(target=lambda: seen.append(caches["default"]))
    thread.start()
    thread.join()
    assert seen[0] is not cache and seen[0]._cache is cache._cache


# -- sessions ----------------------------------------------------------------------------------


def test_the_cache_session_engine_over_a_real_request(cache: Any) -> None:
    client = Client()
    assert client.get("/visit").json() == {"visits": 1}
    assert client.get("/visit").json() == {"visits": 2}
    session_key = client.cookies["sessionid"].value
    # The session lives in the cache (and in Redis: another process would find it).
    cache._cache.invalidate_l1()
    assert cache.get(f"django.contrib.sessions.cache{session_key}") == {"visits": 2}
    # A second visitor has a session of their own.
    assert Client().get("/visit").json() == {"visits": 1}
    assert client.get("/leave").json() == {"left": True}  # flushes the session: out of the cache
    assert cache.get(f"django.contrib.sessions.cache{session_key}") is None


# -- what only a shared cache shows -------------------------------------------------------------

PEER = """
import sys, django
from django.conf import settings
url, namespace, action = sys.argv[1:4]
settings.configure(CACHES={"default": {
    "BACKEND": "tiercache.contrib.django.TieredCache", "LOCATION": url,
    "OPTIONS": {"NAMESPACE": namespace}}})
django.setup()
from django.core.cache import cache
import tiercache
if action == "set":
    cache.set("greeting", "hello from another process")
elif action == "delete":
    cache.delete("greeting")
else:
    for _ in range(int(action)):
        cache.incr("counter")
tiercache.close()
"""


PAGE_PEER = """
import json, os, sys, django
from django.conf import settings
url, namespace = sys.argv[1:3]
settings.configure(
    SECRET_KEY="tiercache-tests", ROOT_URLCONF="__main__", ALLOWED_HOSTS=["testserver"],
    CACHES={"default": {"BACKEND": "tiercache.contrib.django.TieredCache", "LOCATION": url,
                        "OPTIONS": {"NAMESPACE": namespace}}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
)
django.setup()
from django.core.cache import cache
from django.http import HttpResponse
from django.template import Context, Template
from django.test import Client
from django.urls import path
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import cache_page
import tiercache

@cache_page(60)
def page(request):
    response = HttpResponse(f"page made by {os.getpid()}", content_type="text/plain; charset=utf-8")
    response["X-Made-By"] = str(os.getpid())
    return response

urlpatterns = [path("page", page)]
served = Client().get("/page")
fragment = Template(
    "{% load cache %}{% cache 60 greeting %}fragment made by {{ pid }}{% endcache %}"
).render(Context({"pid": os.getpid()}))
cache.add("lazy", gettext_lazy("Hello"))
lazy = cache.get("lazy")
print(json.dumps({"pid": os.getpid(), "page": served.content.decode(), "made_by": served["X-Made-By"],
                  "fragment": fragment, "lazy": [str(lazy), type(lazy).__name__]}))
tiercache.close()
"""


@pytest.mark.slow
def test_cache_page_fragments_and_lazy_strings_are_served_to_another_process(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    argv = [
        sys.executable,
        "-W",
        "error",
        "-c",
        textwrap.dedent(PAGE_PEER),
        redis_server.url,
        isolated_settings,
    ]

    def run() -> dict[str, Any]:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "L1 only" not in done.stderr
        return dict(json.loads(done.stdout))

    first, second = run(), run()
    assert first["pid"] != second["pid"]
    assert second["page"] == first["page"] == f"page made by {first['pid']}"  # the view ran once
    assert second["made_by"] == str(first["pid"])
    assert second["fragment"] == first["fragment"] == f"fragment made by {first['pid']}"
    assert second["lazy"] == ["Hello", "str"]  # (the writer's L1 keeps the lazy object it was given)


def peer(redis_server: RedisProcess, namespace: str, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(PEER), redis_server.url, namespace, action],
        text=True,
    )


def until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.slow
def test_other_processes_changes_reach_this_l1(
    cache: Any, redis_server: RedisProcess, isolated_settings: str
) -> None:
    cache.set("greeting", "hello")
    assert cache.get("greeting") == "hello"  # in this process's L1 now
    assert peer(redis_server, isolated_settings, "set").wait(60) == 0
    assert until(lambda: cache.get("greeting") == "hello from another process")
    assert peer(redis_server, isolated_settings, "delete").wait(60) == 0
    assert until(lambda: cache.get("greeting") is None)


@pytest.mark.slow
def test_incr_is_atomic_across_processes(
    cache: Any, redis_server: RedisProcess, isolated_settings: str
) -> None:
    cache.set("counter", 0, None)
    peers = [peer(redis_server, isolated_settings, "150") for _ in range(4)]
    for _ in range(150):
        cache.incr("counter")
    assert [process.wait(120) for process in peers] == [0, 0, 0, 0]
    cache._cache.invalidate_l1()
    assert cache.get("counter") == 5 * 150


def test_an_unreachable_redis_never_fails_a_call() -> None:
    """Run apart: the deletes it makes stay pending (and reported) for the rest of its process."""
    code = """
    import django, logging
    from django.conf import settings
    from tiercache._tools.redis_process import free_port
    settings.configure(CACHES={"default": {"BACKEND": "tiercache.contrib.django.TieredCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}})
    django.setup()
    logging.disable(logging.WARNING)  # (the outage is logged, once)
    from django.core.cache import cache
    import tiercache
    cache.set("k", 1)
    assert cache.get("k") == 1  # from L1
    assert cache.add("new", 2) is True and cache.incr("k") == 2
    assert cache.delete("k") is True and cache.get("k") is None
    cache.clear()
    report = tiercache.close()
    print(sum(report.pending_invalidations.values()))
    """
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # the clear (it covers the delete): reported, not lost


def test_add_after_another_process_cleared_sees_what_it_added(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    """The update reads the generation with the key: one learned before a clear would take an
    entry written after it for stale, and add over it."""
    deaf = TieredCache(redis_server.url, {"OPTIONS": {"NAMESPACE": isolated_settings, "COHERENT": False}})
    other = TieredCache(redis_server.url, {"OPTIONS": {"NAMESPACE": isolated_settings}})
    assert deaf._cache is not other._cache  # two L1s and two generations, as two processes
    deaf.set("x", 1)  # learns the generation
    other.clear()
    assert other.add("k", "other's") is True
    assert deaf.add("k", "deaf's") is False
    assert other.get("k") == "other's"


# -- a model -------------------------------------------------------------------------------------

KEYS = ("a", "b", "c")


def test_two_processes_against_a_model(redis_server: RedisProcess, isolated_settings: str) -> None:
    """Random operations by two processes' caches; both must agree with a dict, always.

    ``here`` keeps an L1 (and hears the other's announcements); ``there`` has none, so it reads
    Redis itself. After every step both must come to the model, within an announcement's delay.
    Every add, incr and touch is checked against the model at once: they are compare-and-swaps.
    """
    from hypothesis import settings as hypothesis_settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: PLC0415

    options = {"NAMESPACE": isolated_settings}
    here = TieredCache(redis_server.url, {"OPTIONS": options})
    there = TieredCache(redis_server.url, {"OPTIONS": {**options, "L1_ENABLED": False}})
    who = st.sampled_from(["here", "there"])
    keys, values = st.sampled_from(KEYS), st.integers(-5, 5)

    class TwoProcesses(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            here.clear()
            self.model: dict[str, int] = {}

        def cache(self, name: str) -> TieredCache:
            return here if name == "here" else there

        @rule(name=who, key=keys, value=values)
        def set(self, name: str, key: str, value: int) -> None:
            self.cache(name).set(key, value)
            self.model[key] = value

        @rule(name=who, key=keys, value=values)
        def add(self, name: str, key: str, value: int) -> None:
            assert self.cache(name).add(key, value) is (key not in self.model)
            self.model.setdefault(key, value)

        @rule(name=who, key=keys, delta=values)
        def incr(self, name: str, key: str, delta: int) -> None:
            if key not in self.model:
                with pytest.raises(ValueError, match="not found"):
                    self.cache(name).incr(key, delta)
                return
            self.model[key] += delta
            assert self.cache(name).incr(key, delta) == self.model[key]

        @rule(name=who, key=keys)
        def delete(self, name: str, key: str) -> None:
            assert self.cache(name).delete(key) is (key in self.model)
            self.model.pop(key, None)

        @rule(name=who, key=keys)
        def touch(self, name: str, key: str) -> None:
            assert self.cache(name).touch(key, 60) is (key in self.model)

        @rule(name=who)
        def clear(self, name: str) -> None:
            self.cache(name).clear()
            self.model.clear()

        @invariant()
        def both_agree_with_the_model(self) -> None:
            # Within the announcement's delay (a clear's, for the L1-less one too: until it hears
            # of the new generation, an old entry looks current), then for good.
            for cache in (there, here):
                assert until(lambda cache=cache: cache.get_many(KEYS) == self.model, timeout=2.0), (
                    cache.get_many(KEYS),
                    self.model,
                )

    TwoProcesses.TestCase.settings = hypothesis_settings(
        max_examples=25, stateful_step_count=20, deadline=None
    )
    TwoProcesses.TestCase().runTest()


def test_two_threads_setting_one_key_leave_this_process_answering_what_redis_holds(cache: Any) -> None:
    """100 trials: two set() of one key at once; what L1 answers is what Redis holds."""
    disagreed = 0
    for trial in range(100):
        at_once([lambda i=i, t=trial: cache.set("k", f"{t}-{i}") for i in range(2)])
        answered = cache.get("k")
        cache._cache.invalidate_l1()
        disagreed += answered != cache.get("k")
    assert disagreed == 0, f"{disagreed} of 100 trials left L1 holding another value than Redis"


def test_a_timeout_under_a_millisecond_never_leaves_the_replaced_value(cache: Any) -> None:
    cache.set("k", "old")
    cache.set("k", "new", 0.0004)
    cache._cache.invalidate_l1()
    assert cache.get("k") != "old"


# -- values only pickle carries ----------------------------------------------------------------


class Planted:
    """A value whose unpickling touches a file: proof of whether a reader unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.marker,))


def _touch(marker: str) -> str:
    open(marker, "a").close()
    return "unpickled"


def backend(url: str, namespace: str, **options: Any) -> TieredCache:
    return TieredCache(url, {"OPTIONS": {"NAMESPACE": namespace, "L1_ENABLED": False, **options}})


def test_signed_caches_that_ask_for_it_carry_what_only_pickle_can(
    redis_server: RedisProcess, isolated_settings: str
) -> None:
    """PICKLE_SIGNED_VALUES: a Fraction (no msgpack type) reaches Redis and another process's read."""
    from fractions import Fraction  # noqa: PLC0415

    key = "signing-key-of-these-tests-0123456789"
    writer = backend(redis_server.url, isolated_settings, SIGNING_KEY=key, PICKLE_SIGNED_VALUES=True)
    reader = backend(redis_server.url, isolated_settings, SIGNING_KEY=key, PICKLE_SIGNED_VALUES=True)
    writer.set("third", Fraction(1, 3))
    writer.set_many({"half": Fraction(1, 2), "plain": [1, 2]})
    assert reader.get_many(["third", "half", "plain"]) == {
        "third": Fraction(1, 3),
        "half": Fraction(1, 2),
        "plain": [1, 2],  # (what msgpack carries is not pickled)
    }
    assert redis_server.client().get(f"{isolated_settings}:k:{writer.make_key('plain')}") is not None


def test_a_pickle_is_opened_only_by_a_reader_whose_key_verifies_it_and_who_asked_for_pickles(
    redis_server: RedisProcess, isolated_settings: str, tmp_path: Any
) -> None:
    """Bytes in Redis may be anyone's: a reader with another key, or one that did not ask for
    pickles, must never unpickle (the planted value would run code); they read a miss."""
    marker = tmp_path / "unpickled"
    key = "signing-key-of-these-tests-0123456789"
    writer = backend(redis_server.url, isolated_settings, SIGNING_KEY=key, PICKLE_SIGNED_VALUES=True)
    writer.set("planted", Planted(str(marker)))
    marker.unlink(missing_ok=True)  # (the writer keeps nothing in L1; pickling ran no reduce target)
    others = {
        "another key": backend(
            redis_server.url, isolated_settings, SIGNING_KEY="x" * 40, PICKLE_SIGNED_VALUES=True
        ),
        "no pickles": backend(redis_server.url, isolated_settings, SIGNING_KEY=key),
        "no signing": backend(redis_server.url, isolated_settings),
    }
    for who, reader in others.items():
        assert reader.get("planted", "missed") == "missed", who
        assert not marker.exists(), who
    # The same bytes, copied under another key: the signature covers the key, so a miss too.
    client = redis_server.client()
    client.set(
        f"{isolated_settings}:k:{writer.make_key('copied')}",
        client.get(f"{isolated_settings}:k:{writer.make_key('planted')}"),
    )
    assert writer.get("copied", "missed") == "missed" and not marker.exists()
    assert writer.get("planted") == "unpickled" and marker.exists()  # (the control: it would run)


def test_pickling_is_refused_without_a_signing_key(redis_server: RedisProcess) -> None:
    with pytest.raises(ValueError, match="pickle_signed_values needs a signing_key"):
        MultiTierCacheSettings(l2_url=redis_server.url, pickle_signed_values=True)
    with pytest.raises(ValueError, match="pickle_signed_values needs a signing_key"):
        backend(redis_server.url, "ns", PICKLE_SIGNED_VALUES=True)


class Unpicklable:
    def __getstate__(self) -> Any:
        import pickle  # noqa: PLC0415

        raise pickle.PickleError("no")


def test_a_value_no_backend_could_pickle_raises_as_django_s_backends_do_and_is_kept_nowhere(
    cache: Any,
) -> None:
    import pickle  # noqa: PLC0415

    cache.set("k", "old")
    for write in (
        lambda: cache.set("k", Unpicklable()),
        lambda: cache.add("fresh", Unpicklable()),  # (an add that would write)
        lambda: cache.set_many({"k": Unpicklable(), "other": 1}),
    ):
        with pytest.raises(pickle.PickleError):
            write()
        assert cache.get("k") == "old" and cache.get("other") is None and cache.get("fresh") is None
