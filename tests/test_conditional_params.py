"""``conditional_params``: a sampler's parameters chosen per row by conditions over other
columns, with the dependency in the graph and errors that name the condition."""

from __future__ import annotations

import collections
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline, unstructure_pipeline
from gridloom.errors import ConfigError, UnknownReferenceError

CITIES = {"Japan": ["Tokyo", "Osaka"], "Chile": ["Santiago"]}
ELSEWHERE = ["Paris", "Lyon"]


def pipeline(columns: list[dict[str, Any]], **run: Any) -> gl.PipelineConfig:
    return structure_pipeline({"columns": columns, "run": {"seed": 11, **run}})


def country_city(conditions: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    if conditions is None:
        conditions = {
            "country == 'Japan'": {"values": CITIES["Japan"]},
            "{{ country == 'Chile' }}": {"values": CITIES["Chile"]},
        }
    return [
        {"name": "country", "category": {"values": ["Japan", "Chile", "France"]}},
        {
            "name": "city",
            "category": {"values": ELSEWHERE},
            "conditional_params": conditions,
        },
    ]


def config_error(config: gl.PipelineConfig) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        gl.validate(config)
    assert "\n" not in str(info.value)
    return info.value


def test_each_row_draws_from_the_parameters_of_its_condition() -> None:
    """A row whose condition holds draws from that condition's values; rows where none holds
    draw from the column's own; conditions bare or in {{ }} both work."""
    rows = gl.preview(pipeline(country_city()), 400).table.to_pylist()
    seen = collections.Counter((r["country"], r["city"]) for r in rows)
    for (country, city), _count in seen.items():
        assert city in CITIES.get(country, ELSEWHERE)
    assert {city for _, city in seen} == {"Tokyo", "Osaka", "Santiago", "Paris", "Lyon"}


def test_the_first_true_condition_wins() -> None:
    """When several conditions hold, the first in the config's order gives the parameters."""
    conditions = {
        "country != 'France'": {"values": ["first"]},
        "country == 'Japan'": {"values": ["second"]},
    }
    rows = gl.preview(pipeline(country_city(conditions)), 200).table.to_pylist()
    assert {r["city"] for r in rows if r["country"] == "Japan"} == {"first"}
    assert {r["city"] for r in rows if r["country"] == "France"} <= set(ELSEWHERE)


def test_numeric_samplers_take_conditional_ranges() -> None:
    """A uniform column's range depends on a category: every value lies in its row's range."""
    columns = [
        {"name": "tier", "category": {"values": ["low", "high"]}},
        {
            "name": "price",
            "uniform": {"low": 0, "high": 10},
            "conditional_params": {"tier == 'high'": {"low": 100, "high": 200}},
        },
    ]
    rows = gl.preview(pipeline(columns), 300).table.to_pylist()
    assert all((100 <= r["price"] <= 200) == (r["tier"] == "high") for r in rows)
    assert all(0 <= r["price"] <= 10 for r in rows if r["tier"] == "low")


def test_a_condition_over_an_llm_free_boolean_column_and_a_struct_field() -> None:
    """A boolean column alone is a condition, and a condition may read a struct's field."""
    columns = [
        {"name": "vip", "bernoulli": {"p": 0.5, "convert_to": "int"}},
        {"name": "flag", "expression": {"template": "{{ vip == 1 }}", "dtype": "bool"}},
        {
            "name": "discount",
            "category": {"values": [0]},
            "conditional_params": {"flag": {"values": [20]}},
        },
    ]
    rows = gl.preview(pipeline(columns), 100).table.to_pylist()
    assert all(r["discount"] == (20 if r["flag"] else 0) for r in rows)


def test_a_condition_failing_on_a_row_drops_that_row_only() -> None:
    """A condition that cannot be evaluated for a row (an undefined attribute) drops that row
    with the reason; the others are filled."""
    columns = [
        {"name": "n", "category": {"values": [1, 2]}},
        {"name": "label", "expression": {"template": "{{ n }}", "dtype": "json"}},
        {
            "name": "x",
            "category": {"values": ["a"]},
            "conditional_params": {"label.missing == 1": {"values": ["b"]}},
        },
    ]
    result = gl.preview(pipeline(columns, generator_first_rows=1000), 50)
    assert result.num_rows == 0 or result.num_dropped > 0
    assert "x" in result.drop_reasons


@settings(max_examples=20, deadline=None)
@given(
    weights=st.lists(st.integers(1, 5), min_size=3, max_size=3),
    group=st.integers(1, 60),
    in_flight=st.integers(1, 4),
)
def test_values_do_not_depend_on_concurrency(
    weights: list[int], group: int, in_flight: int
) -> None:
    """For any weights and row-group size, running with 1 or many row groups in flight gives
    the same rows: a row's value depends on the seed, its row group and its conditions only."""
    columns = country_city()
    columns[0]["category"]["weights"] = weights
    one = gl.preview(pipeline(columns, row_group_size=group, max_row_groups_in_flight=1), 90)
    many = gl.preview(
        pipeline(columns, row_group_size=group, max_row_groups_in_flight=in_flight), 90
    )
    assert one.table.equals(many.table)
    for row in one.table.to_pylist():
        assert row["city"] in CITIES.get(row["country"], ELSEWHERE)


def test_a_row_without_a_true_condition_keeps_the_plain_columns_value() -> None:
    """Rows where no condition holds have exactly the values of the column without
    conditional_params: adding conditions changes only the rows they pick."""
    plain = country_city()
    del plain[1]["conditional_params"]
    before = gl.preview(pipeline(plain), 200).table.to_pylist()
    after = gl.preview(pipeline(country_city()), 200).table.to_pylist()
    assert [r for r in before if r["country"] == "France"] == [
        r for r in after if r["country"] == "France"
    ]


# --------------------------------------------------------------------------- graph and forms


def test_the_graph_records_the_dependency_and_the_conditions() -> None:
    """The sampler depends on the columns its conditions read; validate lists them."""
    graph = gl.validate(pipeline(country_city()))
    entry = {e["node"]: e for e in graph.describe()}["city"]
    assert entry["depends_on"] == ["country"]
    assert entry["conditional_params"] == ["country == 'Japan'", "{{ country == 'Chile' }}"]


def test_dump_load_and_the_builder_agree() -> None:
    """conditional_params survive a dump and load, the builder takes them, and a column
    without them dumps no such key."""
    config = pipeline(country_city())
    assert structure_pipeline(unstructure_pipeline(config)) == config
    built = (
        gl.PipelineBuilder(seed=11)
        .category("country", ["Japan", "Chile", "France"])
        .category(
            "city",
            ELSEWHERE,
            conditional_params={
                "country == 'Japan'": {"values": CITIES["Japan"]},
                "{{ country == 'Chile' }}": {"values": CITIES["Chile"]},
            },
        )
        .build()
    )
    assert built.columns == config.columns
    plain = unstructure_pipeline(pipeline(country_city()[:1]))
    assert "conditional_params" not in plain["columns"][0]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("conditions", "field", "words"),
    [
        ({"country == 'Japan'": {"values": []}}, ".values", "values"),
        ({"country == 'Japan'": {"valeus": ["x"]}}, "", "valeus"),
        ({"country == 'Japan'": {"values": [1, 2]}}, "", "every variant"),
        ({"{{ country }}": {"values": ["x"]}}, "", "holds string values"),
        ({"1 + 2": {"values": ["x"]}}, "", "true or false"),
        ({"'yes'": {"values": ["x"]}}, "", "constant 'yes'"),
        ({"{{ country == }}": {"values": ["x"]}}, "", "does not parse"),
        ({"{% if x %}": {"values": ["x"]}}, "", "one Jinja expression"),
    ],
)
def test_bad_conditions_and_parameters_fail_validation(
    conditions: dict[str, Any], field: str, words: str
) -> None:
    """Invalid parameters (empty, misspelt, of another type), conditions that are not a
    true/false expression or do not parse: one line naming the condition's field."""
    error = config_error(pipeline(country_city(conditions)))
    condition = next(iter(conditions))
    assert error.column == "city"
    assert (error.field or "").startswith(f"conditional_params[{condition!r}]{field}")
    assert words in str(error)


def test_an_unknown_column_in_a_condition_is_an_unknown_reference() -> None:
    """A condition naming an unknown column fails like a template would, with a suggestion."""
    with pytest.raises(UnknownReferenceError) as info:
        gl.validate(pipeline(country_city({"contry == 'Japan'": {"values": ["x"]}})))
    assert "did you mean 'country'" in str(info.value)
    assert info.value.field == "conditional_params[\"contry == 'Japan'\"]"


def test_conditional_params_apply_to_samplers_only() -> None:
    """conditional_params on a column that is not a sampler is refused, naming the field."""
    columns = [
        {"name": "country", "category": {"values": ["Japan"]}},
        {
            "name": "note",
            "expression": {"template": "x"},
            "conditional_params": {"country == 'Japan'": {"template": "y"}},
        },
    ]
    error = config_error(pipeline(columns))
    assert error.field == "conditional_params"
    assert "sampler columns only" in str(error)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({}, "at least one entry"),
        ({"a == 1": {}}, "non-empty mapping"),
        ({"a == 1": {"name": "other"}}, "may not set 'name'"),
        ({"  ": {"values": [1]}}, "non-empty string"),
        (["a == 1"], "mapping"),
    ],
)
def test_malformed_conditional_params_are_refused_on_load(value: Any, words: str) -> None:
    """An empty mapping, empty parameters, a common field in the parameters, a blank
    condition, a list: refused when the config is read, naming the field."""
    columns = [{"name": "a", "category": {"values": [1]}, "conditional_params": value}]
    with pytest.raises(ConfigError) as info:
        pipeline(columns)
    assert "conditional_params" in str(info.value)
    assert words in str(info.value)


def test_the_samplers_example_keeps_its_promises() -> None:
    """examples/samplers.yaml: each person's locale follows the country, budgets follow the
    segment, and both constraints hold in every row."""
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "samplers.yaml"
    result = gl.preview(example, 300)
    rows = result.table.to_pylist()
    assert result.num_rows == 300
    locales = {"France": "fr_FR", "Japan": "ja_JP", "Brazil": "pt_BR"}
    for row in rows:
        assert row["customer"]["locale"] == locales.get(row["country"], "en_US")
        assert row["price"] <= row["budget"]
        assert row["discount"] >= 0
        if row["segment"] == "enterprise":
            assert 5000 <= row["budget"] <= 50000


@settings(max_examples=4, deadline=None)
@given(group=st.integers(7, 60), in_flight=st.integers(2, 8))
def test_the_samplers_example_does_not_depend_on_concurrency(group: int, in_flight: int) -> None:
    """Every sampler kind of examples/samplers.yaml (person, scipy, conditional ranges,
    constraints) gives the same rows with one row group in flight or many."""
    from pathlib import Path

    from gridloom.config import load_config

    example = load_config(Path(__file__).resolve().parent.parent / "examples" / "samplers.yaml")
    runs = [
        gl.preview(
            attrs.evolve(
                example,
                run=attrs.evolve(
                    example.run, row_group_size=group, max_row_groups_in_flight=flight
                ),
            ),
            120,
        ).table
        for flight in (1, in_flight)
    ]
    assert runs[0].equals(runs[1])
