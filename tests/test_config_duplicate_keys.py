"""A key given twice in one mapping of a config file is refused, naming the key, the mapping
that holds it and both lines; before, the later value silently replaced the earlier one
(``columns:`` twice lost every column of the first list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.cli import cli
from gridloom.config import load_config
from gridloom.config._io import read_config_document
from gridloom.config._issues import PathPart, render_path
from gridloom.errors import ConfigError

TWO_COLUMN_LISTS = """\
columns:
  - {name: a, uniform: {low: 0, high: 1}}
columns:
  - {name: b, uniform: {low: 0, high: 1}}
"""


def test_columns_given_twice_is_refused_by_validate(tmp_path: Path) -> None:
    """`gridloom validate` exits 2 with a ConfigError naming the key and both lines (it
    exited 0 and showed only column b)."""
    path = tmp_path / "dupkey.yaml"
    path.write_text(TWO_COLUMN_LISTS)
    result = CliRunner().invoke(cli, ["validate", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError"
    assert error["path"] == "columns"
    assert "the key 'columns' is given twice at the top level" in error["message"]
    assert "first at line 1, again at line 3" in error["message"]


@pytest.mark.parametrize(
    ("name", "text", "field", "lines"),
    [
        (
            "c.yaml",
            "columns:\n  - name: a\n    uniform: {low: 0, high: 1}\n"
            "    uniform: {low: 0, high: 2}\n",
            "columns[0].uniform",
            "first at line 3, again at line 4, column 5",
        ),
        (
            "c.yaml",
            "columns:\n  - {name: a, uniform: {low: 0, high: 1, low: 2}}\n",
            "columns[0].uniform.low",
            "first at line 2, again at line 2, column 42",
        ),
        (
            "c.json",
            '{"columns": [{"name": "a",\n "uniform": {"low": 0, "high": 1},\n'
            ' "uniform": {"low": 0, "high": 2}}]}',
            "columns[0].uniform",
            "first at line 2, again at line 3, column 2",
        ),
        (
            "c.json",
            '{"columns": [{"name": "a", "uniform": {"low": 0, "high": 1}}],\n'
            ' "columns": [{"name": "b", "uniform": {"low": 0, "high": 1}}]}',
            "columns",
            "first at line 1, again at line 2, column 2",
        ),
        (
            "c.json",
            '{"columns": [{"name": "a", "category": {"values": ["x", "y"]}}],'
            ' "run": {"seed": 1, "seed": 2}}',
            "run.seed",
            "first at line 1, again at line 1, column 85",
        ),
    ],
)
def test_a_key_given_twice_anywhere_is_refused_with_its_place(
    tmp_path: Path, name: str, text: str, field: str, lines: str
) -> None:
    """Inside a column, its parameters or a section, in YAML and JSON alike: the error
    names the field path of the key and the lines of both appearances."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field
    assert lines in str(caught.value)
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("pair", "key"),
    [("1: a\n1.0: b\n", "1.0"), ("yes: a\ntrue: b\n", "True"), ("'a': 1\n\"a\": 2\n", "'a'")],
)
def test_yaml_keys_are_compared_as_they_load(tmp_path: Path, pair: str, key: str) -> None:
    """Two keys spelt differently that load as the same value are the same key."""
    path = tmp_path / "k.yaml"
    path.write_text("unused:\n" + "".join(f"  {line}\n" for line in pair.splitlines()))
    with pytest.raises(ConfigError, match=rf"the key {key} is given twice in unused"):
        read_config_document(path)


def test_a_key_a_merge_brings_in_may_be_set_again(tmp_path: Path) -> None:
    """Overriding a merged key is what a merge is for; two merges of the same anchor are not
    a duplicate either."""
    path = tmp_path / "m.yaml"
    path.write_text(
        "bounds: &b {low: 0, high: 10}\n"
        "columns:\n"
        "  - {name: a, uniform: {<<: *b, high: 5}}\n"
        "  - {name: c, uniform: {<<: [*b], low: 1}}\n"
        "run: {seed: 3}\n"
    )
    document = read_config_document(path)
    assert document["columns"][0]["uniform"] == {"low": 0, "high": 5}
    assert document["columns"][1]["uniform"] == {"low": 1, "high": 10}


def test_a_seed_dataset_row_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    """Seed rows (JSON lines) are read by pyarrow, which refuses a key given twice in a row
    at any depth: the run does not start, and the error names the file and the row."""
    import gridloom as gl

    (tmp_path / "seed.jsonl").write_text(
        '{"a": 1, "b": {"x": 1}}\n{"a": 2, "b": {"x": 1, "x": 2}}\n'
    )
    path = tmp_path / "p.yaml"
    path.write_text("seed_dataset: {path: seed.jsonl}\ncolumns:\n  - {name: e, expression: hi}\n")
    with pytest.raises(
        ConfigError, match=r"seed.jsonl.*Column\(/b/x\) was specified twice in row 1"
    ):
        gl.preview(path, num_records=2)


# --------------------------------------------------------------------------- random documents


class Pairs(list[tuple[str, Any]]):
    """A mapping as written: its pairs in order, a key possibly twice."""


KEYS = st.sampled_from(["a", "b", "name", "low", "x y", "ключ", "yes", "1"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab é\n\"'", max_size=4)
TREES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(KEYS, kids, max_size=3),
    max_leaves=16,
)


def _pairs(value: Any) -> Any:
    if isinstance(value, dict):
        return Pairs((key, _pairs(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_pairs(item) for item in value]
    return value


def _mappings(value: Any, path: tuple[PathPart, ...]) -> list[tuple[Pairs, tuple[PathPart, ...]]]:
    found: list[tuple[Pairs, tuple[PathPart, ...]]] = []
    if isinstance(value, Pairs):
        if value:
            found.append((value, path))
        for key, item in value:
            found += _mappings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _mappings(item, (*path, index))
    return found


class Writer:
    """Writes a document as block YAML or as JSON with a key per line, noting the line of
    every key (by the mapping and the pair's index)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.key_lines: dict[tuple[int, int], int] = {}

    def yaml(self, value: Any, indent: int = 0) -> None:
        pad = "  " * indent
        items = list(value) if isinstance(value, Pairs) else list(enumerate(value))
        for index, (key, item) in enumerate(items):
            head = f"{pad}{json.dumps(key)}:" if isinstance(value, Pairs) else f"{pad}-"
            if isinstance(value, Pairs):
                self.key_lines[id(value), index] = len(self.lines) + 1
            if isinstance(item, list) and item:
                self.lines.append(head)
                self.yaml(item, indent + 1)
            else:
                self.lines.append(f"{head} {self._flow(item)}")

    def json(self, value: Any) -> str:
        if isinstance(value, Pairs):
            parts = []
            for index, (key, item) in enumerate(value):
                self.lines.append("")  # each key on a line of its own, after the first "{"
                self.key_lines[id(value), index] = len(self.lines) + 1
                parts.append(f"\n{json.dumps(key)}: {self.json(item)}")
            return "{" + ",".join(parts) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.json(item) for item in value) + "]"
        return json.dumps(value)

    @staticmethod
    def _flow(value: Any) -> str:
        if isinstance(value, Pairs):
            return "{}"
        if isinstance(value, list):
            return "[]"
        return json.dumps(value)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tree=st.dictionaries(KEYS, TREES, min_size=1, max_size=3),
    data=st.data(),
    as_json=st.booleans(),
)
def test_a_key_twice_at_any_depth_is_refused_with_its_path_and_lines(
    tmp_path: Path, tree: dict[str, Any], data: st.DataObject, as_json: bool
) -> None:
    """Any document with one key given twice, in any mapping at any depth, in block YAML or
    JSON: the error names the key, the path of its mapping, and both lines."""
    document = _pairs(tree)
    mapping, path = data.draw(st.sampled_from(_mappings(document, ())))
    first = data.draw(st.integers(0, len(mapping) - 1))
    key = mapping[first][0]
    second = data.draw(st.integers(first + 1, len(mapping)))
    mapping.insert(second, (key, data.draw(SCALARS)))
    writer = Writer()
    if as_json:
        text = writer.json(document)
        name = "d.json"
    else:
        writer.yaml(document)
        text = "\n".join(writer.lines) + "\n"
        name = "d.yaml"
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_document(file)
    message = str(caught.value)
    where = f"in {render_path(path)}" if path else "at the top level"
    assert f"the key {key!r} is given twice {where}" in message
    lines = writer.key_lines[id(mapping), first], writer.key_lines[id(mapping), second]
    assert f"(first at line {lines[0]}, again at line {lines[1]}, column " in message
    assert caught.value.field == render_path((*path, key))
