"""The public API type-checks under ``mypy --strict``: parameters and results survive decoration.

Runs mypy in-process over tests/typing/: usage.py must be clean; misuse.py must give exactly
the errors its ``# E:`` comments name, on their lines (so the check above cannot pass vacuously).
"""

from __future__ import annotations

import re
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
