"""Config errors: each problem becomes one ConfigError naming the column and field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridloom.config import load_config, structure_pipeline
from gridloom.errors import ConfigError

SIM = {"providers": [{"name": "sim", "type": "simulated"}]}


def _col(**column: Any) -> dict[str, Any]:
    return {"columns": [column]}


def _check(doc: Any, column: str | None, field: str | None, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        structure_pipeline(doc)
    err = info.value
    assert (err.column, err.field) == (column, field), str(err)
    for fragment in fragments:
        assert fragment in str(err)
    return err


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key() -> None:
    """An unknown top-level key is named, with the closest real key suggested."""
    _check(
        {"colums": [], "columns": [{"name": "a", "uuid": {}}]},
        None,
        "colums",
        "unknown key 'colums'",
        "did you mean 'columns'?",
    )


def test_unknown_key_in_a_column() -> None:
    """An unknown key next to the kind key names the column and the key."""
    _check(_col(name="a", uuid={}, dorp=True), "a", "dorp", "did you mean 'drop'?")


def test_unknown_key_inside_kind_params() -> None:
    """An unknown parameter is reported under the kind, before the missing field it explains."""
    err = _check(
        _col(name="a", uniform={"low": 1, "hihg": 2}),
        "a",
        "uniform.hihg",
        "did you mean 'high'?",
    )
    assert str(err).startswith("column 'a', field 'uniform.hihg': unknown key 'hihg'")
    assert [(i.column, i.field) for i in err.issues] == [
        ("a", "uniform.hihg"),
        ("a", "uniform.high"),
    ]
    assert "more error" not in str(err)


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    """With no likely typo, the message lists the allowed keys."""
    _check(
        _col(name="a", poisson={"mean": 1, "zzz": 2}),
        "a",
        "poisson.zzz",
        "allowed: mean, convert_to",
    )


def test_unknown_key_in_run_section() -> None:
    """Unknown keys inside a section are located by the section's path."""
    _check({**_col(name="a", uuid={}), "run": {"seeds": 1}}, None, "run.seeds", "'seed'")


def test_common_field_inside_kind_params() -> None:
    """``depends_on`` inside the kind mapping is refused with a hint where it belongs."""
    _check(
        _col(name="a", expression={"template": "x", "depends_on": ["b"]}),
        "a",
        "expression.depends_on",
        "belongs at the column level",
    )


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("doc", "column", "field", "fragment"),
    [
        (_col(name="a", binomial={"n": "3", "p": 0.5}), "a", "binomial.n", "expected an integer"),
        (_col(name="a", binomial={"n": 2.0, "p": 0.5}), "a", "binomial.n", "expected an integer"),
        (_col(name="a", uniform={"low": "1", "high": 2}), "a", "uniform.low", "expected a number"),
        (_col(name="a", uniform={"low": True, "high": 2}), "a", "uniform.low", "expected a number"),
        (_col(name="a", uuid={"short": "yes"}), "a", "uuid.short", "expected true or false"),
        (_col(name="a", uuid={}, drop="no"), "a", "drop", "expected true or false"),
        (_col(name="a", uuid={}, depends_on="b"), "a", "depends_on", "expected a list"),
        (_col(name="a", category={"values": "abc"}), "a", "category.values", "expected a list"),
        (
            _col(name="a", subcategory={"parent": "p", "values": ["x"]}),
            "a",
            "subcategory.values",
            "expected a mapping",
        ),
        (
            _col(name="a", subcategory={"parent": "p", "values": {"k": "x"}}),
            "a",
            "subcategory.values.k",
            "expected a list",
        ),
        (_col(name=7, uuid={}), None, "columns[0].name", "expected a string"),
        (_col(name="a", uuid=[1]), "a", "uuid", "expected a mapping of uuid parameters"),
        (_col(name="a", custom={"function": 3}), "a", "custom.function", "import path"),
        (
            _col(name="a", datetime={"start": "soon", "end": "2024-01-01"}),
            "a",
            "datetime.start",
            "ISO 8601",
        ),
        (
            _col(name="a", timedelta={"min": 1, "max": 2, "unit": "weeks"}),
            "a",
            "timedelta.unit",
            "must be one of 'days', 'hours', 'minutes', 'seconds', got 'weeks'",
        ),
        (
            {**_col(name="a", uuid={}), "run": {"scheduling": "cel"}},
            None,
            "run.scheduling",
            "did you mean 'cell'?",
        ),
        ({"columns": "a"}, None, "columns", "expected a list"),
        ({"columns": [5]}, None, "columns[0]", "a column must be a mapping"),
        ({**_col(name="a", uuid={}), "run": 5}, None, "run", "expected a mapping"),
        ({**_col(name="a", uuid={}), "models": [3]}, None, "models[0]", "expected a mapping"),
    ],
)
def test_wrong_types(doc: Any, column: str | None, field: str, fragment: str) -> None:
    """A value of the wrong type names its column and field and says what was expected."""
    _check(doc, column, field, fragment)


def test_top_level_not_a_mapping() -> None:
    """A document that is not a mapping is refused."""
    _check([1, 2], None, None, "must be a mapping")


# --------------------------------------------------------------------------- missing fields


def test_missing_required_param() -> None:
    """A missing required parameter is reported under the kind."""
    _check(_col(name="a", binomial={"p": 0.5}), "a", "binomial.n", "required field is missing")


def test_missing_column_name_uses_the_index() -> None:
    """A column without a name is located by its index."""
    doc = {"columns": [{"name": "a", "uuid": {}}, {"uuid": {}}]}
    _check(doc, None, "columns[1].name", "required field is missing")


def test_missing_columns_and_seed_dataset() -> None:
    """A pipeline needs at least one column or a seed dataset."""
    _check({"columns": []}, None, "columns", "at least one column")
    _check({}, None, "columns", "required field is missing")


def test_missing_model_field() -> None:
    """A model missing its ``model`` field is located by index."""
    doc = {**_col(name="a", uuid={}), **SIM, "models": [{"alias": "w", "provider": "sim"}]}
    _check(doc, None, "models[0].model", "required field is missing")


# --------------------------------------------------------------------------- kind keys


def test_zero_kind_keys() -> None:
    """A column without a kind key lists the kinds it could have."""
    _check(_col(name="a", depends_on=[]), "a", None, "no kind key", "category, subcategory")


def test_zero_kind_keys_mentions_stray_keys() -> None:
    """Keys that are not kinds are quoted back when the kind is missing."""
    _check(_col(name="a", sampler="category"), "a", None, "found 'sampler'")


def test_two_kind_keys() -> None:
    """A column with two kind keys names both and points at the second."""
    _check(
        _col(name="a", uuid={}, uniform={"low": 0, "high": 1}),
        "a",
        "uniform",
        "exactly one kind key, found 2: 'uuid', 'uniform'",
    )


def test_unknown_kind_suggests_closest() -> None:
    """A misspelt kind is refused with the closest known kind suggested."""
    _check(
        _col(name="a", gausian={"mean": 1}),
        "a",
        "gausian",
        "unknown column kind 'gausian'; did you mean 'gaussian'?",
    )


def test_unknown_kind_without_name_uses_the_index() -> None:
    """Kind problems of an unnamed column are located by index."""
    _check({"columns": [{"uid": {}}]}, None, "columns[0].uid", "did you mean 'uuid'?")


# --------------------------------------------------------------------------- cross-field checks


def test_duplicate_column_name() -> None:
    """Two columns with one name: the error names the column and the ``name`` field."""
    doc = {"columns": [{"name": "a", "uuid": {}}, {"name": "a", "expression": "x"}]}
    _check(doc, "a", "name", "duplicate column name")


def test_duplicate_model_alias() -> None:
    """Two models with one alias: the second is named."""
    model = {"alias": "w", "provider": "sim", "model": "m"}
    doc = {**_col(name="a", uuid={}), **SIM, "models": [model, model]}
    _check(doc, None, "models[1].alias", "duplicate model alias 'w'")


def test_duplicate_provider_name() -> None:
    """Two providers with one name: the second is named."""
    doc = {**_col(name="a", uuid={}), "providers": SIM["providers"] * 2}
    _check(doc, None, "providers[1].name", "duplicate provider name 'sim'")


def test_model_names_unknown_provider() -> None:
    """A model naming an unknown provider lists the known ones."""
    doc = {
        **_col(name="a", uuid={}),
        **SIM,
        "models": [{"alias": "w", "provider": "vllm", "model": "m"}],
    }
    _check(doc, None, "models[0].provider", "unknown provider 'vllm' (known: sim)")


def test_provider_without_endpoint() -> None:
    """A non-simulated provider needs an endpoint."""
    doc = {**_col(name="a", uuid={}), "providers": [{"name": "p", "type": "openai"}]}
    _check(doc, None, "providers[0].endpoint", "needs an endpoint")


# --------------------------------------------------------------------------- validators


@pytest.mark.parametrize(
    ("column", "field", "fragment"),
    [
        (
            {"category": {"values": [1, 2, 3], "weights": [1, 2]}},
            "category.weights",
            "weights has 2 entries but values has 3",
        ),
        ({"category": {"values": [1], "weights": [0]}}, "category.weights", "not all zero"),
        ({"category": {"values": []}}, "category.values", "Length of 'values'"),
        ({"bernoulli": {"p": 1.5}}, "bernoulli.p", "between 0 and 1"),
        ({"binomial": {"n": 3, "p": -0.1}}, "binomial.p", "between 0 and 1"),
        ({"binomial": {"n": -1, "p": 0.5}}, "binomial.n", ">= 0"),
        ({"uniform": {"low": 10, "high": 1}}, "uniform.high", "must be >= low"),
        ({"gaussian": {"stddev": 0}}, "gaussian.stddev", "must be > 0"),
        ({"poisson": {"mean": -2}}, "poisson.mean", "must be > 0"),
        ({"timedelta": {"min": 5, "max": 1}}, "timedelta.max", "must be >= min"),
        (
            {"datetime": {"start": "2024-02-01", "end": "2024-01-01"}},
            "datetime.end",
            "must not be before start",
        ),
        ({"subcategory": {"parent": "p", "values": {"x": []}}}, "subcategory.values", "empty"),
        ({"custom": {"function": "nocolon"}}, "custom.function", "import path"),
    ],
)
def test_validator_failures(column: dict[str, Any], field: str, fragment: str) -> None:
    """A failing attrs validator is reported at its field, under the column's name."""
    _check({"columns": [{"name": "col", **column}]}, "col", field, fragment)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({**_col(name="a", uuid={}), "run": {"row_group_size": 0}}, "run.row_group_size"),
        (
            {
                **_col(name="a", uuid={}),
                **SIM,
                "models": [
                    {"alias": "w", "provider": "sim", "model": "m"},
                    {"alias": "j", "provider": "sim", "model": "m", "max_parallel_requests": 0},
                ],
            },
            "models[1].max_parallel_requests",
        ),
        ({"columns": [], "seed_dataset": {"path": ""}}, "seed_dataset.path"),
    ],
)
def test_section_validator_failures(doc: dict[str, Any], field: str) -> None:
    """Validator failures outside columns are located by their section path."""
    _check(doc, None, field)


def test_empty_column_name() -> None:
    """An empty column name is located by index (there is no name to show)."""
    _check(_col(name="", uuid={}), None, "columns[0].name", "Length of 'name'")


# --------------------------------------------------------------------------- several errors


def test_every_error_is_listed() -> None:
    """With several problems, every one is kept (``issues``) and shown on its own line, the
    first one first; nothing is hidden behind a count."""
    doc = {
        "columns": [
            {"name": "a", "bernoulli": {"p": 2}},
            {"name": "b", "uniform": {"low": 5, "high": 1}},
        ],
        "run": {"row_group_size": "big"},
    }
    err = _check(doc, "a", "bernoulli.p")
    assert [(i.column, i.field) for i in err.issues] == [
        ("a", "bernoulli.p"),
        ("b", "uniform.high"),
        (None, "run.row_group_size"),
    ]
    assert str(err).splitlines() == [
        "column 'a', field 'bernoulli.p': p must be between 0 and 1, got 2.0",
        "  column 'b', field 'uniform.high': high (1.0) must be >= low (5.0)",
        "  field 'run.row_group_size': expected an integer, got str 'big'",
    ]
    assert err.message == "p must be between 0 and 1, got 2.0"


# --------------------------------------------------------------------------- files


def test_bad_yaml_syntax_names_the_file(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line."""
    path = tmp_path / "broken.yaml"
    path.write_text("columns:\n  - {name: a, uuid: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*not valid YAML.*line \d+"):
        load_config(path)


def test_bad_json_syntax_names_the_file(tmp_path: Path) -> None:
    """A JSON syntax error names the file, line and column."""
    path = tmp_path / "broken.json"
    path.write_text('{"columns": [}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json.*not valid JSON.*line 1, column 14"):
        load_config(path)


def test_file_not_found_names_the_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"nope\.yaml.*not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_list_in_file(tmp_path: Path) -> None:
    """A file whose top level is not a mapping is refused, naming the file."""
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list\.yaml.*top level must be a mapping"):
        load_config(path)


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is refused, naming the file."""
    path = tmp_path / "empty.yml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty\.yml.*is empty"):
        load_config(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    """Only .yaml, .yml and .json files are read."""
    path = tmp_path / "p.toml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unsupported extension '\.toml'"):
        load_config(path)


def test_structure_error_from_file_notes_the_file(tmp_path: Path) -> None:
    """An invalid pipeline in a file keeps its message and gains a note naming the file."""
    path = tmp_path / "p.yaml"
    path.write_text("columns: [{name: a, bernoulli: {p: 3}}]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.column, info.value.field) == ("a", "bernoulli.p")
    assert any("p.yaml" in note for note in info.value.__notes__)


def test_pipeline_level_problems_are_all_listed() -> None:
    """Duplicate names, unknown providers and unknown model aliases are all reported, not only
    the first."""
    doc = {
        "providers": [{"name": "sim", "type": "simulated"}],
        "models": [{"alias": "m", "provider": "nope", "model": "x"}],
        "columns": [
            {"name": "a", "uuid": {}},
            {"name": "a", "uuid": {}},
            {"name": "t", "llm_text": {"model": "writer", "prompt": "hi"}},
        ],
    }
    err = _check(doc, "a", "name")
    assert [(i.column, i.field) for i in err.issues] == [
        ("a", "name"),
        (None, "models[0].provider"),
        ("t", "llm_text.model"),
    ]
    assert len(str(err).splitlines()) == 3
