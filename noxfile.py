"""Sessions: tests, lint, typecheck, bench, docs, demo (``python -m nox -s <name>``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_groups(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (it starts its own redis-server processes)."""
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
    session.install("-e", ".[hiredis]")
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
