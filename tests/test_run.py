"""The run layer: a run directory opened again, the generator contract's one shape check,
where a configuration problem points, and errors leaving a run as themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import trio

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.errors import GenerationError
from gridloom.generators import ColumnGenerator, RowFailure
from gridloom.generators.base import normalize_result
from gridloom.run import Run
from gridloom.storage import data_files, inspect_run, read_run_metadata


def slow_cell(row: dict[str, Any], ctx: gl.CellContext) -> int:
    """Fails on every fourth row; the others double ``n``."""
    if ctx.row_id % 4 == 0:
        raise ValueError(f"row {ctx.row_id} is unlucky")
    return int(row["n"]) * 2


#: Cancelled by :func:`stopping_cell` at row 9 (set by the test).
STOP = trio.CancelScope()


async def stopping_cell(row: dict[str, Any], ctx: gl.CellContext) -> int:
    """Returns ``n``; row 9 stops the run (as a signal would), in its third row group."""
    if ctx.row_id == 9:
        STOP.cancel()
    return int(row["n"])


def _pipeline(function: str, **run: Any) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 1, "high": 9, "convert_to": "int"}},
                {
                    "name": "m",
                    "custom": {"function": f"tests.test_run:{function}", "dtype": "int"},
                    "depends_on": ["n"],
                },
            ],
            "run": {"seed": 3, "row_group_size": 4, "allow_drops": 1.0, **run},
        }
    )


async def test_open_run_gives_the_result_of_a_finished_run(tmp_path: Path) -> None:
    """gl.open_run(dir) reads back what the run returned: status, counts, summary, data,
    drops."""
    out = tmp_path / "run"
    result = await gl.acreate(_pipeline("slow_cell"), num_records=10, output_dir=out)
    opened = gl.open_run(out)
    assert opened.status == result.status == "complete"
    assert (opened.num_records, opened.num_rows, opened.num_dropped, opened.seed) == (
        result.num_records,
        result.num_rows,
        result.num_dropped,
        result.seed,
    )
    assert opened.columns == result.columns
    assert opened.table.equals(result.table)
    assert opened.dropped.equals(result.dropped)
    assert opened.drop_reasons == result.drop_reasons == {"m": {"ValueError": 3}}
    assert opened.summary["models"] == result.summary["models"]
    assert opened.summary["invocation"] == result.summary["invocation"]
    assert opened.wall_time == result.wall_time


async def test_open_run_of_a_stopped_run_holds_what_was_written(tmp_path: Path) -> None:
    """A run cut short opens with the row groups written before the stop, and its status."""
    global STOP
    STOP = trio.CancelScope()
    out = tmp_path / "run"
    with STOP:
        config = _pipeline("stopping_cell", max_row_groups_in_flight=1)
        await gl.acreate(config, num_records=16, output_dir=out)
    opened = gl.open_run(out)
    assert opened.status == "interrupted"
    assert opened.num_records == 16
    # Groups 0 and 1 were written; group 2 too when it finished in the step of the stop.
    assert opened.num_rows == 4 * len(data_files(out))
    assert opened.num_rows in (8, 12)
    assert opened.table.column("m").to_pylist() == opened.table.column("n").to_pylist()
    assert read_run_metadata(out)["status"] == "interrupted"
    assert inspect_run(out, sample_rows=2).sample.num_rows == 2


def test_open_run_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    """A folder without metadata.json is no run to open."""
    with pytest.raises(gl.StorageError, match=r"no metadata\.json"):
        gl.open_run(tmp_path)


class _Pair(ColumnGenerator):
    granularity = "cell"

    def __init__(self) -> None:
        super().__init__(name="pair", outputs={"a": pa.int64(), "b": pa.int64()})


class _One(ColumnGenerator):
    def __init__(self) -> None:
        super().__init__(name="one", outputs={"one": pa.int64()})


def test_normalize_result_checks_the_declared_shape() -> None:
    """A generator filling one column named as itself returns the value; any other returns a
    mapping of exactly its outputs; a batch's sequences hold one value per row."""
    assert normalize_result(_One(), "cell", 5, 1) == {"one": 5}
    assert normalize_result(_One(), "batch", [1, 2], 2) == {"one": [1, 2]}
    failure = RowFailure(ValueError("x"))
    assert normalize_result(_Pair(), "cell", {"a": 1, "b": failure}, 1) == {"a": 1, "b": failure}
    with pytest.raises(GenerationError, match=r"column 'pair': .*keys \['a', 'b'\], got int"):
        normalize_result(_Pair(), "cell", 3, 1)
    with pytest.raises(GenerationError, match="mapping with keys"):
        normalize_result(_Pair(), "cell", {"a": 1}, 1)
    with pytest.raises(GenerationError, match="returned 1 values for 2 rows"):
        normalize_result(_One(), "batch", [1], 2)
    with pytest.raises(GenerationError, match="returned str, expected a list of 2 values"):
        normalize_result(_One(), "batch", "ab", 2)


def test_a_compile_error_knows_its_column_kind() -> None:
    """A problem found while compiling names the field without its kind key; the issue
    carries the column's kind, so the command line can point at columns.<name>.<kind>.<field>."""
    config = {"columns": [{"name": "m", "custom": {"function": "tests.test_run:no_such_function"}}]}
    with pytest.raises(gl.ConfigError) as caught:
        gl.validate(config)
    issue = caught.value.issues[0]
    assert (issue.column, issue.kind) == ("m", "custom")


async def test_errors_leave_a_run_as_themselves(tmp_path: Path) -> None:
    """An error of the run's work comes out of Run as itself, not in an exception group."""
    out = tmp_path / "run"
    await Run(_pipeline("slow_cell")).create(num_records=4, output_dir=out)
    with pytest.raises(gl.OutputExistsError):
        await Run(_pipeline("slow_cell")).create(num_records=4, output_dir=out)
    with pytest.raises(ValueError, match="exclude each other"):
        await Run(_pipeline("slow_cell")).create(
            num_records=4, output_dir=out, resume=True, overwrite=True
        )
