"""User code reading a column its row does not hold (one its column's ``depends_on`` does not
list) gets a ``ColumnNotInRow`` — a ``KeyError`` — naming the column asked for, whether the
pipeline has it, the column whose ``depends_on`` must list it and what the row holds; not a
bare ``KeyError: 'greeting'``. Custom functions (cell, batch, async) and callable validators
alike; a held column, ``get``, ``in`` and ``except KeyError`` work as on a dict."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.errors import ColumnNotInRow, GenerationError
from gridloom.generators._rows import row_class
from gridloom.generators.base import BatchContext, CellContext
from gridloom.kinds.custom import CustomColumn, custom_generator

from .strategies import identifiers

SRC = str(Path(__file__).resolve().parent.parent / "src")
HERE = "tests.test_custom_rows"


def reads_greeting(row: dict[str, Any], ctx: Any) -> int:
    """The review's function: reads 'greeting', which it may not list."""
    return len(row["greeting"])


def reads_greeting_batch(columns: dict[str, list[Any]], ctx: Any) -> list[int]:
    return [len(g) for g in columns["greeting"]]


async def reads_greeting_async(row: dict[str, Any], ctx: Any) -> int:
    return len(row["greeting"])


def reads_typo(row: dict[str, Any], ctx: Any) -> int:
    return len(row["greting"])


def falls_back(row: dict[str, Any], ctx: Any) -> str:
    """Code that handles a missing key itself keeps working."""
    try:
        return str(row["greeting"])
    except KeyError:
        return f"{row.get('greeting')}|{'greeting' in row}|{sorted(row)}"


def validator_reads_greeting(value: Any, ctx: CellContext) -> bool:
    return bool(ctx.row["greeting"])


def batch_validator_reads_greeting(values: list[Any], ctx: BatchContext) -> list[bool]:
    return [bool(g) for g in ctx.columns["greeting"]]


def _pipeline(*columns: dict[str, Any]) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "columns": [
                {"name": "country", "category": {"values": ["France", "Japan"]}},
                {"name": "greeting", "expression": "{{ country }} says hi"},
                *columns,
            ],
            "run": {"seed": 1, "progress": "off"},
        }
    )


def _custom(function: str, **more: Any) -> dict[str, Any]:
    return {"name": "score", "custom": {"function": f"{HERE}:{function}", **more}}


def _reasons(result: gl.RunResult) -> list[str]:
    return [str(record["message"]) for record in result.dropped.to_pylist()]


@pytest.mark.parametrize(
    "column",
    [
        _custom("reads_greeting", dtype="int"),
        _custom("reads_greeting_async", dtype="int"),
        _custom("reads_greeting_batch", dtype="int", mode="batch"),
        _custom("reads_greeting", dtype="int") | {"depends_on": ["country"]},
    ],
    ids=["cell", "async", "batch", "other-depends"],
)
def test_a_custom_function_reading_an_unlisted_column_says_so(column: dict[str, Any]) -> None:
    """The drop reason names the column read, says the pipeline has it and that the column's
    depends_on must list it, and lists what the row held."""
    result = gl.preview(_pipeline(column), num_records=3)
    assert result.num_rows == 0
    assert result.drop_reasons == {"score": {"ColumnNotInRow": 3}}
    held = "'country'" if column.get("depends_on") else "nothing"
    for reason in _reasons(result):
        assert "read 'greeting', a column of the pipeline" in reason
        assert "list it in depends_on of column 'score'" in reason
        assert f"the row holds {held}" in reason


def test_listing_it_in_depends_on_fixes_it() -> None:
    """The same function with the column in depends_on writes every row."""
    column = _custom("reads_greeting", dtype="int") | {"depends_on": ["greeting"]}
    result = gl.preview(_pipeline(column), num_records=3)
    assert result.num_rows == 3
    assert result.table.column("score").to_pylist() == [
        len(g) for g in result.table.column("greeting").to_pylist()
    ]


def test_a_name_that_is_no_column_says_so_with_a_suggestion() -> None:
    """A typo names the column the pipeline has that it resembles."""
    column = _custom("reads_typo", dtype="int") | {"depends_on": ["greeting"]}
    result = gl.preview(_pipeline(column), num_records=2)
    for reason in _reasons(result):
        assert "read 'greting', which is not a column of the pipeline" in reason
        assert "(did you mean 'greeting'?)" in reason
        assert "'greeting'" in reason.partition("the row holds ")[2]


def test_code_that_handles_a_missing_key_keeps_working() -> None:
    """except KeyError catches it; get and in see a plain dict."""
    column = _custom("falls_back") | {"depends_on": ["country"]}
    result = gl.preview(_pipeline(column), num_records=2)
    assert result.table.column("score").to_pylist() == ["None|False|['country']"] * 2


@pytest.mark.parametrize("batch", [False, True])
def test_a_callable_validator_reading_an_unlisted_column_says_so(batch: bool) -> None:
    """ctx.row (ctx.columns per batch) of a callable validator: the same message, naming the
    validate column."""
    function = "batch_validator_reads_greeting" if batch else "validator_reads_greeting"
    check = {"kind": "callable", "target": "country", "function": f"{HERE}:{function}"}
    if batch:
        check["batch"] = True
    result = gl.preview(_pipeline({"name": "v", "validate": check}), num_records=2)
    assert result.drop_reasons == {"v": {"ColumnNotInRow": 2}}
    for reason in _reasons(result):
        assert "read 'greeting', a column of the pipeline" in reason
        assert "list it in depends_on of column 'v'" in reason
        assert "the row holds 'country'" in reason


def test_the_reviewed_cli_preview_names_the_column(tmp_path: Path) -> None:
    """`gridloom preview` on the review's config prints the reason, not a bare KeyError."""
    (tmp_path / "my_functions.py").write_text(
        "def score(row, ctx):\n    return len(row['greeting']) + ctx.rng.random()\n"
    )
    config = tmp_path / "g.yaml"
    config.write_text(
        "columns:\n"
        "  - {name: country, category: {values: [France, Japan, Kenya], weights: [3, 2, 1]}}\n"
        '  - {name: greeting, expression: "{{ country }} says hi"}\n'
        '  - {name: score,  custom: {function: "my_functions:score", dtype: float}}\n'
        "run: {seed: 1}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gridloom", "preview", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert "KeyError" not in out
    assert "ColumnNotInRow" in out
    assert "list it in depends_on of column 'score'" in out


def test_the_error_is_a_key_error_that_pickles() -> None:
    """args[0] is the key (as for any KeyError); the message survives pickling (a shard's
    failure crosses processes)."""
    generator = custom_generator(
        CustomColumn(name="score", function=reads_greeting),
        producers={"greeting": "greeting", "score": "score"},
    )
    ctx = CellContext(row={}, row_id=0, column="score", seed=1)
    with pytest.raises(ColumnNotInRow) as info:
        generator.generate(ctx)
    error = info.value
    assert isinstance(error, KeyError)
    assert isinstance(error, GenerationError)
    assert error.args[0] == "greeting"
    assert error.key == "greeting"
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ColumnNotInRow
    assert str(again) == str(error)
    assert again.args == error.args


names = st.lists(identifiers, unique=True, max_size=30)


@given(names, names, st.one_of(identifiers, st.integers(), st.none()), st.data())
def test_rows_read_like_dicts_and_misses_name_everything(
    pipeline_columns: list[str], held: list[str], asked: Any, data: st.DataObject
) -> None:
    """Any held values, any pipeline: held keys read as in a dict; a key not held raises a
    ColumnNotInRow naming it, the column and its depends_on, saying whether the pipeline has
    it, listing (up to 20 of) the held columns."""
    producers = {
        name: data.draw(st.sampled_from([name, "other", "seed_dataset"]), label=name)
        for name in pipeline_columns
    }
    values = {name: index for index, name in enumerate(held)}
    row = row_class("mine", producers)(values)
    assert row == values
    assert all(row[name] == value for name, value in values.items())
    assert row.get(asked) == values.get(asked)  # type: ignore[call-overload]
    if asked in values:
        return
    with pytest.raises(KeyError) as info:
        row[asked]
    error = info.value
    assert isinstance(error, ColumnNotInRow)
    assert error.args == (asked,)
    message = str(error)
    assert message.startswith(f"column 'mine': the function read {asked!r}, ")
    in_pipeline = isinstance(asked, str) and asked in producers
    assert (", a column of the pipeline" in message) == in_pipeline
    if in_pipeline:
        assert "list it in depends_on of column 'mine'" in message
    elif producers:
        assert "which is not a column of the pipeline" in message
    for name in held[:20]:
        assert repr(name) in message
    if len(held) > 20:
        assert f"and {len(held) - 20} more" in message
    if not held:
        assert "the row holds nothing" in message
