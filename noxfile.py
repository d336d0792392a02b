"""Sessions: tests, lint, typecheck, bench. `python3 -m nox -s tests` is the test command."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

LINTED = ("src", "tests", "bench", "examples", "docs", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (unit, property, integration); the example column-kind plugin is
    installed too, as a third party's would be (tests/test_plugin_example.py)."""
    session.install("-e", ".[test]")
    # In a second step, so its dependency on gridloom is met by the editable install above
    # (in one pip command with `-e .[test]`, pip looked for gridloom on the index and failed).
    session.install("./examples/plugin")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the example plugin."""
    session.install("-e", ".[dev]")
    session.install("./examples/plugin")  # after gridloom, as in the tests session
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Quick benchmarks (about 10 minutes on 2 cores); figures and plots go to bench/results/.

    How soon ``gridloom preview`` prints its rows (5 fresh processes, about 15 s); engine
    overhead at 5,000 and 10,000 rows (10,000 again: traced twice, untraced once) and the
    self-hosted cases (512 in flight, 20,000 cells; 2,048 in flight, 40,000 cells); the four DAG
    shapes at 10 records (3 trials) and 100 records (1 trial), cell vs column; the throttle's
    goodput at 300 rows; scale-out on Ray (goodput vs shards, throughput vs workers, the fixed
    cost of a shard; about 90 s); the response cache's lookup CPU against an uncached cell's
    (about 10 s). Then one combined table.

    The benchmarks whose targets are absolute (seconds over a critical path, CPU milliseconds
    per cell, cells per second against the endpoint's nominal rate) run first, nearest to the
    moment the suite was started: on a VM whose speed changes by the hour, they are then
    measured at the pace that was checked before starting it. The ones judged as ratios within
    their own run (the shapes against their bounds, the throttle's goodput, scale-out) follow.
    """
    session.install("-e", ".[bench]")
    env = {"GRIDLOOM_PROGRESS": "off"}
    session.run("python", "bench/preview.py", env=env)
    session.run("python", "bench/overhead.py", "--quick", "--with-trace", env=env)
    session.run("python", "bench/shapes.py", "--quick", env=env)
    session.run("python", "bench/throttle.py", "--rows", "300", env=env)
    session.run("python", "bench/ray_scale.py", "--quick", env=env)
    session.run("python", "bench/cache.py", "--quick", env=env)
    session.run("python", "bench/report.py", *session.posargs)


@nox.session
def bench_full(session: nox.Session) -> None:
    """Every benchmark at full size (about 90 minutes): the shapes at 10 and 1,000 records with
    3 trials, engine overhead at 10,000 (also traced) and 100,000 rows, the self-hosted cases,
    the sampled profile of the CPU per LLM cell, the throttle at 1,000 rows, capacity
    changes, faults and resume, the scheduler's own costs, scale-out on Ray (1, 2, 4 shards).
    Then one combined table."""
    session.install("-e", ".[bench]")
    env = {"GRIDLOOM_PROGRESS": "off"}
    session.run("python", "bench/shapes.py", env=env)
    session.run("python", "bench/overhead.py", "--with-trace", env=env)
    session.run("python", "bench/profile.py", env=env)
    session.run("python", "bench/throttle.py", env=env)
    session.run("python", "bench/throttle_shift.py", env=env)
    session.run("python", "bench/faults.py", env=env)
    session.run("python", "bench/scale.py", env=env)
    session.run("python", "bench/cells.py", env=env)
    session.run("python", "bench/cells.py", "--model-bound", env=env)
    session.run("python", "bench/llm_socket.py", env=env)
    session.run("python", "bench/timeline.py", env=env)
    session.run("python", "bench/ray_scale.py", env=env)
    session.install("-e", ".[bench,person,scipy]")
    session.run("python", "bench/samplers.py", env=env)
    session.run("python", "bench/report.py", *session.posargs)


@nox.session
def bench_peer(session: nox.Session) -> None:
    """gridloom vs NVIDIA NeMo Data Designer 0.9.7 on the four shapes, same simulated endpoint.

    Data Designer is installed in its own venv (kept in nox's cache folder between runs; see
    bench/dd_env.py for its certifi pin), and runs in its own processes.
    """
    session.install("-e", ".[bench]")
    dd = session.cache_dir / "data-designer-0.9.7"
    session.run("python", "bench/dd_env.py", str(dd))
    session.run(
        "python",
        "bench/peer.py",
        "--dd-python",
        str(dd / "bin" / "python"),
        *session.posargs,
        env={"GRIDLOOM_PROGRESS": "off"},
    )
    session.run("python", "bench/report.py")
