"""Sessions: tests, lint, typecheck, bench, docs, demo (``python -m nox -s <name>``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
#: The CPython versions requires-python promises (and the classifiers list); tests run on each the
#: machine has.
SUPPORTED = ("3.11", "3.12", "3.13", "3.14")


def _runs(command: str) -> bool:
    try:  # (our own interpreter names, no shell)
        done = subprocess.run([command, "-c", ""], capture_output=True, timeout=30, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _installed_pythons() -> list[str]:
    """Return the supported versions this machine can run, putting pyenv's on PATH if need be.

    pyenv installs versions side by side but answers only for the selected ones: a
    ``python3.12`` shim that exists yet refuses is not "missing", so its own bin goes on PATH.
    """
    found = []
    for version in SUPPORTED:
        command = f"python{version}"
        if not _runs(command):
            for bin_dir in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin"), reverse=True):
                if (bin_dir / command).exists():
                    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
                    break
        if _runs(command):
            found.append(version)
    return found


PYTHONS = _installed_pythons()


def install_groups(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the whole test suite on every supported CPython here (it starts its own redis-servers)."""
    session.install("-e", ".")
    install_groups(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff, and the package's layers with import-linter."""
    session.install("-e", ".")
    install_groups(session, "lint")
    session.run("ruff", "check", "tiercache", "tests", "benchmarks", "docs", "noxfile.py")
    session.run("ruff", "format", "--check", "tiercache", "tests", "benchmarks", "docs", "noxfile.py")
    session.run("lint-imports", "--no-cache")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    session.install("-e", ".")
    install_groups(session, "typecheck")
    session.run("mypy", "tiercache")


@nox.session
def bench(session: nox.Session) -> None:
    """Measure tiercache against its peers in one run (ratios, medians)."""
    session.install("-e", ".[hiredis,zstd]")
    install_groups(session, "bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: cached slow lookups under a skewed request stream."""
    session.install(".[cli,plot]")
    session.run("python", "-m", "tiercache", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs (warnings are errors)."""
    install_groups(session, "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"})
