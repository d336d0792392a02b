"""Column and seed field names against the template environment's own names (review F1): a
column named like a global (``range``, ``dict``, ``lipsum`` ...) is read as the column in every
template and is a dependency; names Jinja can never read as variables (``true``, ``none``,
``not`` ...) are refused at load; a template that outputs a function, method, class or module
fails the cell instead of writing a memory address into the data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.config._columns import TEMPLATE_RESERVED_NAMES
from gridloom.errors import ConfigError
from gridloom.generators import CellContext
from gridloom.generators._jinja import compile_template, template_env
from gridloom.generators._template_output import NotDataError
from tests.json_server import completion, json_server


def _echo(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-compatible chat answer holding the prompts it received."""
    server.bodies.append(body)
    text = " || ".join(str(m["content"]) for m in body["messages"])
    return completion(body["model"], {"role": "assistant", "content": text})


@pytest.fixture
def echo() -> Iterator[Any]:
    with json_server(_echo, bodies=[]) as httpd:
        yield httpd


def _write(folder: Path, doc: dict[str, Any], csv: str) -> Path:
    (folder / "seed.csv").write_text(csv)
    path = folder / "pipeline.yaml"
    path.write_text(json.dumps(doc))
    return path


def _doc(url: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "providers": [{"name": "p", "type": "openai", "endpoint": url}],
        "models": [{"alias": "m", "provider": "p", "model": "echo"}],
        "seed_dataset": {"path": "seed.csv"},
        "columns": columns,
        "run": {"seed": 3, "max_cell_attempts": 1, "salvage_rounds": 0},
    }


def test_a_column_and_a_seed_field_named_like_globals_are_read_in_every_template(
    echo: Any, tmp_path: Path
) -> None:
    """A generated column ``range`` and a seed field ``dict``: the model receives their values
    in the prompt and system prompt, an expression renders them, skip_when on ``range`` skips
    its rows (no request for them), and both are dependencies in the compiled graph."""
    url = echo.url
    columns = [
        {"name": "range", "category": {"values": ["alpha", "beta"]}},
        {
            "name": "ask",
            "llm_text": {
                "model": "m",
                "system_prompt": "city {{ dict }}",
                "prompt": "span {{ range }}, {{ dict | upper }}",
            },
            "skip_when": "range == 'beta'",
        },
        {"name": "x", "expression": "{{ range }} / {{ dict }} / {{ lipsum }}"},
    ]
    config = _write(tmp_path, _doc(url, columns), "dict,lipsum\nOxford,7\nLeeds,8\n")

    graph = gl.validate(config)
    depends = {entry["node"]: entry["depends_on"] for entry in graph.describe()}
    assert sorted(depends["ask"]) == ["range", "seed_dataset"]  # type: ignore[type-var]
    assert sorted(depends["x"]) == ["range", "seed_dataset"]  # type: ignore[type-var]

    rows = gl.preview(config, 8).table.to_pylist()
    assert {row["range"] for row in rows} == {"alpha", "beta"}
    for row in rows:
        assert row["x"] == f"{row['range']} / {row['dict']} / {row['lipsum']}"
        if row["range"] == "beta":
            assert row["ask"] is None
        else:
            assert row["ask"] == f"city {row['dict']} || span alpha, {row['dict'].upper()}"
    bodies = echo.bodies
    assert len(bodies) == sum(row["range"] == "alpha" for row in rows)
    assert all("<" not in json.dumps(body) for body in bodies)  # no repr of a function


#: Every global a template can name, and ordinary identifiers (some spelled like Jinja's
#: operators and statement words, which Jinja also reads as names).
GLOBALS = sorted(template_env().globals)
names = st.one_of(
    st.sampled_from(GLOBALS),
    st.sampled_from(["and", "or", "in", "is", "if", "else", "for", "recursive", "loop", "caller"]),
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
).filter(lambda name: name not in TEMPLATE_RESERVED_NAMES)
forms = st.sampled_from(
    ["{{ N }}", "<{{ N }}>", "{{ N | string }}", "{{ 'v=' ~ N }}", "{{ N if N else 'x' }}"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    value=st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=8),
    form=forms,
)
def test_the_column_wins_over_any_global(name: str, value: str, form: str) -> None:
    """For a column of any name (globals' names included), an expression reading it renders
    the column's value, the column is its dependency, and skip_when compares the value."""
    template = form.replace("N", name)
    config = structure_pipeline(
        {
            "columns": [
                {"name": "out", "expression": template, "skip_when": f"{name} != {value!r}"},
                {"name": name, "category": {"values": [value]}},
            ]
        }
    )
    graph = gl.validate(config)
    node = next(n for n in graph.nodes if n.name == "out")
    assert [graph.nodes[u].name for u in node.upstream] == [name]
    row = {name: value}
    assert node.skip is not None
    assert not node.skip.holds(row)
    assert node.skip.holds({name: value + "z"})
    rendered = node.generator.generate(CellContext(row=row, row_id=0, column="out", seed=1))
    expected = {
        "{{ N }}": value,
        "<{{ N }}>": f"<{value}>",
        "{{ N | string }}": value,
        "{{ 'v=' ~ N }}": f"v={value}",
        "{{ N if N else 'x' }}": value,
    }[form]
    assert rendered == expected


def test_globals_stay_reachable_without_such_a_column() -> None:
    """With no column named ``range`` or ``dict``, templates still call the globals."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "n", "category": {"values": ["2"]}},
                {"name": "out", "expression": "{{ range(n|int)|list }} {{ dict(a=n) }}"},
            ]
        }
    )
    assert gl.preview(config, 1).table.to_pylist() == [{"n": "2", "out": "[0, 1] {'a': '2'}"}]


@pytest.mark.parametrize("name", sorted(TEMPLATE_RESERVED_NAMES))
def test_a_column_no_template_can_read_is_refused_at_load(name: str) -> None:
    """``true``, ``None``, ``not``, ``self`` ... as a column name: a ConfigError naming the
    column and saying why, when the config is built."""
    with pytest.raises(ConfigError) as info:
        structure_pipeline(
            {
                "columns": [
                    {"name": name, "category": {"values": ["a"]}},
                    {"name": "ok", "category": {"values": ["b"]}},
                ]
            }
        )
    issue = info.value.issues[0] if info.value.issues else info.value
    assert (issue.column, issue.field) == (name, "name")
    assert str(info.value).startswith(f"column {name!r}, field 'name': the name is reserved: ")
    assert "never as a column" in str(info.value) or "may not read" in str(info.value)


def test_a_seed_field_a_template_writes_but_cannot_read_is_refused_before_any_request(
    echo: Any, tmp_path: Path
) -> None:
    """A seed field ``none`` with a prompt writing ``{{ none }}`` (Jinja's literal, so every
    prompt would say None): refused naming the field and the template; no request."""
    url = echo.url
    columns = [{"name": "ask", "llm_text": {"model": "m", "prompt": "about {{ none }}"}}]
    config = _write(tmp_path, _doc(url, columns), "none,x\nOxford,1\n")
    with pytest.raises(ConfigError) as info:
        gl.preview(config, 2)
    message = str(info.value)
    assert "seed dataset field 'none' cannot be read by templates" in message
    assert (info.value.column, info.value.field) == ("ask", "llm_text.prompt")
    assert echo.bodies == []


def test_a_seed_field_no_template_writes_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A seed field ``True`` nobody reads: a warning naming it, the data kept in the output
    (the template's own ``true`` is the literal)."""
    doc = {
        "seed_dataset": {"path": "seed.csv"},
        "columns": [{"name": "x", "expression": "{{ city }} {{ true }}"}],
        "run": {"seed": 1},
    }
    config = _write(tmp_path, doc, "True,city\nyes,Oxford\n")
    with caplog.at_level(logging.WARNING, logger="gridloom.engine"):
        rows = gl.preview(config, 1).table.to_pylist()
    assert rows == [{"True": "yes", "city": "Oxford", "x": "Oxford True"}]
    assert any("seed dataset field 'True'" in r.getMessage() for r in caplog.records)


NOT_DATA = [
    ("{{ topic.format_map }}", "the function 'format_map'"),
    ("{{ topic.upper }}", "the method 'upper'"),
    ("{{ range }}", "the function 'range'"),
    ("{{ dict }}", "the class 'dict'"),
    ("{{ cycler(1, 2) }}", "a 'Cycler' object"),
    ("{{ [topic.split] }}", "the method 'split'"),
    ("{{ 'a' ~ topic.strip }}", "the method 'strip'"),
    ("{{ topic.strip | string }}", "the method 'strip'"),
    ("{{ [topic.strip] | join }}", "the method 'strip'"),
]


@pytest.mark.parametrize(("template", "what"), NOT_DATA)
def test_a_function_in_the_output_fails_the_render(template: str, what: str) -> None:
    """Whatever prints as a memory address is refused with a message saying what it is."""
    compiled = compile_template(template, column="c", field="template")
    with pytest.raises(NotDataError, match="is never data") as info:
        compiled.render({"topic": "rivers"})
    assert what in str(info.value)
    assert "0x" not in str(info.value)


def test_a_function_in_the_output_fails_the_cell_in_a_run(tmp_path: Path) -> None:
    """``{{ topic.format_map }}`` (review F1, related): the row is dropped with the reason,
    and nothing with a memory address is written."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "topic", "category": {"values": ["rivers"]}},
                {"name": "x", "expression": "{{ topic.format_map }}"},
            ],
            "run": {"seed": 1, "allow_drops": 1.0},
        }
    )
    result = gl.preview(config, 2)
    assert result.table.num_rows == 0
    example = result.drop_examples[0]
    assert example.column == "x"
    assert "NotDataError: the template outputs the function 'format_map'" in example.message
