"""The public API type-checks under ``mypy --strict`` and pyright: parameters and results survive.

Runs each checker over tests/unit/typing/: usage.py must be clean; misuse.py must give exactly the
errors its ``# E:`` comments name, on their lines (so the clean run cannot pass vacuously). mypy
runs in-process; pyright (a Node program its PyPI wrapper fetches once) as a command.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> list[str]:
    stdout, stderr, _ = api.run(
        ["--strict", "--no-incremental", "--show-error-codes", "--hide-error-context", str(path)]
    )
    assert not stderr, stderr
    return [line for line in stdout.splitlines() if ": error:" in line]


def test_typed_usage_passes_mypy_strict() -> None:
    assert mypy(HERE / "usage.py") == []


def test_typed_misuse_is_caught() -> None:
    source = (HERE / "misuse.py").read_text().splitlines()
    expected = {
        (number, match.group(1))
        for number, line in enumerate(source, 1)
        if (match := re.search(r"# E: ([\w-]+)", line))
    }
    found = set()
    for line in mypy(HERE / "misuse.py"):
        match = re.search(r":(\d+): error: .*\[([\w-]+)\]$", line)
        assert match, line
        found.add((int(match.group(1)), match.group(2)))
    assert found == expected


def pyright(path: Path) -> list[int]:
    """Return the lines pyright reports errors on (skip if pyright cannot run here at all)."""
    binary = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if binary is None:
        pytest.skip("pyright is not installed")
    done = subprocess.run(
        [binary, "--pythonpath", sys.executable, "--outputjson", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:  # no report at all: it could not fetch or start its Node program
        pytest.skip(f"pyright did not run: {(done.stderr or done.stdout)[-300:]}")
    return sorted(
        item["range"]["start"]["line"] + 1
        for item in report["generalDiagnostics"]
        if item["severity"] == "error"
    )


def test_typed_usage_and_misuse_under_pyright() -> None:
    assert pyright(HERE / "usage.py") == []
    source = (HERE / "misuse.py").read_text().splitlines()
    expected = [number for number, line in enumerate(source, 1) if re.search(r"# E: [\w-]+", line)]
    assert pyright(HERE / "misuse.py") == expected
