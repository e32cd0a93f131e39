"""Generate the sync store from the async one: ``python scripts/unasync.py [--check]``.

The L2 commands are written once, as coroutines, in ``tiercache/_l2/async_commands.py``. The
sync store is the same code with ``await`` and ``async`` taken out and the ``a``-prefixed names
unprefixed (as httpcore's ``scripts/unasync.py`` does for its connection pool). ``--check``
writes nothing and fails if the generated file differs from what is committed: the test suite
runs it, so the two cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tiercache" / "_l2" / "async_commands.py"
TARGET = ROOT / "tiercache" / "_l2" / "sync_store.py"

#: Whole words only; applied in order.
SUBSTITUTIONS = (
    ("AsyncCommands", "SyncStore"),
    ("aattempt", "attempt"),
    ("aclose", "close"),
    ("async def", "def"),
    ("await ", ""),
)

HEADER = '''"""The L2 commands the tiers send, for sync callers: GENERATED, do not edit.

Made from ``async_commands.py`` by ``scripts/unasync.py`` (``nox -s unasync``); edit that file,
then run it. The test suite fails while the two differ.
"""
'''


def _substitute(line: str) -> str:
    for old, new in SUBSTITUTIONS:
        line = re.sub(rf"\b{re.escape(old)}" + (r"\b" if old[-1].isalnum() else ""), new, line)
    return line


def generate(source: str) -> str:
    """Return the sync module made from the async module's text ``source``."""
    body = source[source.index('"""', 3) + 3 :].lstrip("\n")  # (the source's own docstring goes)
    return HEADER + "\n" + "".join(_substitute(line) for line in body.splitlines(keepends=True))


def main(argv: list[str]) -> int:
    """Write the sync store, or with ``--check`` say whether the committed one is up to date."""
    generated = generate(SOURCE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != generated:
            print(f"{TARGET} is not what {SOURCE.name} makes: run nox -s unasync")
            return 1
        return 0
    TARGET.write_text(generated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
