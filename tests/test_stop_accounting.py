"""A run stopped with row groups in flight reports the rows that failed in them: they are in
no drop record (a resume generates their row groups again), so the summary's first line, the
``--json`` output and metadata.json count them as ``rows_failed_unwritten`` beside
``rows_abandoned``, and ``rows_dropped`` of the invocation is always the written drops plus
those."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.progress._summary import render_summary

SRC = str(Path(__file__).resolve().parent.parent / "src")

#: Row ids from which :func:`fails_late` raises.
FAIL_FROM = [0]


def fails_late(row: dict[str, Any], ctx: Any) -> int:
    """Fails every row from FAIL_FROM[0] on."""
    if ctx.row_id >= FAIL_FROM[0]:
        raise RuntimeError("broken from here on")
    return ctx.row_id


def _pipeline(group: int, parallel_groups: int) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "columns": [
                {"name": "n", "custom": {"function": f"{__name__}:fails_late", "dtype": "int"}}
            ],
            "run": {
                "seed": 1,
                "row_group_size": group,
                "max_row_groups_in_flight": parallel_groups,
                "generator_first_rows": 3,
                "generator_min_outcomes": 3,
                "progress": "off",
            },
        }
    )


@settings(max_examples=15, deadline=None)
@given(fail_from=st.integers(0, 30), group=st.integers(1, 40), parallel_groups=st.integers(1, 3))
@example(fail_from=3, group=13, parallel_groups=3)  # some groups written, some not
@example(fail_from=0, group=40, parallel_groups=1)  # the one group left unwritten
def test_failed_rows_of_unwritten_groups_are_counted(
    tmp_path_factory: Any, fail_from: int, group: int, parallel_groups: int
) -> None:
    """Whatever the row groups and where the failures start: the invocation's dropped rows are
    the written drop records plus rows_failed_unwritten; the rows are accounted for; the
    summary's first line names the failed unwritten rows; metadata.json says the same."""
    FAIL_FROM[0] = fail_from
    out = tmp_path_factory.mktemp("run") / "out"
    result = gl.create(_pipeline(group, parallel_groups), num_records=40, output_dir=out)
    invocation = result.summary["invocation"]
    unwritten = invocation["rows_failed_unwritten"]
    assert invocation["rows_dropped"] == result.num_dropped + unwritten
    assert result.num_rows + result.num_dropped + invocation["rows_abandoned"] <= 40
    assert unwritten <= invocation["rows_abandoned"]
    head = render_summary(result.summary).splitlines()[0]
    if unwritten:
        assert result.status == "stopped"
        assert f"{invocation['rows_abandoned']:,} rows left unwritten" in head
        assert f"{unwritten:,} of them failed" in head
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["summary"]["invocation"]["rows_failed_unwritten"] == unwritten
    assert meta["rows_dropped"] == result.num_dropped


def test_the_summary_line_names_unwritten_and_failed_rows() -> None:
    """The first line of a stopped run's summary; a run with nothing left unwritten keeps its
    line."""
    summary: dict[str, Any] = {
        "status": "stopped",
        "num_rows": 0,
        "num_records": 50,
        "num_dropped": 0,
        "invocation": {"rows_abandoned": 50, "rows_failed_unwritten": 6, "wall_time": 1.0},
    }
    head = render_summary(summary).splitlines()[0]
    assert head.startswith("0 of 50 rows written, 0 dropped, in ")
    assert head.endswith(
        "; 50 rows left unwritten when the run stopped, 6 of them failed"
        " (a resume generates them again)"
    )
    summary["invocation"] = {"rows_abandoned": 0, "rows_failed_unwritten": 0, "wall_time": 1.0}
    assert "unwritten" not in render_summary(summary)


def test_the_reviewed_create_says_rows_failed_and_json_agrees(tmp_path: Path) -> None:
    """`gridloom create` on the review's config (every row of its one row group fails): the
    first line says how many failed, and --json's invocation is metadata.json's."""
    (tmp_path / "my_functions.py").write_text(
        "def score(row, ctx):\n    return len(row['greeting'])\n"
    )
    config = tmp_path / "g.yaml"
    config.write_text(
        "columns:\n"
        "  - {name: country, category: {values: [France, Japan, Kenya]}}\n"
        '  - {name: greeting, expression: "{{ country }} says hi"}\n'
        '  - {name: score,  custom: {function: "my_functions:score", dtype: float}}\n'
        "run: {seed: 1}\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}

    def create(out: str, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gridloom", "create", str(config), "-n", "50", "-o", out, *more],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )

    proc = create(str(tmp_path / "out"))
    assert proc.returncode == 4, proc.stderr
    line = next(x for x in proc.stdout.splitlines() + proc.stderr.splitlines() if " of 50 " in x)
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    failed = meta["summary"]["invocation"]["rows_failed_unwritten"]
    assert failed >= 5  # the check stops the run after the first 5 rows failed
    assert f"50 rows left unwritten when the run stopped, {failed} of them failed" in line

    proc = create(str(tmp_path / "out2"), "--json")
    shown = json.loads(proc.stdout)
    meta = json.loads((tmp_path / "out2" / "metadata.json").read_text())
    assert shown["invocation"] == meta["summary"]["invocation"]
    assert shown["invocation"]["rows_failed_unwritten"] >= 5
