"""``gridloom inspect`` counts the row groups fill_to_target added among the planned ones, so it
never says more row groups were written than planned ("8 of 6 written"), and says how many of
them replaced dropped rows; its ``--json`` agrees with metadata.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline

from .test_cli_commands import checked, invoke

#: Every how many row ids :func:`drops_some` fails.
EVERY = [3]


def drops_some(row: dict[str, Any], ctx: Any) -> int:
    """Fails every EVERY[0]-th row id (fill rows have new row ids: some fail again)."""
    if ctx.row_id % EVERY[0] == 0:
        raise RuntimeError("dropped on purpose")
    return ctx.row_id


def _create(out: Path, num_records: int, size: int, budget: float) -> gl.RunResult:
    config = structure_pipeline(
        {
            "columns": [
                {"name": "n", "custom": {"function": f"{__name__}:drops_some", "dtype": "int"}}
            ],
            "run": {
                "seed": 1,
                "row_group_size": size,
                "fill_to_target": True,
                "fill_budget": budget,
                "allow_drops": 1.0,
                "generator_first_rows": 0,
                "generator_error_rate": None,
                "progress": "off",
            },
        }
    )
    return gl.create(config, num_records=num_records, output_dir=out)


@settings(max_examples=15, deadline=None)
@given(
    num_records=st.integers(1, 40),
    size=st.integers(1, 12),
    every=st.integers(2, 6),
    budget=st.sampled_from([0.0, 0.25, 1.0]),
)
@example(num_records=300, size=50, every=17, budget=0.25)  # the review's shape: 6 groups + fill
def test_inspect_counts_fill_row_groups_as_planned(
    tmp_path_factory: Any, num_records: int, size: int, every: int, budget: float
) -> None:
    """Whatever the plan and the drops: written <= planned; planned and written count every
    fill row group metadata.json lists; the text line says so."""
    EVERY[0] = every
    out = tmp_path_factory.mktemp("run") / "out"
    _create(out, num_records, size, budget)
    meta = json.loads((out / "metadata.json").read_text())
    base = -(-num_records // size)
    listed = [int(key) for key in meta["row_groups"]]
    fill = sum(1 for index in listed if index >= base)

    proc = invoke("inspect", out, "--json", "-n", "0")
    assert proc.exit_code == 0, proc.output
    groups = checked("inspect", proc.stdout)["row_groups"]
    assert groups["fill"] == fill
    assert groups["written"] == len(listed)
    assert groups["planned"] == base + fill
    assert groups["written"] <= groups["planned"]
    if meta["status"] in ("complete", "incomplete"):  # every planned group was generated
        assert groups["written"] == groups["planned"]

    text = invoke("inspect", out, "-n", "0").stdout
    line = next(x for x in text.splitlines() if "row groups:" in x)
    assert f"row groups: {len(listed)} of {base + fill} written" in line
    assert ("added by fill_to_target" in line) == (fill > 0)
    if fill:
        assert f"({fill} of {'it' if fill == 1 else 'them'} added by fill_to_target" in line
