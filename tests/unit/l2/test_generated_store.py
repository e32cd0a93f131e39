"""The sync store is generated from the async commands, and the committed file is what they make."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

from tiercache._l2 import async_commands, sync_store

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "unasync.py"


def _unasync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_sync_store_is_what_the_async_commands_make() -> None:
    # Fails after an edit of async_commands.py until `nox -s unasync` has been run.
    assert _unasync().main(["--check"]) == 0


def test_the_check_refuses_a_sync_store_that_drifted(tmp_path: Path) -> None:
    unasync = _unasync()
    drifted = tmp_path / "sync_store.py"
    drifted.write_text(Path(sync_store.__file__).read_text(encoding="utf-8") + "# edited by hand\n")
    unasync.TARGET = drifted
    assert unasync.main(["--check"]) == 1
    assert unasync.main([]) == 0
    assert unasync.main(["--check"]) == 0


def test_the_sync_twin_awaits_nothing_and_keeps_every_method() -> None:
    source = Path(sync_store.__file__).read_text(encoding="utf-8")
    assert "await" not in source
    assert "async def" not in source
    for name, member in vars(async_commands.AsyncCommands).items():
        twin = vars(sync_store.SyncStore)[name]
        if inspect.iscoroutinefunction(member):
            assert not inspect.iscoroutinefunction(twin), name
            assert inspect.signature(twin) == inspect.signature(member), name


def test_the_substitutions_take_whole_words_only() -> None:
    unasync = _unasync()
    made = unasync.generate('"""doc"""\nx = await aattempt(y.aclose, readawait, aattempted)\n')
    assert made.endswith("x = attempt(y.close, readawait, aattempted)\n")
