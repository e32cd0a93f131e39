"""Where things are: the checkout the tests run from (workers start there, docs are read there)."""

from __future__ import annotations

from pathlib import Path

#: The repository's root: ``python -m tests.support.workers.NAME`` runs from it.
ROOT = Path(__file__).resolve().parents[2]
