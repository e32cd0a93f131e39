"""Sessions (``python -m nox -s <name>``): tests, other_pythons, lowest, newest, lint, typecheck, docs,
django_suite, bench, demo.

Every environment but ``lowest`` and ``newest`` installs exactly what ``uv.lock`` pins, so a fresh
machine runs what CI last passed with; those two resolve afresh on purpose, to try the oldest and
the newest releases ``pyproject.toml`` allows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "uv"

#: The CPython versions requires-python promises (and the classifiers list); tests run on each the
#: machine has.
SUPPORTED = ("3.11", "3.12", "3.13", "3.14")
#: Every extra, so the oldest and newest releases of each are tried.
EXTRAS = ("hiredis", "cli", "plot", "prometheus", "otel", "zstd", "django")
#: The suite on both cores: one redis-server per worker; a file stays on one worker (a docs page's
#: examples build on each other).
PARALLEL = ("-n", "auto", "--dist", "loadfile")


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
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The supported Pythons but this one and the newest: the newest runs the suite in ``newest`` (at the
#: newest releases, which the lock trails by at most an update), so a third full run there would
#: only repeat it; CI's time goes to what the other runs do not try.
OTHER_PYTHONS = [version for version in PYTHONS[:-1] if version != THIS_PYTHON]


def sync(session: nox.Session, *groups: str, extras: tuple[str, ...] = (), project: bool = True) -> None:
    """Install the project (with ``extras``) and ``groups`` at the versions uv.lock pins."""
    location = session.virtualenv.location
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *(f"--group={group}" for group in groups),
        *(f"--extra={extra}" for extra in extras),
        *(() if project else ("--no-install-project",)),
        f"--python={location}",
        env={"UV_PROJECT_ENVIRONMENT": location},
    )


def resolve(session: nox.Session, resolution: str) -> None:
    """Install the project, every extra and the test group, resolved afresh with ``resolution``.

    (In a new environment each time: uv keeps what is installed where it satisfies a requirement.)
    """
    session.run_install(
        "uv",
        "pip",
        "install",
        f"--resolution={resolution}",
        "-e",
        f".[{','.join(EXTRAS)}]",
        "--group=test",
    )
    session.run_install("uv", "pip", "list")  # (the log then says which releases were tried)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite on this Python, in parallel (it starts its own redis-servers)."""
    sync(session, "test")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(python=OTHER_PYTHONS)
def other_pythons(session: nox.Session) -> None:
    """Run the whole test suite on every other supported CPython this machine has but the newest.

    (The newest runs it in ``newest``; ``python -m nox -s tests --force-python 3.13`` runs it there
    from the lock.)
    """
    sync(session, "test")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(python=PYTHONS[:1], reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """Run the suite with the oldest release every requirement allows, on the oldest Python."""
    resolve(session, "lowest-direct")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(python=PYTHONS[-1:], reuse_venv=False)
def newest(session: nox.Session) -> None:
    """Run the suite with the newest release of everything, on the newest Python."""
    resolve(session, "highest")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff, and the package's layers with import-linter."""
    sync(session, "lint")
    session.run("ruff", "check", "tiercache", "tests", "benchmarks", "docs", "scripts", "noxfile.py")
    session.run(
        "ruff", "format", "--check", "tiercache", "tests", "benchmarks", "docs", "scripts", "noxfile.py"
    )
    session.run("python", "scripts/unasync.py", "--check")
    session.run("lint-imports", "--no-cache")


@nox.session(venv_backend="none")
def unasync(session: nox.Session) -> None:
    """Write the sync store (tiercache/_l2/sync_store.py) from the async commands it mirrors."""
    session.run("python", "scripts/unasync.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    sync(session, "typecheck")
    session.run("mypy", "tiercache")


@nox.session(python=sorted({PYTHONS[0], PYTHONS[-1]}))
def django_suite(session: nox.Session) -> None:
    """Run Django's own cache tests (from the sdist uv.lock pins) against TieredCache."""
    sync(session, "test")
    session.run("python", "tests/django_suite/run.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure tiercache against its peers in one run (ratios, medians)."""
    sync(session, "bench", extras=("hiredis", "zstd"))
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: cached slow lookups under a skewed request stream."""
    sync(session, extras=("cli", "plot"))
    session.run("python", "-m", "tiercache", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs (warnings are errors)."""
    sync(session, "docs", project=False)
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"})
