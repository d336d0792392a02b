"""Inference parameters drawn per cell from distributions: config, drawing, recording, wire."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients._types import Message
from gridloom.config import (
    InferenceDistribution,
    ModelConfig,
    SimulatedModel,
    SimulationConfig,
    config_json_schema,
    structure_pipeline,
    unstructure_pipeline,
)
from gridloom.errors import ConfigError
from gridloom.generators._inference import InferencePlan
from gridloom.generators.base import CellContext
from gridloom.kinds.llm_text import LLMTextColumn, LLMTextGenerator
from gridloom.simulated import serve_simulated
from gridloom.simulated._app import SimulatedApp

STRUCT_SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def pipeline(
    column: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    *,
    providers: list[dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
    extra_columns: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pipeline document: a number column ``n`` and an ``llm_text`` column ``c`` over it."""
    sim = {"name": "sim", "type": "simulated", "simulation": {"transport": "asgi"}}
    return {
        "providers": providers or [sim],
        "models": [{"alias": "m", "provider": "sim", "model": "m", **(model or {})}],
        "columns": [
            {"name": "n", "uniform": {"low": 0, "high": 1000, "convert_to": "int"}},
            {"name": "c", "llm_text": {"model": "m", "prompt": "Say {{ n }}", **(column or {})}},
            *(extra_columns or []),
        ],
        "run": {"seed": 11, **(run or {})},
    }


# --------------------------------------------------------------------------- config


def test_numbers_and_distributions_load_and_dump_back() -> None:
    """A number stays a number (dumped as before); a distribution dumps in its file form."""
    doc = pipeline(
        {"temperature": {"values": [0.2, 0.9], "weights": [1, 3]}, "top_p": 1},
        {"temperature": {"uniform": [0.5, 1.0]}, "top_p": 0.9, "max_tokens": {"uniform": [8, 64]}},
    )
    config = structure_pipeline(doc)
    column = config.column("c")
    assert isinstance(column, LLMTextColumn)
    assert column.temperature == InferenceDistribution(values=(0.2, 0.9), weights=(1.0, 3.0))
    assert config.models[0].temperature == InferenceDistribution(uniform=(0.5, 1.0))
    dumped = unstructure_pipeline(config)
    params = dumped["columns"][1]["llm_text"]
    assert params["temperature"] == {"values": [0.2, 0.9], "weights": [1.0, 3.0]}
    assert params["top_p"] == 1.0
    assert isinstance(params["top_p"], float)
    model = dumped["models"][0]
    assert model["temperature"] == {"uniform": [0.5, 1.0]}
    assert model["max_tokens"] == {"uniform": [8, 64]}
    assert all(type(v) is int for v in model["max_tokens"]["uniform"])
    assert structure_pipeline(dumped) == config


def test_plain_numbers_dump_exactly_as_before() -> None:
    """Columns and models with plain numbers (ints too) dump the floats and ints they did."""
    column = LLMTextColumn(name="c", model="m", prompt="p", temperature=1, top_p=0.5)
    model = ModelConfig(alias="m", provider="sim", model="m", temperature=0, max_tokens=7)
    config = gl.PipelineConfig(
        columns=[column],
        providers=[gl.ProviderConfig(name="sim", type="simulated")],
        models=[model],
    )
    dumped = unstructure_pipeline(config)
    params = dumped["columns"][0]["llm_text"]
    assert (params["temperature"], params["top_p"], params["max_tokens"]) == (1.0, 0.5, None)
    assert type(params["temperature"]) is float
    assert (dumped["models"][0]["temperature"], dumped["models"][0]["max_tokens"]) == (0.0, 7)
    assert type(dumped["models"][0]["temperature"]) is float


REFUSED = [
    ("temperature", {"uniform": [1.0, 0.5]}, "llm_text.temperature.uniform", "low <= high"),
    ("temperature", {"uniform": [-0.5, 1.0]}, "llm_text.temperature", "reaches -0.5"),
    ("temperature", {"values": [0.5, -1]}, "llm_text.temperature", ">= 0 over its whole"),
    ("temperature", {"uniform": [0.1]}, "llm_text.temperature.uniform", "two numbers"),
    ("temperature", {"uniform": [0, 1], "values": [1]}, "llm_text.temperature", "both"),
    ("temperature", {}, "llm_text.temperature", "neither"),
    ("temperature", {"weights": [1]}, "llm_text.temperature.weights", "go with values"),
    ("temperature", {"unifrom": [0, 1]}, "llm_text.temperature.unifrom", "did you mean"),
    ("temperature", {"values": [0.5, math.inf]}, "llm_text.temperature.values[1]", "finite"),
    ("temperature", {"values": []}, "llm_text.temperature.values", "at least one"),
    ("temperature", "hot", "llm_text.temperature", "a number or a distribution"),
    ("temperature", True, "llm_text.temperature", "a number or a distribution"),
    ("top_p", {"uniform": [0.5, 1.5]}, "llm_text.top_p", "between 0 and 1"),
    ("top_p", 1.5, "llm_text.top_p", "between 0 and 1"),
    ("top_p", {"values": [0.5, 0.9], "weights": [0, 0]}, "llm_text.top_p.weights", "all be zero"),
    ("top_p", {"values": [0.5], "weights": [-1]}, "llm_text.top_p.weights", ">= 0"),
    ("top_p", {"values": [0.5, 0.6], "weights": [1]}, "llm_text.top_p.weights", "one weight"),
    ("top_p", {"values": [0.5, 0.6], "weights": [1e308, 1e308]}, "llm_text.top_p.weights", "sum"),
    ("max_tokens", {"uniform": [0, 10]}, "llm_text.max_tokens", "whole number >= 1"),
    ("max_tokens", {"values": [16, 32.5]}, "llm_text.max_tokens", "reaches 32.5"),
    ("max_tokens", 0.5, "llm_text.max_tokens", "integer"),
]


@pytest.mark.parametrize(("field", "value", "where", "fragment"), REFUSED)
def test_refused_column_parameters_name_column_and_field(
    field: str, value: Any, where: str, fragment: str
) -> None:
    """A bad column value fails at load in one line naming column and field."""
    with pytest.raises(ConfigError) as info:
        structure_pipeline(pipeline({field: value}))
    message = str(info.value)
    assert message.startswith(f"column 'c', field '{where}': "), message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(("field", "value", "where", "fragment"), REFUSED)
def test_refused_model_parameters_name_the_model_field(
    field: str, value: Any, where: str, fragment: str
) -> None:
    """The same values on a model fail at load naming ``models[0].<field>``."""
    with pytest.raises(ConfigError) as info:
        structure_pipeline(pipeline(model={field: value}))
    message = str(info.value)
    assert message.startswith(f"field '{where.replace('llm_text', 'models[0]')}"), message
    assert fragment in message
    assert "\n" not in message


def test_builder_takes_distributions_as_mappings() -> None:
    """The builder's model and llm_text methods take a distribution as a plain mapping."""
    built = (
        gl.PipelineBuilder(seed=11)
        .provider("sim", type="simulated")
        .model("m", provider="sim", model="m", temperature={"uniform": [0.5, 1.0]})
        .llm_text("c", "m", "hi", temperature={"values": [0.2, 0.9], "weights": [1, 3]})
        .build()
    )
    assert built.models[0].temperature == InferenceDistribution(uniform=(0.5, 1.0))
    column = built.column("c")
    assert isinstance(column, LLMTextColumn)
    assert column.temperature == InferenceDistribution(values=(0.2, 0.9), weights=(1, 3))
    assert built.column("c").output_names() == ("c", "c__inference")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda b: b.llm_text("c", "m", "hi", temperature={"uniform": [-1, 1]}),
            "column 'c', field 'llm_text.temperature': temperature must be >= 0",
        ),
        (
            lambda b: b.model("m", provider="sim", model="m", top_p={"values": [2]}),
            "field 'models[0].top_p': top_p must be between 0 and 1",
        ),
    ],
)
def test_builder_refuses_bad_distributions(call: Any, message: str) -> None:
    """A bad distribution given to the builder fails at once, naming the field."""
    with pytest.raises(ConfigError) as info:
        call(gl.PipelineBuilder())
    assert str(info.value).startswith(message)


def test_json_schema_describes_number_or_distribution() -> None:
    """The JSON Schema takes a number or a distribution object, and refuses mixed forms."""
    schema = config_json_schema()
    good = pipeline(
        {"temperature": {"values": [0.2, 0.9], "weights": [1, 3]}, "top_p": 0.9},
        {"temperature": {"uniform": [0.5, 1.0]}, "max_tokens": 64},
    )
    jsonschema.validate(good, schema)
    for bad in (
        {"uniform": [0.1, 0.2], "values": [0.3]},
        {"weights": [1]},
        {"uniform": [0.1]},
        {"uniform": [0.1, 0.2], "extra": 1},
        "hot",
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(pipeline({"temperature": bad}), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pipeline({"temperature": -1}), schema)


def test_the_inference_output_sits_between_reasoning_and_raw() -> None:
    """``__inference`` comes after ``__reasoning``, before ``__raw``; others are unchanged."""
    config = structure_pipeline(
        pipeline(
            {"temperature": 0.7, "with_reasoning": True},
            extra_columns=[
                {
                    "name": "s",
                    "llm_structured": {
                        "model": "m",
                        "prompt": "p",
                        "schema": STRUCT_SCHEMA,
                        "with_reasoning": True,
                        "keep_raw": True,
                        "top_p": {"uniform": [0.5, 0.9]},
                    },
                }
            ],
        )
    )
    assert config.column("c").output_names() == ("c", "c__reasoning")
    assert config.column("s").output_names() == ("s", "s__reasoning", "s__inference", "s__raw")


async def test_a_model_distribution_is_recorded_by_every_column_that_inherits_it() -> None:
    """A distribution set only on the model gives each of its columns that sets the
    parameter to no number an ``__inference`` column with the values its cells drew; a column
    that overrides it with a number keeps its outputs."""
    config = structure_pipeline(
        pipeline(
            None,
            {"temperature": {"uniform": [0.5, 1.0]}},
            extra_columns=[
                {"name": "fixed", "llm_text": {"model": "m", "prompt": "p", "temperature": 0.3}}
            ],
        )
    )
    result = await gl.apreview(config, 8)
    assert "c__inference" in result.table.column_names
    assert "fixed__inference" not in result.table.column_names
    drawn = [row["temperature"] for row in result.table.column("c__inference").to_pylist()]
    assert len(set(drawn)) == 8
    assert all(0.5 <= value <= 1.0 for value in drawn)


# --------------------------------------------------------------------------- drawing


uniforms = st.tuples(st.floats(0, 2, allow_nan=False), st.floats(0, 2, allow_nan=False)).map(
    lambda pair: InferenceDistribution(uniform=tuple(sorted(pair)))
)
choices = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=8).flatmap(
    lambda values: st.builds(
        InferenceDistribution,
        values=st.just(values),
        weights=st.none()
        | st.lists(st.floats(0, 10), min_size=len(values), max_size=len(values)).filter(
            lambda w: any(x > 0 for x in w)
        ),
    )
)


@given(uniforms | choices, st.integers(0, 2**64 - 1))
def test_drawn_values_lie_in_the_support(dist: InferenceDistribution, seed: int) -> None:
    """Every draw lies in the distribution's support (a listed value with weight > 0)."""
    rng = random.Random(seed)
    for _ in range(20):
        value = dist.draw(rng)
        assert isinstance(value, float)
        if dist.uniform is not None:
            assert dist.uniform[0] <= value <= dist.uniform[1]
        else:
            assert dist.values is not None
            allowed = [
                v for i, v in enumerate(dist.values) if dist.weights is None or dist.weights[i] > 0
            ]
            assert value in allowed


@given(uniforms | choices, choices)
def test_distributions_round_trip_through_the_file_form(
    column: InferenceDistribution, model: InferenceDistribution
) -> None:
    """Any distribution dumps to its file form and loads back equal, hash included."""
    doc = pipeline({"temperature": column}, {"top_p": model})
    config = structure_pipeline(unstructure_pipeline(structure_pipeline(doc)))
    assert config == structure_pipeline(doc)
    assert gl.config.config_hash(config) == gl.config.config_hash(structure_pipeline(doc))


@given(st.integers(1, 10_000), st.integers(0, 50), st.integers(0, 2**32))
def test_whole_number_draws_stay_whole_and_in_range(low: int, width: int, seed: int) -> None:
    """``max_tokens`` draws are whole numbers from low to high, both included."""
    dist = InferenceDistribution(uniform=(low, low + width))
    value = dist.draw(random.Random(seed), integer=True)
    assert type(value) is int
    assert low <= value <= low + width


@given(
    st.sampled_from(["temperature", "top_p", "max_tokens"]),
    st.floats(-100, -0.001, allow_nan=False),
    st.floats(0, 0.5, allow_nan=False),
)
def test_out_of_bounds_supports_are_refused_naming_the_field(
    field: str, low: float, high: float
) -> None:
    """A distribution reaching below a field's bound fails in one line naming the field."""
    with pytest.raises(ConfigError) as info:
        structure_pipeline(pipeline({field: {"uniform": [low, high]}}))
    message = str(info.value)
    assert message.startswith(f"column 'c', field 'llm_text.{field}': {field} must be")
    assert "\n" not in message


def test_weights_shape_the_draws() -> None:
    """Weights 1:3 give the second value about three quarters of the draws."""
    dist = InferenceDistribution(values=(0.2, 0.9), weights=(1, 3))
    rng = random.Random(5)
    counts = Counter(dist.draw(rng) for _ in range(4000))
    assert set(counts) == {0.2, 0.9}
    assert 0.72 < counts[0.9] / 4000 < 0.78


def test_the_column_overrides_the_model_which_fills_in() -> None:
    """A column's setting wins, the model's fills in, and draws depend on seed and row."""
    model = ModelConfig(
        alias="m",
        provider="sim",
        model="m",
        temperature={"uniform": [0.5, 1.0]},
        top_p={"values": [0.8, 0.9]},
        max_tokens=99,
    )
    column = LLMTextColumn(name="c", model="m", prompt="p", temperature=0.3)
    plan = InferencePlan(column, model)
    assert plan.fixed == {"temperature": 0.3, "top_p": None, "max_tokens": 99}
    assert list(plan.distributions) == ["top_p"]
    assert plan.arrow_type() == pa.struct([pa.field("top_p", pa.float64())])
    assert plan.draw(7, 3) == plan.draw(7, 3)
    assert {plan.draw(7, row)["top_p"] for row in range(50)} == {0.8, 0.9}
    own = LLMTextColumn(name="c", model="m", prompt="p", max_tokens={"uniform": [10, 20]})
    plan = InferencePlan(own, model)
    assert list(plan.distributions) == ["temperature", "top_p", "max_tokens"]
    assert plan.arrow_type().field("max_tokens").type == pa.int64()
    assert {type(plan.draw(1, row)["max_tokens"]) for row in range(20)} == {int}


def test_a_request_needs_the_cells_drawn_values() -> None:
    """The request carries the drawn values; asking for one without them is refused."""
    model = ModelConfig(alias="m", provider="sim", model="m", top_p={"values": [0.8]})
    column = LLMTextColumn(name="c", model="m", prompt="p", temperature=0.25)
    generator = LLMTextGenerator(column, model)
    ctx = CellContext(row={}, row_id=4, column="c", seed=2)
    drawn = generator.draw_inference(ctx)
    request = generator.request([Message(role="user", content="p")], None, drawn)
    assert (request.temperature, request.top_p, request.max_tokens) == (0.25, 0.8, None)
    with pytest.raises(ValueError, match="top_p is drawn per cell"):
        generator.request([Message(role="user", content="p")])


# --------------------------------------------------------------------------- runs


def inference_column(table: pa.Table, name: str = "c") -> list[Any]:
    values: list[Any] = table.column(f"{name}__inference").to_pylist()
    return values


async def test_draws_do_not_depend_on_concurrency_or_row_groups(autojump_clock: Any) -> None:
    """The same pipeline with other concurrency and row-group sizes draws the same values."""
    column = {"temperature": {"uniform": [0.5, 1.0]}, "max_tokens": {"values": [64, 128]}}
    model = {"top_p": {"values": [0.8, 0.95], "weights": [1, 3]}}
    first = await gl.apreview(
        pipeline(
            column,
            {**model, "max_parallel_requests": 1},
            run={"row_group_size": 40},
        ),
        num_records=40,
    )
    second = await gl.apreview(
        pipeline(
            column,
            {**model, "max_parallel_requests": 16},
            run={"row_group_size": 7, "max_row_groups_in_flight": 3},
        ),
        num_records=40,
    )
    drawn = inference_column(first.table)
    # Samplers draw per row group (``n`` differs), inference parameters per row: unchanged.
    assert first.table.column("n").to_pylist() != second.table.column("n").to_pylist()
    assert drawn == inference_column(second.table)
    assert len({row["temperature"] for row in drawn}) == 40
    assert all(0.5 <= row["temperature"] <= 1.0 for row in drawn)
    assert {row["top_p"] for row in drawn} == {0.8, 0.95}
    assert {row["max_tokens"] for row in drawn} == {64, 128}
    assert first.table.schema.field("c__inference").type == pa.struct(
        [
            pa.field("temperature", pa.float64()),
            pa.field("top_p", pa.float64()),
            pa.field("max_tokens", pa.int64()),
        ]
    )


async def test_another_seed_draws_other_values(autojump_clock: Any) -> None:
    """Draws come from the run seed: another seed, other values."""
    column = {"temperature": {"uniform": [0.0, 2.0]}}
    one = await gl.apreview(pipeline(column), num_records=10)
    other = await gl.apreview(pipeline(column, run={"seed": 12}), num_records=10)
    assert inference_column(one.table) != inference_column(other.table)


async def test_trace_spans_carry_the_drawn_values(autojump_clock: Any, tmp_path: Path) -> None:
    """Each cell's span holds its drawn values as JSON, in trace.parquet and trace.json."""
    doc = pipeline({"temperature": {"uniform": [0.5, 1.0]}}, run={"trace": True})
    result = await gl.acreate(doc, num_records=8, output_dir=tmp_path / "out")
    drawn = inference_column(result.table)  # rows in row-id order
    assert result.trace is not None
    spans = [row for row in result.trace.to_pylist() if row["column"] == "c"]
    assert len(spans) == 8
    assert {row["row_id"]: json.loads(row["inference"]) for row in spans} == dict(enumerate(drawn))
    assert {row["inference"] for row in result.trace.to_pylist() if row["column"] == "n"} == {""}
    events = json.loads((tmp_path / "out" / "trace.json").read_text())["traceEvents"]
    shown = {
        event["args"]["row_id"]: json.loads(event["args"]["inference"])
        for event in events
        if event.get("cat") == "attempt" and "inference" in event.get("args", {})
    }
    assert shown == dict(enumerate(drawn))


# --------------------------------------------------------------------------- over sockets


def socket_pipeline(url: str, column: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Against a simulated endpoint served over loopback, retries without pauses."""
    return pipeline(
        column,
        {"max_parallel_requests": 4, **model},
        providers=[{"name": "sim", "endpoint": url}],
        run={"retry_backoff_seconds": 0.0, "retry_backoff_max_seconds": 0.0},
    )


async def test_the_endpoint_receives_each_cells_values_on_every_attempt(tmp_path: Path) -> None:
    """Over a socket, every request of a cell (500s retried too) carries its drawn values."""
    simulation = SimulationConfig(seed=3, default=SimulatedModel(error_500_rate=0.4))
    async with serve_simulated(simulation) as server:
        doc = socket_pipeline(
            server.url,
            {"temperature": {"uniform": [0.5, 1.0]}, "max_tokens": {"uniform": [50, 500]}},
            {"top_p": {"values": [0.8, 0.95]}},
        )
        result = await gl.acreate(doc, num_records=24, output_dir=tmp_path / "out")
        timeline = server.app.timeline()
    drawn = inference_column(result.table)
    assert result.table.num_rows == 24
    by_temperature = {row["temperature"]: row for row in drawn}
    assert len(by_temperature) == 24
    sent = [(e.temperature, e.top_p, e.max_tokens) for e in timeline if e.status == 200]
    expected = [(r["temperature"], r["top_p"], r["max_tokens"]) for r in drawn]
    assert sorted(sent) == sorted(expected)  # one answered request per cell, its values
    failed = [e for e in timeline if e.status == 500]
    assert len(failed) >= 3
    for entry in failed:  # a retried request is sent with its cell's values again
        row = by_temperature[entry.temperature]
        assert (entry.top_p, entry.max_tokens) == (row["top_p"], row["max_tokens"])


async def test_correction_turns_reuse_the_cells_values(tmp_path: Path) -> None:
    """A structured answer sent back for correction is re-asked with the same values."""
    simulation = SimulationConfig(seed=5, default=SimulatedModel(invalid_output_rate=0.5))
    structured = {
        "name": "s",
        "llm_structured": {
            "model": "m",
            "prompt": "About {{ n }}",
            "schema": STRUCT_SCHEMA,
            "temperature": {"uniform": [0.1, 0.9]},
            "max_correction_attempts": 6,
        },
    }
    async with serve_simulated(simulation) as server:
        doc = socket_pipeline(server.url, {}, {})
        doc["columns"] = [doc["columns"][0], structured]
        result = await gl.acreate(doc, num_records=16, output_dir=tmp_path / "out")
        timeline = server.app.timeline()
    drawn = {row["temperature"] for row in inference_column(result.table, "s")}
    assert len(drawn) == result.table.num_rows == 16
    rejected = [e.temperature for e in timeline if e.outcome == "invalid_output"]
    assert len(rejected) >= 3
    assert set(rejected) <= drawn
    accepted = Counter(e.temperature for e in timeline if e.outcome == "ok")
    assert set(accepted) == drawn
    assert set(accepted.values()) == {1}


async def test_simulated_endpoint_records_sampling_parameters(autojump_clock: Any) -> None:
    """The simulator's timeline records sampling parameters; a text temperature is a 400."""
    app = SimulatedApp(SimulationConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1") as http:
        messages = [{"role": "user", "content": "hi"}]
        body = {"model": "m", "messages": messages, "temperature": 0.5, "top_p": 1}
        assert (await http.post("/chat/completions", json=body)).status_code == 200
        anthropic = {"model": "m", "messages": messages, "max_tokens": 9, "temperature": 0.25}
        assert (await http.post("/messages", json=anthropic)).status_code == 200
        bad = {"model": "m", "messages": messages, "temperature": "hot"}
        refused = await http.post("/chat/completions", json=bad)
    assert refused.status_code == 400
    assert "temperature" in refused.text
    first, second, third = app.timeline()
    assert (first.temperature, first.top_p, first.max_tokens) == (0.5, 1.0, None)
    assert (second.temperature, second.top_p, second.max_tokens) == (0.25, None, 9)
    assert third.temperature is None
    assert first.to_json()["temperature"] == 0.5
