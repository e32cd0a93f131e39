"""The `tiercache` command's stats and flush against a real redis-server, and its exit codes."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from hypothesis import assume, given
from hypothesis import strategies as st

import tiercache
from tiercache import MultiTierCache, MultiTierCacheSettings, tiered_cache
from tiercache._l2.announcement import parse
from tiercache._l2.coherence import channel_for
from tiercache._l2.keyspace import ADAPTER, TAGS, owner_of
from tiercache._l2.layout import RESERVED_LABELS
from tiercache._tools import cli as _cli
from tiercache._tools.redis_process import RedisProcess, free_port

pytestmark = pytest.mark.redis_server


def cached_pair(namespace: str) -> tuple:
    @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="cli.square", namespace=namespace)
    def square(n: int) -> int:
        return n * n

    @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="cli.cube", namespace=namespace)
    def cube(n: int) -> int:
        return n**3

    return square, cube


@pytest.fixture
def populated(real_l2: str, isolated_settings: str):
    """5 square keys, 3 cube keys and 2 adapter keys in a namespace, plus a key that is not ours.

    Besides: a tagged function (1 key, and 1 key of its tag), and one whose label starts with
    square's and a colon ("cli.square:v2", 1 key), which SCAN's pattern for square matches too.
    """
    square, cube = cached_pair(isolated_settings)
    for n in range(5):
        square(n)
    for n in range(3):
        cube(n)

    @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="cli.tagged", namespace=isolated_settings, tags=["t"])
    def tagged(n: int) -> int:
        return n

    @tiered_cache(ttl_l1=3600, ttl_l2=3600, name="cli.square:v2", namespace=isolated_settings)
    def square_again(n: int) -> int:
        return n * n

    tagged(1)
    square_again(1)
    with MultiTierCache(MultiTierCacheSettings(l2_url=real_l2, namespace=isolated_settings)) as cache:
        cache.set("adapter:storage:s3", {"pool": 8})
        cache.set("adapter:queue:sqs", {"pool": 2})
    other = redis.Redis.from_url(real_l2)
    other.set(f"{isolated_settings}-unrelated", b"x")
    yield square, cube
    other.delete(f"{isolated_settings}-unrelated")
    other.close()


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = _cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_counts_keys_and_memory_per_function(populated, real_l2, isolated_settings, capsys):
    """stats --namespace groups keys by function (and the adapters), with MEMORY USAGE sums."""
    code, out, _ = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings, "--json")
    assert code == 0
    found = {entry["function"]: entry for entry in json.loads(out)["functions"]}
    assert {name: entry["keys"] for name, entry in found.items()} == {
        "cli.square": 5,
        "cli.cube": 3,
        ADAPTER: 2,
        "cli.tagged": 1,
        TAGS: 1,
        "cli.square:v2": 1,
    }
    assert all(
        entry["memory_bytes"] > 0 and entry["namespace"] == isolated_settings for entry in found.values()
    )


def test_stats_without_namespace_splits_at_the_first_colon(populated, real_l2, isolated_settings, capsys):
    """Without --namespace every namespace shows up; keys that are not ours are counted apart."""
    code, out, _ = cli(capsys, "stats", "--redis-url", real_l2, "--json")
    assert code == 0
    result = json.loads(out)
    ours = {e["function"]: e["keys"] for e in result["functions"] if e["namespace"] == isolated_settings}
    assert ours == {"cli.square": 5, "cli.cube": 3, ADAPTER: 2, "cli.tagged": 1, TAGS: 1, "cli.square:v2": 1}
    assert result["other_keys"] >= 1  # the unrelated key


def test_stats_table_for_people(populated, real_l2, isolated_settings, capsys):
    """Without --json stats prints a table naming each function."""
    code, out, _ = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 0
    assert "cli.square" in out and "cli.cube" in out and ADAPTER in out


def test_stats_prints_redis_key_names_as_text_never_as_markup_or_terminal_codes(
    real_l2, isolated_settings, redis_server, capsys
):
    """Key names are Redis's, so anyone's: a `[/bold]` used to kill every stats with MarkupError,
    and ESC/OSC sequences reached the operator's terminal (clear screen, OSC 52 clipboard)."""
    client = redis_server.client()
    digest = "0" * 32
    client.set(f"{isolated_settings}:[/bold]:{digest}", b"x")
    client.set(f"{isolated_settings}:\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J:{digest}", b"x")
    code, out, err = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 0, err
    assert "[/bold]" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]52" in out  # shown escaped, so the operator sees what was planted


def flush_square(capsys, url: str, namespace: str) -> tuple[int, str, str]:
    return cli(
        capsys, "flush", "--redis-url", url, "--namespace", namespace, "--function", "cli.square", "--yes"
    )


def test_a_signed_flush_announces_only_what_it_verified(
    real_l2, isolated_settings, redis_server, capsys, monkeypatch
):
    """flush signed a clear-all for every label it found in Redis, a planted one too: a genuine
    announcement of the attacker's choosing. With a key, it announces a function it was named,
    or one holding a value that verifies."""
    key = "cli-signing-key-0123456789"
    monkeypatch.setenv("TIERCACHE_SIGNING_KEY", key)
    real = tiered_cache(name="cli.real", signing_key=key)(lambda x: x)
    real(1)
    client = redis_server.client()
    client.set(f"{isolated_settings}:cli.planted:{'0' * 32}", b"tc\x02 not signed")
    heard: list[str] = []
    with client.pubsub() as spy:
        spy.subscribe(channel_for(isolated_settings))
        spy.get_message(timeout=1)
        code, _, err = cli(capsys, "flush", "--redis-url", real_l2, "--namespace", isolated_settings, "--yes")
        assert code == 0, err
        while (message := spy.get_message(timeout=0.5)) is not None:
            heard.append(parse(message["data"]).key_prefix)
    assert heard == [f"{isolated_settings}:cli.real"]


def test_flush_one_function_leaves_the_others(populated, real_l2, isolated_settings, capsys):
    """flush --function deletes only that function's keys and says how many.

    Not "cli.square:v2"'s, whose keys SCAN's pattern for cli.square matches too.
    """
    code, out, _ = flush_square(capsys, real_l2, isolated_settings)
    assert code == 0 and "deleted 5 keys" in out
    code, out, _ = cli(capsys, "stats", "--redis-url", real_l2, "--namespace", isolated_settings, "--json")
    left = {e["function"] for e in json.loads(out)["functions"]}
    assert left == {"cli.cube", ADAPTER, "cli.tagged", TAGS, "cli.square:v2"}


def test_flush_reaches_coherent_l1s(populated, real_l2, isolated_settings, capsys):
    """A flush announces itself: a process holding the function in L1 drops it and recomputes."""
    square, _ = populated
    assert square.cache_stats().l1_size == 5
    code, _, _ = flush_square(capsys, real_l2, isolated_settings)
    assert code == 0
    deadline = time.monotonic() + 2
    while square.cache_stats().l1_size and time.monotonic() < deadline:
        time.sleep(0.005)
    assert square.cache_stats().l1_size == 0


def test_flush_asks_first(populated, real_l2, isolated_settings, capsys, monkeypatch):
    """Without --yes flush asks; anything but yes deletes nothing and exits 3."""
    questions: list[str] = []
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or "n")
    code, _, err = cli(capsys, "flush", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 3 and "not confirmed" in err
    assert questions and "Delete 13 keys" in questions[0]
    monkeypatch.setattr("builtins.input", lambda q: "y")
    code, out, _ = cli(capsys, "flush", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 0 and "deleted 13 keys" in out


def test_flush_without_a_terminal_is_not_confirmed(
    populated, real_l2, isolated_settings, capsys, monkeypatch
):
    """No terminal to answer from (EOF) counts as no."""

    def no_terminal(question: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_terminal)
    code, _, _ = cli(capsys, "flush", "--redis-url", real_l2, "--namespace", isolated_settings)
    assert code == 3
    assert populated[0].cache_key(1) and redis.Redis.from_url(real_l2).exists(populated[0].cache_key(1)) == 1


def test_namespaces_with_glob_characters_are_matched_literally(real_l2, capsys):
    """A namespace holding * or [ ] does not match other namespaces in SCAN."""
    square, _ = cached_pair("weird[*]")
    tiercache.configure(namespace="weird[*]")
    square(1)
    client = redis.Redis.from_url(real_l2)
    client.set("weirdX:cli.square:" + "0" * 32, b"x")
    try:
        code, out, _ = cli(capsys, "flush", "--redis-url", real_l2, "--namespace", "weird[*]", "--yes")
        assert code == 0 and "deleted 1 keys" in out
        assert client.exists("weirdX:cli.square:" + "0" * 32) == 1
    finally:
        client.delete("weirdX:cli.square:" + "0" * 32)
        client.close()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
@pytest.mark.parametrize("command", ["stats", "flush"])
def test_unreachable_server_exits_1(command, scheme, capsys):
    """A server (or cluster) that does not answer: one line naming it, exit code 1."""
    url = f"{scheme}://:secret@127.0.0.1:{free_port()}/0"
    code, _, err = cli(
        capsys, command, "--redis-url", url, "--namespace", "ns", *(["--yes"] if command == "flush" else [])
    )
    assert code == 1
    assert f"tiercache {command}: cannot reach {scheme}://:***@127.0.0.1" in err and "secret" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["stats", "flush"])
def test_bad_url_exits_2(command, capsys):
    """A URL redis-py cannot use: exit code 2 and what is wrong with it."""
    code, _, err = cli(capsys, command, "--redis-url", "http://127.0.0.1:1/0", "--namespace", "ns")
    assert code == 2
    assert "must start with one of redis://" in err


def test_flush_needs_a_namespace(capsys):
    """flush without --namespace is a usage error (argparse's exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["flush", "--yes"])
    assert exit_info.value.code == 2


def test_console_script_is_installed(redis_server: RedisProcess):
    """The `tiercache` script and `python -m tiercache` run the same command line."""
    script = Path(sys.executable).parent / "tiercache"
    assert script.exists() or shutil.which("tiercache")
    for argv in ([str(script)], [sys.executable, "-m", "tiercache"]):
        done = subprocess.run(
            [*argv, "stats", "--redis-url", redis_server.url, "--namespace", "nothing-here", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "functions": [],
            "other_keys": 0,
            "fleet": {"processes": [], "skipped": 0, "functions": []},
        }


names = st.text(
    st.characters(blacklist_characters=": \t\n\r\x0b\x0c", blacklist_categories=["Cs", "Zs", "Cc"]),
    min_size=1,
)


@given(names, names, st.binary(min_size=16, max_size=16), st.booleans())
def test_owner_of_reads_back_function_keys(namespace, label, raw, lock):
    """Every key a function writes is attributed to its namespace and label, with or without --namespace."""
    # tiered_cache() refuses these labels: they are the adapters' and the tags' (_l2.layout).
    assume(label not in RESERVED_LABELS)
    key = f"{namespace}:{label}:{raw.hex()}" + (":lock" if lock else "")
    assert owner_of(key, namespace) == (namespace, label)
    assert owner_of(key, None) == (namespace, label)
    assert owner_of(f"{namespace}:{label}:gen", namespace) == (namespace, label)


@given(names, st.text())
def test_owner_of_reads_back_adapter_keys(namespace, key):
    """Adapter keys (any text after k:) and the adapter generation belong to the adapters."""
    assert owner_of(f"{namespace}:k:{key}", namespace) == (namespace, ADAPTER)
    assert owner_of(f"{namespace}:gen", None) == (namespace, ADAPTER)


@given(names, st.binary(min_size=16, max_size=16))
def test_owner_of_reads_back_tag_keys(namespace, raw):
    assert owner_of(f"{namespace}:tag:{raw.hex()}", namespace) == (namespace, TAGS)
    assert owner_of(f"{namespace}:tag:{raw.hex()}", None) == (namespace, TAGS)


def test_owner_of_leaves_other_keys_alone():
    """Keys that do not end in a digest, gen or lock are not ours."""
    assert owner_of("session:abc", None) is None
    assert owner_of("plain", None) is None
    assert owner_of("ns:f:" + "0" * 32, "other") is None


WARMED_MODULE = """
from tiercache import tiered_cache

@tiered_cache(ttl_l1=60, ttl_l2=600, name="cli.warm.price")
def price(sku, qty=1):
    if sku == "bad":
        raise ValueError("no such sku")
    return {"sku": sku, "total": qty * 10}

@tiered_cache(ttl_l1=60, ttl_l2=600, name="cli.warm.aprice")
async def aprice(sku):
    return sku.upper()
"""


@pytest.mark.parametrize("target", ["shop:price", "shop:aprice"])
def test_warm_fills_redis_from_a_file_of_calls(
    target: str, real_l2: str, isolated_settings: str, tmp_path: Path
) -> None:
    """A second warm (another process: an empty L1) finds every call in Redis already."""
    (tmp_path / "shop.py").write_text(WARMED_MODULE)
    calls = ['"a"', '["b", 2]', '{"sku": "c"}', "", '"d"']
    if target == "shop:price":
        calls.append('"bad"')
    (tmp_path / "calls.jsonl").write_text("\n".join(calls) + "\n")
    env = {**os.environ, "TIERCACHE_REDIS_URL": real_l2, "TIERCACHE_NAMESPACE": isolated_settings}
    command = [sys.executable, "-m", "tiercache", "warm", target, "calls.jsonl", "--quiet"]
    if target == "shop:aprice":
        (tmp_path / "calls.jsonl").write_text('"a"\n"b"\n{"sku": "c"}\n"d"\n')
    first = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    second = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if target == "shop:price":
        assert first.returncode == _cli.CALLS_FAILED, first.stderr
        assert "5 calls, 4 computed, 0 already cached, 1 failed" in first.stdout
        assert '"bad": ValueError: no such sku' in first.stderr
        assert "5 calls, 0 computed, 4 already cached, 1 failed" in second.stdout
    else:
        assert first.returncode == 0, first.stderr
        assert "4 calls, 4 computed, 0 already cached, 0 failed" in first.stdout
        assert "4 calls, 0 computed, 4 already cached, 0 failed" in second.stdout
    keys = redis.Redis.from_url(real_l2).keys(f"{isolated_settings}:cli.warm.*")
    assert len([k for k in keys if not k.endswith(b":gen")]) == 4


def test_warm_takes_redis_url_as_stats_and_flush_do(
    real_l2: str, isolated_settings: str, tmp_path: Path
) -> None:
    """--redis-url wins over what the application's module configures at import, and the env."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    module = f"import tiercache\ntiercache.configure(redis_url={nowhere!r})\n" + WARMED_MODULE
    (tmp_path / "shop.py").write_text(module)
    (tmp_path / "calls.jsonl").write_text('"a"\n"b"\n')
    env = {**os.environ, "TIERCACHE_REDIS_URL": nowhere, "TIERCACHE_NAMESPACE": isolated_settings}

    def warm(url: str) -> subprocess.CompletedProcess[str]:
        command = ["warm", "shop:price", "calls.jsonl", "--quiet", "--redis-url", url]
        return subprocess.run(
            [sys.executable, "-m", "tiercache", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = warm(real_l2)
    assert done.returncode == 0, done.stderr
    assert "2 calls, 2 computed" in done.stdout
    keys = redis.Redis.from_url(real_l2).keys(f"{isolated_settings}:cli.warm.price:*")
    assert len([k for k in keys if not k.endswith(b":gen")]) == 2
    refused = warm("http://x")
    assert refused.returncode == _cli.USAGE and "must start with one of redis://" in refused.stderr


def test_version() -> None:
    command = [sys.executable, "-m", "tiercache", "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == f"tiercache {importlib.metadata.version('tiercache')}"


def test_warm_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "calls.jsonl").write_text("not json\n")
    for argv, message in [
        (["warm", "nocolon", "calls.jsonl"], "is not MODULE:FUNCTION"),
        (["warm", "plain:f", "calls.jsonl", "--quiet"], "plain:f is not a @tiered_cache function"),
        (["warm", "missing_module_x:f", "calls.jsonl", "--quiet"], "cannot find missing_module_x:f"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "tiercache", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == _cli.USAGE and message in done.stderr, done.stderr
