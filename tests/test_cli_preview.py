"""``gridloom preview`` starting up: what it imports, the Arrow warm-up, its phase marks."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from gridloom.cli._startup import IDLE_SECONDS, TIMES_ENV, ArrowWarmup, PhaseMarks

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
HAVE_PANDAS = importlib.util.find_spec("pandas") is not None


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this checkout's gridloom first on the path)."""
    environ = {**os.environ, **env}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=120,
    )


def test_the_command_line_imports_no_pandas_or_matplotlib() -> None:
    """Importing the command line (all a preview imports before its first request) leaves
    pandas and matplotlib out: pyarrow brings pandas in only on its first conversion. Nor
    pyarrow.compute (tens of milliseconds: its functions are generated as it is imported),
    which only the trace's end needs."""
    done = python(
        """
        import sys
        import gridloom.cli
        heavy = ("pandas", "matplotlib", "pyarrow.compute")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


HAVE_HTTPX_CLI = all(importlib.util.find_spec(m) is not None for m in ("rich", "pygments"))


def test_the_command_line_leaves_out_httpx_s_command_line() -> None:
    """The gridloom command's process never imports httpx's own command line (nor pygments,
    which only that needs), and httpx still works there; a program importing gridloom gets
    httpx untouched, its command line included when its extras are installed."""
    command = python(
        """
        import sys
        import gridloom.cli
        import httpx
        assert httpx.Client and httpx.Timeout(1.0)
        print(sys.modules["httpx._main"], "pygments" in sys.modules)
        """
    )
    assert command.returncode == 0, command.stderr
    assert command.stdout.split() == ["None", "False"]
    program = python(
        """
        import sys
        import gridloom as gl
        gl.create, gl.PipelineBuilder
        import httpx
        print(sys.modules.get("httpx._main") is not None)
        """
    )
    assert program.returncode == 0, program.stderr
    assert program.stdout.strip() == str(HAVE_HTTPX_CLI)


def test_importing_gridloom_loads_its_parts_on_first_use() -> None:
    """``import gridloom`` imports no engine, httpx or pyarrow; each public name and each
    subpackage arrives on first use, and ``dir()`` lists every public name."""
    done = python(
        """
        import sys
        import gridloom as gl
        heavy = ("gridloom.engine", "httpx", "pyarrow", "trio")
        print(sorted(m for m in heavy if m in sys.modules))
        assert set(gl.__all__) <= set(dir(gl))
        assert gl.create.__module__ == "gridloom._api"
        assert gl.config.COLUMN_KINDS["uuid"] is gl.UUIDColumn
        assert isinstance(gl.__version__, str)
        from gridloom import ConfigError, open_run
        assert issubclass(ConfigError, gl.GridloomError) and open_run
        try:
            gl.no_such_name
        except AttributeError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[]",
        "module 'gridloom' has no attribute 'no_such_name'",
    ]


def test_the_warmup_converts_once_the_loop_sleeps() -> None:
    """A loop gone to sleep with nothing due soon and no worker thread busy (as one waiting on
    its models) lets the helper make pyarrow's first conversion, which imports pandas when it
    is installed."""
    done = python(
        """
        import sys
        from gridloom.cli._startup import ArrowWarmup
        before = "pandas" in sys.modules
        with ArrowWarmup(busy_threads=lambda: 0) as warmup:
            warmup.before_io_wait(60.0)  # the loop sleeps, and does not wake up
            assert warmup.done.wait(60)
        print(before, warmup.started is not None, warmup.ended is not None,
              "pandas" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", str(HAVE_PANDAS)]


@pytest.mark.parametrize(
    ("timeout", "busy"),
    [(IDLE_SECONDS / 2, 0), (60.0, 1)],
    ids=["a short wait", "a worker thread busy"],
)
def test_the_warmup_ignores_a_loop_that_is_not_idle(timeout: float, busy: int) -> None:
    """A wait with something due within IDLE_SECONDS, or one while a worker thread runs (the
    pipeline compiling), never starts the conversion; leaving ends the helper."""
    with ArrowWarmup(busy_threads=lambda: busy) as warmup:
        warmup.before_io_wait(timeout)
    assert warmup.done.is_set()
    assert warmup.started is None


def test_leaving_the_warmup_ends_its_thread() -> None:
    """Leaving the warm-up stops the helper (or waits for its conversion): no thread is left."""
    with ArrowWarmup() as warmup:
        pass
    assert warmup.done.is_set()
    assert warmup.started is None
    assert not any(t.name == "gridloom-arrow-warmup" for t in threading.enumerate())


def test_phase_marks_are_kept_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without GRIDLOOM_PREVIEW_TIMES the marks record and write nothing."""
    monkeypatch.delenv(TIMES_ENV, raising=False)
    marks = PhaseMarks()
    marks.mark("command")
    marks.save()
    assert marks.path is None
    assert marks.marks == {}


def test_a_traced_preview_writes_its_phases_and_requests(tmp_path: Path) -> None:
    """With GRIDLOOM_PREVIEW_TIMES (and tracing) the preview prints its rows and writes its
    phase marks in order, and each model request's sent and answer times after its start."""
    times = tmp_path / "times.json"
    env = {**os.environ, TIMES_ENV: str(times), "GRIDLOOM_TRACE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "gridloom", "preview", str(QUICKSTART), "-n", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 of 3 rows" in done.stdout
    doc = json.loads(times.read_text())
    marks = doc["marks"]
    order = ["command", "config_loaded", "loop_started", "run_returned", "printed"]
    assert list(marks) == order
    assert [marks[p] for p in order] == sorted(marks[p] for p in order)
    requests = doc["requests"]
    # summary, facts and quality call a model once per row.
    assert sorted((r["row_id"], r["column"]) for r in requests) == sorted(
        (row, column) for row in range(3) for column in ("summary", "facts", "quality")
    )
    for r in requests:
        assert marks["loop_started"] <= r["sent"] <= r["response"] <= marks["run_returned"]


#: Parts a run loads only when its pipeline uses them: the seed dataset's reader, YAML and
#: XML answers, and the sharded run's driver and worker (``executor: ray``).
ON_DEMAND = (
    "gridloom.generators.seed",
    "gridloom.generators._safe_yaml",
    "gridloom.generators._xml_json",
    "defusedxml",
    "gridloom.run._sharded",
    "gridloom.run._shard",
    "gridloom.run._cluster",
)
USED = {
    "gridloom.generators.seed",
    "gridloom.generators._safe_yaml",
    "gridloom.generators._xml_json",
    "defusedxml",
}


def _preview_loads(config: Path) -> list[str]:
    """Which of ON_DEMAND a ``gridloom preview`` of ``config`` (5 rows, in a fresh
    interpreter, through the console script's entry point) has loaded once it has printed."""
    done = python(
        f"""
        import sys
        from gridloom.__main__ import main
        sys.argv = ["gridloom", "preview", {str(config)!r}, "-n", "5", "--no-cache"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        print(sorted(m for m in {ON_DEMAND!r} if m in sys.modules))
        """,
        GRIDLOOM_PROGRESS="off",
    )
    assert done.returncode == 0, done.stderr
    assert "5 of 5 rows" in done.stdout, done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_a_preview_loads_only_the_parts_its_pipeline_uses(tmp_path: Path) -> None:
    """The quickstart (JSON answers, no seed dataset, one process) previews without loading
    the seed reader, YAML or XML parsing, or the sharded run; a pipeline with a seed dataset
    and YAML and XML answers loads the ones it uses, and its rows come out the same way."""
    assert _preview_loads(QUICKSTART) == []

    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    pq.write_table(pa.table({"city": ["Oslo", "Lima", "Pune"]}), tmp_path / "seed.parquet")
    record = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
        "required": ["name", "size"],
    }
    config = {
        "providers": [{"name": "sim", "type": "simulated"}],
        "models": [{"alias": "m", "provider": "sim", "model": "m-1"}],
        "seed_dataset": {"path": "seed.parquet"},
        "columns": [
            {
                "name": fmt,
                "llm_structured": {
                    "model": "m",
                    "prompt": f"A record about {{{{ city }}}}, in {fmt}.",
                    "format": fmt,
                    "schema": record,
                },
            }
            for fmt in ("yaml", "xml")
        ],
    }
    path = tmp_path / "uses.yaml"
    path.write_text(yaml.safe_dump(config))
    assert _preview_loads(path) == sorted(USED)


#: Parts of pyarrow a preview of the quickstart has no use for before its first model request
#: (nor after it: a preview reads and writes no file). Together ~7 ms of import.
FILE_FORMATS = ("pyarrow.parquet", "pyarrow.fs", "pyarrow.dataset", "pyarrow.csv")


#: Modules a preview of the quickstart without the response cache has no use for before its
#: first model request: h11 frames only requests that do not take the fast exchange (about
#: 10 ms of import), sqlite3 serves the cache, xml.sax the simulator's XML answers.
UNUSED_FIRST = ("h11", "sqlite3", "xml.sax")


def _first_request_modules(*preload: str) -> tuple[list[str], dict[str, object]]:
    """A ``gridloom preview`` of the quickstart (5 rows, ``--json``, ``--no-cache``, in a fresh
    interpreter, through the console script's entry point, after importing ``preload``): the
    pyarrow modules and those of :data:`UNUSED_FIRST` loaded when its first model request went
    out, and the JSON document it printed."""
    done = python(
        f"""
        import sys
        for name in {list(preload)!r}:
            __import__(name)
        from gridloom.clients._wire import WireTransport
        from gridloom.__main__ import main

        loaded = []
        post = WireTransport.post

        async def first_post(self, *args, **kwargs):
            if not loaded:
                wanted = {UNUSED_FIRST!r}
                loaded.append(
                    sorted(m for m in sys.modules if m.startswith("pyarrow") or m in wanted)
                )
            return await post(self, *args, **kwargs)

        WireTransport.post = first_post
        sys.argv = ["gridloom", "preview", {str(QUICKSTART)!r}, "-n", "5", "--json", "--no-cache"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        print(loaded)
        """,
        GRIDLOOM_PROGRESS="off",
    )
    assert done.returncode == 0, done.stderr
    *doc, last = done.stdout.strip().splitlines()
    # One list: the wrapped post saw the first request (none seen fails here, not silently).
    (loaded,) = json.loads(last.replace("'", '"'))
    return loaded, json.loads("\n".join(doc))


def test_a_preview_sends_its_first_request_before_loading_arrow_s_file_formats() -> None:
    """The quickstart's preview sends its first model request without having imported
    pyarrow's parquet, filesystem or other file-format modules (the run directory's storage
    and the trace writer import them where they use them), and prints the same rows and
    schema as a process that had them loaded from the start."""
    loaded, doc = _first_request_modules()
    assert [m for m in FILE_FORMATS if m in loaded] == []
    _, eager = _first_request_modules(*FILE_FORMATS)
    assert doc["num_rows"] == 5
    assert (doc["rows"], doc["schema"]) == (eager["rows"], eager["schema"])


def test_a_preview_sends_its_first_request_before_importing_arrow() -> None:
    """The quickstart's preview sends its first model request before pyarrow is imported
    (compiling the pipeline builds no Arrow type; the warm-up helper imports pyarrow while
    the run waits on the models), and prints the same rows and schema as a process that
    imported pyarrow first."""
    loaded, doc = _first_request_modules()
    assert [m for m in loaded if m.startswith("pyarrow")] == []
    _, eager = _first_request_modules("pyarrow")
    assert (doc["rows"], doc["schema"]) == (eager["rows"], eager["schema"])


def test_a_preview_sends_its_first_request_without_h11_sqlite3_or_xml() -> None:
    """Without the response cache, the quickstart's preview sends its first model request
    before importing h11 (its requests take the fast exchange), sqlite3 (no cache) or
    xml.sax (no XML answer), and prints the same rows as a process that loaded them first."""
    loaded, doc = _first_request_modules()
    assert [m for m in UNUSED_FIRST if m in loaded] == []
    _, eager = _first_request_modules(*UNUSED_FIRST)
    assert doc["num_rows"] == 5
    assert (doc["rows"], doc["schema"]) == (eager["rows"], eager["schema"])
