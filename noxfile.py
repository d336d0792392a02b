"""Sessions: tests, lint, typecheck, bench. `python3 -m nox -s tests` is the test command."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

LINTED = ("src", "tests", "bench", "examples", "docs", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (unit, property, integration)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; figures go to bench/results/."""
    session.install("-e", ".[test,bench]")
    session.run("python", "bench/scale.py", *session.posargs)
    session.run("python", "bench/cells.py", *session.posargs)
    session.run("python", "bench/cells.py", "--model-bound", *session.posargs)
    session.run("python", "bench/throttle.py")
    session.run("python", "bench/llm_socket.py")
    session.run("python", "bench/timeline.py")
