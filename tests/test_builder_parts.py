"""The builder's pipeline parts (providers, models, the seed dataset, the run) take nested
settings as mappings, as a file holds them, and refuse bad ones when the part is added.

Before, a mapping given for a nested config class (a provider's ``simulation``, the run's
``throttle`` or ``ray``) was kept as a dict: the pipeline built, and the run failed at its
first request with an ``AttributeError``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config._simulation import LatencyConfig, SimulatedModel

latencies = st.fixed_dictionaries(
    {},
    optional={
        "median": st.floats(0, 2, allow_nan=False),
        "sigma": st.floats(0, 1, allow_nan=False),
        "fixed": st.floats(0, 1, allow_nan=False),
    },
)
models = st.fixed_dictionaries(
    {},
    optional={
        "latency": latencies,
        "capacity": st.none() | st.integers(1, 64),
        "retry_after": st.floats(0, 5, allow_nan=False),
        "error_500_rate": st.floats(0, 1, allow_nan=False),
    },
)
simulations = st.fixed_dictionaries(
    {},
    optional={
        "seed": st.integers(0, 10),
        "default": models,
        "models": st.dictionaries(st.sampled_from(["a", "b-1"]), models, max_size=2),
        "batch": st.fixed_dictionaries(
            {}, optional={"completion_delay": st.floats(0, 9, allow_nan=False)}
        ),
    },
)
throttles = st.fixed_dictionaries(
    {},
    optional={
        "reduce_factor": st.floats(0.1, 0.9, allow_nan=False),
        "initial_limit": st.integers(1, 64),
        "rampup_seconds": st.floats(0, 10, allow_nan=False),
    },
)
rays = st.fixed_dictionaries(
    {}, optional={"shards": st.none() | st.integers(1, 8), "max_retries": st.integers(0, 5)}
)


def _file(simulation: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": [{"name": "sim", "type": "simulated", "simulation": simulation}],
        "models": [{"alias": "m", "provider": "sim", "model": "x"}],
        "columns": [{"name": "t", "llm_text": {"model": "m", "prompt": "hi"}}],
        "run": run,
    }


@settings(max_examples=60, deadline=None)
@given(simulation=simulations, throttle=throttles, ray=rays, seed=st.integers(0, 99))
def test_nested_settings_build_what_a_file_loads(
    simulation: dict[str, Any], throttle: dict[str, Any], ray: dict[str, Any], seed: int
) -> None:
    """Any valid nested settings given to the builder as mappings make the same pipeline as
    the same settings in a file (through two ``run`` calls, the later one kept)."""
    run = {"seed": seed, "throttle": throttle, "ray": ray}
    built = (
        gl.PipelineBuilder()
        .provider("sim", type="simulated", simulation=simulation)
        .model("m", provider="sim", model="x")
        .llm_text("t", model="m", prompt="hi")
        .run(seed=seed, throttle={"initial_limit": 3})
        .run(throttle=throttle, ray=ray)
        .build()
    )
    assert built == gl.load_config(_file(simulation, run))


def test_mappings_and_config_objects_mix() -> None:
    """A mapping may hold config objects (and an object mappings' results): both make the
    same provider."""
    latency = LatencyConfig(median=0.01)
    mixed = gl.PipelineBuilder().provider(
        "sim", type="simulated", simulation={"default": SimulatedModel(latency=latency)}
    )
    plain = gl.PipelineBuilder().provider(
        "sim", type="simulated", simulation={"default": {"latency": {"median": 0.01}}}
    )
    assert mixed._providers == plain._providers


def test_a_preview_runs_with_the_builders_simulation() -> None:
    """The run uses the settings (it used to fail on the dict itself): a simulated model
    that takes one request at a time refuses some of the preview's concurrent requests with
    a 429, as the same file's does; without that setting none is refused."""

    def refused(simulation: dict[str, Any], *, file: bool = False) -> int:
        if file:
            cfg = gl.load_config(_file(simulation, {"seed": 4}))
        else:
            cfg = (
                gl.PipelineBuilder(seed=4)
                .provider("sim", type="simulated", simulation=simulation)
                .model("m", provider="sim", model="x")
                .llm_text("t", model="m", prompt="hi")
                .build()
            )
        result = gl.preview(cfg, num_records=4)
        assert result.status == "complete"
        assert result.num_rows == 4
        count: int = result.summary["models"]["m"]["rate_limited"]
        return count

    latency = {"latency": {"fixed": 0.05}}
    one_at_a_time = {"default": {**latency, "capacity": 1, "retry_after": 0.01}}
    assert refused(one_at_a_time) > 0
    assert refused(one_at_a_time, file=True) > 0
    assert refused({"default": latency}) == 0


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        (
            lambda b: b.provider("sim", type="simulated", simulation={"defaultt": {}}),
            "providers[0].simulation.defaultt",
            "did you mean 'default'?",
        ),
        (
            lambda b: b.provider(
                "sim", type="simulated", simulation={"default": {"latency": {"median": "x"}}}
            ),
            "providers[0].simulation.default.latency.median",
            "expected a number",
        ),
        (
            lambda b: b.provider("sim", type="simulated", simulation="fast"),
            "providers[0].simulation",
            "expected SimulationConfig, got str 'fast'",
        ),
        (
            lambda b: b.run(throttle={"reduce_factor": 3}),
            "run.throttle.reduce_factor",
            "",
        ),
        (lambda b: b.run(ray={"shard": 2}), "run.ray.shard", "did you mean 'shards'?"),
        (lambda b: b.run(ray=2), "run.ray", "expected RayConfig, got int 2"),
        (
            lambda b: b.uniform("a", low=1, high=2).constraint("a", "!=", value=1),
            "constraints[0].op",
            "'op' must be in ('<', '<=', '>', '>=') (got '!=')",
        ),
        (
            lambda b: b.llm_text("t", model="m", prompt="hi", validate_with={"kind": "regex"}),
            "llm_text.validate_with",
            "expected a list of ValidatorConfig objects or mappings, got dict",
        ),
        (
            lambda b: b.llm_text("t", model="m", prompt="hi", validate_with=["regex"]),
            "llm_text.validate_with",
            "expected ValidatorConfig, got str 'regex'",
        ),
    ],
)
def test_a_bad_nested_setting_fails_when_added(build: Any, field: str, message: str) -> None:
    """The builder call that adds a bad setting fails, naming its field and the problem in
    words (no validator's internals), before anything is built or run."""
    with pytest.raises(gl.ConfigError) as caught:
        build(gl.PipelineBuilder().model("m", provider="sim", model="x"))
    assert caught.value.field == field
    assert message in str(caught.value)
    assert "Attribute(" not in str(caught.value)


# --------------------------------------------------------------------------- file rule


SIM = {"name": "sim", "type": "simulated"}


@pytest.mark.parametrize("seed", ["x", 1.0, 2**63, -(2**63) - 1, 2**80, [1], True, "7"])
def test_a_seed_no_file_holds_is_refused_from_python(seed: Any) -> None:
    """`PipelineBuilder(seed=...)`, `.run(seed=...)` and `RunConfig(seed=...)` refuse what
    `run.seed` in a file refuses (a whole number within 64 bits, not a boolean); before, the
    run went ahead, wrote `seed: x` to its config.yaml and could be neither resumed nor
    exported."""
    with pytest.raises(gl.ConfigError) as from_file:
        gl.load_config(
            {"columns": [{"name": "a", "uniform": {"low": 0, "high": 1}}], "run": {"seed": seed}}
        )
    assert from_file.value.field == "run.seed"
    with pytest.raises(gl.ConfigError) as built:
        gl.PipelineBuilder(seed=seed).uniform("a", 0, 1).build()
    assert (built.value.field, built.value.message) == ("run.seed", from_file.value.message)
    with pytest.raises(gl.ConfigError, match="expected an integer") as ran:
        gl.PipelineBuilder().uniform("a", 0, 1).run(seed=seed)
    assert ran.value.field == "run.seed"
    with pytest.raises((TypeError, ValueError), match=r"^seed: expected an integer"):
        gl.config.RunConfig(seed=seed)


@pytest.mark.parametrize("seed", [0, -1, 2**63 - 1, -(2**63)])
def test_every_seed_a_file_holds_is_taken_from_python(seed: int) -> None:
    """The bounds are the file's: the whole 64-bit range, negative numbers included."""
    built = gl.PipelineBuilder(seed=seed).uniform("a", 0, 1).build()
    assert built.run.seed == seed
    assert gl.load_config(_as_doc(built)) == built


def _as_doc(cfg: gl.PipelineConfig) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(gl.dump_config(cfg))
    return loaded


def test_a_python_seed_that_a_run_took_before_is_refused_before_any_output(tmp_path: Any) -> None:
    """The reported case: `gl.create` with seed "x" fails before writing anything."""
    out = tmp_path / "api_seedx"
    with pytest.raises(gl.ConfigError, match=r"run\.seed"):
        gl.create(
            gl.PipelineBuilder(seed="x").uniform("a", 0, 1).build(),  # type: ignore[arg-type]
            num_records=3,
            output_dir=str(out),
        )
    assert not out.exists()


#: Values of every shape a Python caller might pass for a scalar field.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 2),
    st.text(max_size=4),
    st.sampled_from(["\ud800", "off", "log", "column", "ray", "read_only", "1"]),
    st.lists(st.integers(0, 2), max_size=2),
)


def _scalar_fields(cls: type) -> list[str]:
    import typing

    import attrs

    from gridloom.config._typecheck import type_problem

    hints = typing.get_type_hints(cls)
    # the fields the file rule judges by type: a value of the wrong kind is refused
    return [f.name for f in attrs.fields(cls) if type_problem(object(), hints[f.name])]


RUN_FIELDS = _scalar_fields(gl.config.RunConfig)


def _run_file(name: str, value: Any) -> dict[str, Any]:
    return {"columns": [{"name": "a", "uniform": {"low": 0, "high": 1}}], "run": {name: value}}


def _model_file(name: str, value: Any) -> dict[str, Any]:
    return {
        "providers": [SIM],
        "models": [{"alias": "m", "provider": "sim", "model": "x", name: value}],
        "columns": [{"name": "t", "llm_text": {"model": "m", "prompt": "hi"}}],
    }


def _text_file(name: str, value: Any) -> dict[str, Any]:
    from gridloom.config._kind import COMMON_FIELDS

    column: dict[str, Any] = {"name": "t", "llm_text": {"model": "m", "prompt": "hi"}}
    (column if name in COMMON_FIELDS else column["llm_text"])[name] = value
    return {
        "providers": [SIM],
        "models": [{"alias": "m", "provider": "sim", "model": "x"}],
        "columns": [column],
    }


def _built(part: str, name: str, value: Any) -> gl.PipelineConfig:
    builder = gl.PipelineBuilder()
    if part == "run":
        return builder.uniform("a", 0, 1).run(**{name: value}).build()
    builder = builder.provider("sim", type="simulated")
    if part == "model":
        builder.model("m", provider="sim", model="x", **{name: value})
        return builder.llm_text("t", model="m", prompt="hi").build()
    builder.model("m", provider="sim", model="x")
    return builder.llm_text("t", **{"model": "m", "prompt": "hi", name: value}).build()


def _fields(part: str) -> list[str]:
    from gridloom.config import ModelConfig
    from gridloom.kinds.llm_text import LLMTextColumn

    if part == "run":
        return RUN_FIELDS
    if part == "model":
        return [n for n in _scalar_fields(ModelConfig) if n not in ("alias", "provider", "model")]
    return [n for n in _scalar_fields(LLMTextColumn) if n not in ("name", "model", "prompt")]


FILES = {"run": _run_file, "model": _model_file, "llm_text": _text_file}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), part=st.sampled_from(["run", "model", "llm_text"]), value=ANY_VALUE)
def test_a_field_set_in_python_holds_what_a_file_holds(
    data: st.DataObject, part: str, value: Any
) -> None:
    """For any value of any shape given to a scalar field of the run, a model or a column
    from Python: what the builder accepts, the same file accepts (and loads equal), and the
    built pipeline dumps to a config.yaml that loads back equal, with the same hash; what
    the file refuses, the builder refuses, naming the same field."""
    name = data.draw(st.sampled_from(_fields(part)))
    from_file, file_error = _outcome(lambda: gl.load_config(FILES[part](name, value)))
    built, built_error = _outcome(lambda: _built(part, name, value))
    if built_error is not None:
        # A file reads a YAML word as a boolean (`progress: off`), so it maps a boolean to
        # the choice it spells; Python is given the word itself.
        assert file_error is not None or isinstance(value, bool), (name, value, built_error)
        if file_error is not None and file_error.field is not None:
            assert built_error.field is not None
            assert built_error.field.rsplit(".", 1)[-1] == file_error.field.rsplit(".", 1)[-1]
        return
    assert file_error is None, (name, value, file_error)
    again = gl.load_config(_as_doc(built))
    assert again == from_file
    # Known gap: a float field given an int that no float holds exactly (beyond 2**53)
    # keeps the int in Python, where a file's value is made a float.
    if not (type(value) is int and abs(value) > 2**53):
        assert built == from_file
        assert again == built
        assert gl.config.config_hash(again) == gl.config.config_hash(built)


def _outcome(make: Any) -> tuple[Any, gl.ConfigError | None]:
    try:
        return make(), None
    except gl.ConfigError as exc:
        return None, exc


def test_config_objects_made_directly_are_held_to_the_file_rule() -> None:
    """Config classes called directly, at any depth (a column's common field, a kind's field,
    a provider's simulation), are checked when the pipeline is made, each problem named by
    its column and field."""
    from gridloom.config import ModelConfig, PipelineConfig, ProviderConfig, SimulationConfig
    from gridloom.kinds.uniform import UniformColumn

    with pytest.raises(gl.ConfigError) as caught:
        PipelineConfig(
            columns=[
                UniformColumn(name="a", low=0, high=1, drop="yes"),  # type: ignore[arg-type]
                UniformColumn(name="b", low=0, high=1, convert_to="integer"),  # type: ignore[arg-type]
            ],
            providers=[
                ProviderConfig(
                    name="sim",
                    type="simulated",
                    simulation=SimulationConfig(seed="x"),  # type: ignore[arg-type]
                )
            ],
            models=[ModelConfig(alias="m", provider="sim", model="x", max_response_bytes=True)],
        )
    found = {(issue.column, issue.field) for issue in caught.value.issues}
    assert found == {
        ("a", "drop"),
        ("b", "uniform.convert_to"),
        (None, "providers[0].simulation.seed"),
        (None, "models[0].max_response_bytes"),
    }
    assert "expected true or false, got str 'yes'" in str(caught.value)
