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
