"""The configuration reference (docs/configuration.md) explains every field it lists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import attrs

from gridloom.config import COLUMN_KINDS, ColumnConfig, Rubric

GENERATOR = Path(__file__).resolve().parent.parent / "docs" / "gen_reference.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> list[tuple[str, str, str]]:
    """(section heading, field, meaning) for every row of every field table."""
    rows = []
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ")
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append((section, cells[0].strip("`"), cells[-1]))
    return rows


def test_every_field_in_the_reference_has_a_meaning() -> None:
    """No row of any field table in the generated reference has an empty meaning."""
    rows = _rows(_generator().render())
    assert rows
    empty = [f"{section}: {field}" for section, field, meaning in rows if not meaning]
    assert empty == []


def test_every_column_kind_and_rubric_field_is_in_the_reference() -> None:
    """Each column kind's fields (inherited ones included) and each rubric field has a row
    (plugins' kinds too, in the reference written with them)."""
    rows = _rows(_generator().render(plugins=True))
    listed = {(section, field) for section, field, _ in rows}
    common = {a.name for a in attrs.fields(ColumnConfig)}
    for kind, cls in COLUMN_KINDS.items():
        for field in attrs.fields(cls):
            if field.name not in common:
                assert (f"`{kind}`", field.name) in listed, (kind, field.name)
    rubric_section = next(s for s, _, _ in rows if "rubrics" in s)
    for field in attrs.fields(Rubric):
        assert (rubric_section, field.name) in listed, field.name
