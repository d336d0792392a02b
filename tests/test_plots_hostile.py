"""``render_plots`` on a damaged run directory: a trace or ``metadata.json`` altered by hand,
by another tool or by an attacker gives the pictures or a StorageError naming the file and
the field — never a failure deep in matplotlib or pyarrow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.cli import cli
from gridloom.errors import StorageError
from gridloom.plots import render_plots
from gridloom.trace import TRACE_SCHEMA
from gridloom.trace._read import MAX_TRACE_SECONDS

from .test_trace import traced_run

pytest.importorskip("matplotlib")

_TIMES = ["ready", "dispatched", "slot", "sent", "response", "completed"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One traced run (30 rows, 429s and 500s included), copied by each test."""
    out = tmp_path_factory.mktemp("plots") / "run"

    async def main() -> None:
        await traced_run(out, error_500_rate=0.2)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out


def _copy(run_dir: Path, tmp: Path) -> Path:
    target = tmp / "run"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_dir, target)
    for png in target.glob("*.png"):
        png.unlink()
    return target


_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` (key and index paths), ``here`` included."""
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*here, index))
    return found


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    doc[head] = _replace(doc[head], tuple(rest), new)
    return doc


def _render_or_refuse(out: Path) -> None:
    refused: StorageError | None = None
    try:
        written = render_plots(out)
    except StorageError as exc:
        refused = exc
    if refused is not None:
        assert "cannot read" in str(refused), refused
        assert str(out) in str(refused)
        return
    assert written
    assert all(p.is_file() for p in written)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), new=_JSON)
def test_damaged_metadata_gives_pictures_or_a_storage_error(
    run_dir: Path, tmp_path: Path, data: st.DataObject, new: Any
) -> None:
    """Any part of metadata.json's ``summary.models`` (the part the pictures read), replaced
    by any JSON value: render_plots draws or raises StorageError naming the file."""
    out = _copy(run_dir, tmp_path)
    path = out / "metadata.json"
    doc = json.loads(path.read_text())
    places = [("summary", "models", *p) for p in _paths(doc["summary"]["models"])]
    place = data.draw(st.sampled_from(places))
    path.write_text(json.dumps(_replace(doc, place, new)))
    _render_or_refuse(out)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    value=st.one_of(
        st.sampled_from(
            [float("inf"), -float("inf"), float("nan"), 1e308, -1e12, MAX_TRACE_SECONDS * 2]
        ),
        st.floats(-1e6, 1e6),
    ),
)
def test_damaged_trace_times_give_pictures_or_a_storage_error(
    run_dir: Path, tmp_path: Path, data: st.DataObject, value: float
) -> None:
    """Any time of any attempt set to anything (infinite, huge, negative, NaN, out of
    order): render_plots draws or raises StorageError naming the file."""
    out = _copy(run_dir, tmp_path)
    path = out / "trace.parquet"
    table = pq.read_table(path)
    column = data.draw(st.sampled_from(_TIMES))
    row = data.draw(st.integers(0, table.num_rows - 1))
    values = table.column(column).to_pylist()
    values[row] = value
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, pa.float64())
    )
    pq.write_table(table, path)
    _render_or_refuse(out)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda t: t.drop_columns(["completed"]), "it has no 'completed' column"),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("sent"), "sent", pa.array(["x"] * t.num_rows)
            ),
            "its 'sent' column holds string, not double",
        ),
        (lambda t: pa.table({"a": [1, 2]}), "it has no 'row_group' column"),
    ],
)
def test_a_trace_that_is_not_gridlooms_is_refused_by_name(
    run_dir: Path, tmp_path: Path, damage: Any, problem: str
) -> None:
    """A trace missing a column, or holding one with another type, is refused naming it."""
    out = _copy(run_dir, tmp_path)
    path = out / "trace.parquet"
    pq.write_table(damage(pq.read_table(path)), path)
    with pytest.raises(StorageError, match="not a gridloom trace") as caught:
        render_plots(out)
    assert problem in str(caught.value)


def test_a_trace_that_is_not_parquet_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """Bytes that are not parquet: a StorageError naming the file; the CLI exits 1 with it."""
    out = _copy(run_dir, tmp_path)
    (out / "trace.parquet").write_bytes(b"PAR1 not really" * 10)
    with pytest.raises(StorageError, match=r"cannot read .*trace\.parquet"):
        render_plots(out)
    result = CliRunner().invoke(cli, ["plot", str(out), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["type"] == "StorageError"


def test_a_whole_trace_column_of_nan_still_draws(run_dir: Path, tmp_path: Path) -> None:
    """NaN means "not reached": a trace where no attempt reached the model draws the column
    activity, without models or latency pictures."""
    out = _copy(run_dir, tmp_path)
    path = out / "trace.parquet"
    table = pq.read_table(path)
    for name in ("sent", "response"):
        table = table.set_column(
            table.schema.get_field_index(name),
            name,
            pa.array([float("nan")] * table.num_rows, pa.float64()),
        )
    pq.write_table(table, path)
    names = [p.name for p in render_plots(out)]
    assert names[0] == "columns.png"
    assert "latency.png" not in names
    assert set(TRACE_SCHEMA.names) <= set(pq.read_schema(path).names)
