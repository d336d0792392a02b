"""A damaged metadata.json (a field null, of the wrong type, or missing, at any depth) is a
clean error naming the file and the field, or is read around, for every reader: inspect,
export in each format, resume, and the Python API's result loading; never a traceback."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.errors import StorageError

ROWS = 6
FORMATS = ["jsonl", "csv", "parquet"]
#: Whether the hf format can be exported here (the ``hf`` extra).
HF = importlib.util.find_spec("datasets") is not None
#: What a field is replaced with; ``DELETE`` removes it.
DELETE = object()
REPLACEMENTS = [None, "x", "", -1, 0, 1.5, True, [], {}, {"a": None}, [None], 10**30, DELETE]


def pipeline() -> gl.PipelineConfig:
    return (
        gl.PipelineBuilder(seed=3)
        .category("topic", ["rivers", "volcanoes"])
        .uniform("n", 1, 9, convert_to="int")
        .expression("question", "About {{ topic }} #{{ n }}")
        .run(row_group_size=2, progress="off")
        .build()
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run, copied for each damage."""
    out = tmp_path_factory.mktemp("reference") / "run"
    gl.create(pipeline(), num_records=ROWS, output_dir=out)
    return out


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``doc``'s objects (lists are leaves)."""
    found = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    return found


def _damaged(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return changed


def _clean(res: Result, what: str) -> None:
    """The command ended with an exit code and its own message, not an exception."""
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{what}: {res.exception!r}\n{res.output}"
    )
    assert "Traceback" not in res.output, f"{what}:\n{res.output}"


def _api(action: Any) -> None:
    """``action`` works, or raises the clear error (a damaged file, naming it)."""
    with contextlib.suppress(StorageError):
        action()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_reader_tracebacks_on_a_damaged_metadata_json(
    reference: Path, data: st.DataObject
) -> None:
    """Mutate one field of a real metadata.json (null, wrong types, missing), then inspect
    (text and --json), export (each format; hf with the extra), open the result from Python
    (table, row groups one at a time, summary, drop reasons, export) and resume (command and
    API): each either works or ends with a clear error, never a traceback."""
    doc = json.loads((reference / "metadata.json").read_text())
    path = data.draw(st.sampled_from(_paths(doc)), label="field")
    value = data.draw(st.sampled_from(REPLACEMENTS), label="value")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        shutil.copytree(reference, out)
        (out / "metadata.json").write_text(json.dumps(_damaged(doc, path, value)))
        runner = CliRunner()

        def invoke(*args: str | Path) -> None:
            res = runner.invoke(cli, [str(a) for a in args])
            _clean(res, " ".join(map(str, args)))

        invoke("inspect", out)
        invoke("inspect", out, "--json")
        for fmt in FORMATS:
            invoke("export", out, "--format", fmt, "-o", Path(tmp) / f"x.{fmt}", "--overwrite")
        if HF:
            invoke("export", out, "--format", "hf", "-o", Path(tmp) / "x-hf", "--overwrite")
        invoke("export", out, "--format", "jsonl", "--json", "--overwrite")

        def load() -> None:
            result = gl.open_run(out)
            assert result.table.num_rows >= 0
            assert sum(t.num_rows for t in result.iter_tables()) >= 0
            json.dumps(result.summary)
            assert isinstance(result.drop_reasons, dict)
            result.export(Path(tmp) / "api.jsonl", "jsonl", overwrite=True)

        _api(load)
        _api(lambda: gl.create(pipeline(), num_records=ROWS + 2, output_dir=out, resume=True))
        invoke("resume", out, "-n", str(ROWS + 4), "--json")


@pytest.mark.parametrize(
    ("field", "value", "command"),
    [
        ("row_groups", None, ["export", "--format", "jsonl"]),
        ("row_groups", None, ["export", "--format", "jsonl", "--json"]),
        ("counts", {"topic": None}, ["inspect"]),
        ("counts", {"topic": {"done": "3"}}, ["inspect"]),
        ("schema", [], ["inspect"]),
        ("num_records", "6", ["inspect", "--json"]),
    ],
)
def test_the_reported_damage_names_the_file_and_field(
    reference: Path, tmp_path: Path, field: str, value: Any, command: list[str]
) -> None:
    """The reported cases: "row_groups": null for export, "counts": {"a": null} for plain
    inspect; each exits 1 with the storage error naming metadata.json and the field."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    doc = json.loads((out / "metadata.json").read_text())
    doc[field] = value
    (out / "metadata.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(cli, [command[0], str(out), *command[1:]])
    _clean(res, field)
    assert res.exit_code == 1, res.output
    assert "metadata.json is damaged" in res.output
    assert field in res.output
    assert str(out / "metadata.json") in res.output
    with pytest.raises(StorageError, match=f"metadata.json is damaged: {field}"):
        gl.open_run(out)
