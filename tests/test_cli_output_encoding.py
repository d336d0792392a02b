"""No string the command line prints can crash its output: lone surrogates (from a
``"\\ud800"`` escape in a JSON config, a value, a non-UTF-8 file name decoded with
``surrogateescape``) and characters the stream's encoding lacks (an ASCII stdout) are
escaped, in JSON and in plain text, and the command ends with its own exit code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.cli._output import Out, render_rows
from gridloom.cli._stdout import json_text, text_stdout, write_json
from tests.strategies import any_texts

SURROGATE_CONFIG = '{"columns": [{"name": "a\\ud800", "uniform": {"low": 0, "high": 1}}]}'

SURROGATE_FUNCTION = """\
def f(row, ctx):
    return "x\\ud800y"
"""

PIPELINE = """\
columns:
  - {name: a, uniform: {low: 0, high: 1}}
  - {name: b, custom: {function: "surrogates:f"}, depends_on: [a]}
"""


def gridloom(*args: str | Path | bytes, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def _one_document(stdout: str) -> dict[str, Any]:
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("as_json", [False, True])
def test_a_lone_surrogate_in_a_config_is_a_config_error(tmp_path: Path, as_json: bool) -> None:
    """The config error (exit 2) names the column, with its lone surrogate escaped; with
    --json it is one JSON object whose strings read back as they were."""
    config = tmp_path / "sur.json"
    config.write_text(SURROGATE_CONFIG)
    proc = gridloom("validate", config, *(["--json"] if as_json else []))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    if not as_json:
        assert "column 'a\\ud800', field 'name'" in proc.stderr
        return
    error = _one_document(proc.stdout)["error"]
    assert error["type"] == "ConfigError"
    assert error["path"] == "columns.a\ud800.name"
    assert error["errors"][0]["column"] == "a\ud800"


@pytest.mark.parametrize("as_json", [False, True])
def test_a_preview_whose_value_holds_a_lone_surrogate_says_so_cleanly(
    tmp_path: Path, as_json: bool
) -> None:
    """A custom function returns text with a lone surrogate: the row cannot be stored, so it
    is dropped (exit 5, fewer rows than asked), and the preview says why in its drop lines or
    its JSON object, the value escaped."""
    (tmp_path / "surrogates.py").write_text(SURROGATE_FUNCTION)
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    proc = gridloom("preview", config, "-n", "2", *(["--json"] if as_json else []))
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    if as_json:
        document = _one_document(proc.stdout)
        assert document["error"]["type"] == "RunIncomplete"
        (example,) = document["drop_examples"]
        assert example["error_type"] == "ValueTypeError"
        assert "x\\ud800y" in example["message"]
    else:
        assert "x\\ud800y" in proc.stdout + proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes")
@pytest.mark.parametrize("as_json", [False, True])
def test_a_file_name_that_is_not_utf8(tmp_path: Path, as_json: bool) -> None:
    """A config whose name is not UTF-8 (decoded with surrogateescape) validates; a UTF-8
    locale's strict stdout prints its name escaped, --json as the same string."""
    name = os.fsdecode(b"p\xff.yaml")
    (tmp_path / name).write_text("columns:\n  - {name: a, uniform: {low: 0, high: 1}}\n")
    path = os.fsencode(tmp_path / name)
    proc = gridloom("validate", path, *(["--json"] if as_json else []), LC_ALL="C.UTF-8")
    assert proc.returncode == 0, proc.stderr
    if as_json:
        assert _one_document(proc.stdout)["config"] == str(tmp_path / name)
    else:
        assert "p\\udcff.yaml: valid" in proc.stdout
    missing = os.fsencode(tmp_path / os.fsdecode(b"q\xfe.yaml"))
    proc = gridloom("validate", missing, *(["--json"] if as_json else []), LC_ALL="C.UTF-8")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    if as_json:
        assert _one_document(proc.stdout)["error"]["file"].endswith(os.fsdecode(b"q\xfe.yaml"))


def test_json_on_an_ascii_stdout(tmp_path: Path) -> None:
    """On an ASCII stdout the JSON escapes non-ASCII text (a column named `café`) and reads
    back the same."""
    config = tmp_path / "p.yaml"
    config.write_text("columns:\n  - {name: café, uniform: {low: 0, high: 1}}\n", "utf-8")
    proc = gridloom("validate", config, "--json", PYTHONIOENCODING="ascii")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii()
    assert _one_document(proc.stdout)["schema"] == {"café": "double"}


def _strict(encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")


def _written(stream: io.TextIOWrapper) -> bytes:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue()


@given(st.dictionaries(any_texts, any_texts | st.lists(any_texts, max_size=3), max_size=4))
def test_any_text_is_written_as_json_that_reads_back(doc: dict[str, Any]) -> None:
    """Whatever the strings, the JSON text encodes as UTF-8 and reads back equal; a stream
    that cannot hold it (ASCII, UTF-8 strict) gets the same document."""
    assert json.loads(json_text(doc).encode("utf-8")) == doc
    for encoding in ("utf-8", "ascii", "latin-1"):
        stream = _strict(encoding)
        old = sys.stdout
        sys.stdout = stream
        try:
            write_json(doc)
        finally:
            sys.stdout = old
        assert json.loads(_written(stream).decode(encoding)) == doc


@given(st.lists(st.dictionaries(any_texts, any_texts, min_size=1, max_size=3), max_size=3))
def test_any_text_is_printed_as_plain_text(rows: list[dict[str, Any]]) -> None:
    """A preview's rows and an error message of any text print on a strict UTF-8 (or ASCII:
    click writes UTF-8 there) stdout and stderr without raising."""
    columns = sorted({name for row in rows for name in row})
    for encoding in ("utf-8", "ascii"):
        out, err = _strict(encoding), _strict(encoding)
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            with text_stdout():
                for line in render_rows(rows, columns):
                    click.echo(line)
                message = " ".join(columns)
                with pytest.raises(SystemExit):
                    Out("preview", as_json=False).fail(1, message, kind="X", file=message)
        finally:
            sys.stdout, sys.stderr = old
        assert out.errors == err.errors == "strict"  # put back
        assert _written(out).endswith(b"\n")
        assert _written(err).startswith(b"error: ")
