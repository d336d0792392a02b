"""The ``scipy`` and ``bernoulli_mixture`` samplers: statistics, determinism, checks, builder."""

from __future__ import annotations

import math
import statistics
import sys
from typing import Any, cast

import pytest
import scipy.stats  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import PipelineBuilder, structure_pipeline
from gridloom.errors import ConfigError
from gridloom.generators import BatchContext, BuildContext, ColumnGenerator, build_generator
from gridloom.kinds import ScipyDistribution
from gridloom.kinds.bernoulli_mixture import BernoulliMixtureColumn
from gridloom.kinds.scipy_dist import ScipyColumn

DRAWS = 20_000


def build(column: Any) -> ColumnGenerator[Any]:
    return build_generator(column, BuildContext())


def draw(column: Any, n: int = DRAWS, *, seed: int = 7, row_group: int = 0) -> list[Any]:
    values = cast(
        list[Any],
        build(column).generate(
            BatchContext(
                row_ids=range(row_group * n, (row_group + 1) * n),
                columns={},
                row_group=row_group,
                column=column.name,
                seed=seed,
            )
        ),
    )
    assert len(values) == n
    return list(values)


def near(sample: list[float], mean: float, variance: float) -> bool:
    """The sample's mean within 5 standard errors of ``mean``, its variance within 10%."""
    error = math.sqrt(variance / len(sample))
    return (
        abs(statistics.fmean(sample) - mean) < 5 * error
        and abs(statistics.variance(sample) / variance - 1) < 0.1
    )


def config_error(column: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        gl.validate({"columns": [column]})
    return info.value


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("distribution", "params"),
    [
        ("gamma", {"a": 2.0}),
        ("gamma", {"a": 0.5, "scale": 4.0}),
        ("beta", {"a": 2.0, "b": 5.0}),
        ("lognorm", {"s": 0.5, "scale": 10.0}),
        ("norm", {"loc": -3.0, "scale": 2.0}),
        ("poisson", {"mu": 4.5}),
        ("nbinom", {"n": 5, "p": 0.4}),
    ],
)
def test_draws_match_the_distribution(distribution: str, params: dict[str, float]) -> None:
    """20,000 draws have the distribution's mean and variance (within sampling error)."""
    frozen = getattr(scipy.stats, distribution)(**params)
    values = draw(ScipyColumn(name="x", distribution=distribution, params=params))
    assert near(values, float(frozen.mean()), float(frozen.var()))


def test_discrete_distributions_give_integers_and_continuous_ones_floats() -> None:
    """A discrete distribution is stored as int64, a continuous one as float64."""
    poisson_column = ScipyColumn(name="k", distribution="poisson", params={"mu": 3})
    gamma = build(ScipyColumn(name="g", distribution="gamma", params={"a": 2}))
    assert str(build(poisson_column).outputs["k"]) == "int64"
    assert str(gamma.outputs["g"]) == "double"
    assert all(type(v) is int for v in draw(poisson_column, 100))


async def test_integer_parameters_from_a_file_stay_integers(autojump_clock: Any) -> None:
    """``binom``'s ``n`` written in YAML (read as a float) still draws integers up to ``n``."""
    column = {"name": "b", "scipy": {"distribution": "binom", "params": {"n": 5, "p": 0.5}}}
    result = await gl.apreview({"columns": [column]}, num_records=50)
    assert set(result.table.column("b").to_pylist()) <= set(range(6))


def test_draws_run_off_the_event_loop() -> None:
    """Both samplers run in a worker thread: some distributions draw slowly."""
    mixture = BernoulliMixtureColumn(name="m", p=0.5, dist=ScipyDistribution(distribution="norm"))
    assert build(ScipyColumn(name="x", distribution="norm")).inline is False
    assert build(mixture).inline is False


def test_low_and_high_clip_draws() -> None:
    """``low``/``high`` clip every draw into the range, and both ends are reached."""
    values = draw(ScipyColumn(name="x", distribution="norm", low=-0.5, high=0.5), 2000)
    assert min(values) == -0.5
    assert max(values) == 0.5


def test_integer_bounds_of_a_discrete_distribution_are_rounded_inward() -> None:
    """A discrete draw clipped to ``[0.5, 3.5]`` lies in ``{1, 2, 3}`` and stays an integer."""
    column = ScipyColumn(name="k", distribution="poisson", params={"mu": 2}, low=0.5, high=3.5)
    values = draw(column, 2000)
    assert set(values) == {1, 2, 3}
    assert all(type(v) is int for v in values)


def test_convert_to_int_and_decimals() -> None:
    """``convert_to: int`` rounds continuous draws; ``decimals`` rounds floats."""
    ints = draw(ScipyColumn(name="x", distribution="gamma", params={"a": 3}, convert_to="int"), 50)
    assert all(type(v) is int for v in ints)
    rounded = draw(ScipyColumn(name="x", distribution="gamma", params={"a": 3}, decimals=1), 50)
    assert all(v == round(v, 1) for v in rounded)
    assert len(set(rounded)) > 5


def test_huge_continuous_draws_are_clamped_to_int64_with_convert_to_int() -> None:
    """Draws beyond 2**63 stored as int are clamped into the 64-bit range, not an error."""
    column = ScipyColumn(
        name="x", distribution="uniform", params={"loc": 1e19, "scale": 1e19}, convert_to="int"
    )
    values = draw(column, 10)
    assert all(v < 2**63 for v in values)


def test_mixture_is_zero_with_probability_one_minus_p() -> None:
    """About ``1 - p`` of the values are 0; the others follow the distribution."""
    column = BernoulliMixtureColumn(
        name="spend",
        p=0.3,
        dist=ScipyDistribution(distribution="lognorm", params={"s": 1.0, "scale": 50.0}),
    )
    values = draw(column)
    drawn = [v for v in values if v != 0]
    share = len(drawn) / DRAWS
    assert abs(share - 0.3) < 5 * math.sqrt(0.3 * 0.7 / DRAWS)
    frozen = scipy.stats.lognorm(s=1.0, scale=50.0)
    assert abs(statistics.fmean(drawn) / float(frozen.mean()) - 1) < 0.1


@pytest.mark.parametrize(("p", "zeros"), [(0.0, True), (1.0, False)])
def test_mixture_extremes(p: float, zeros: bool) -> None:
    """``p: 0`` gives only zeros, ``p: 1`` only draws (an exponential draw is never 0)."""
    column = BernoulliMixtureColumn(
        name="m", p=p, dist=ScipyDistribution(distribution="expon", params={"loc": 1.0})
    )
    values = draw(column, 500)
    assert all((v == 0) is zeros for v in values)


def test_mixture_of_a_discrete_distribution_gives_integers() -> None:
    """A mixture over ``poisson`` is an int64 column of whole numbers."""
    column = BernoulliMixtureColumn(
        name="m", p=0.5, dist=ScipyDistribution(distribution="poisson", params={"mu": 4})
    )
    assert str(build(column).outputs["m"]) == "int64"
    assert all(type(v) is int for v in draw(column, 200))


# --------------------------------------------------------------------------- determinism

COLUMNS = [
    {"name": "g", "scipy": {"distribution": "gamma", "params": {"a": 2.0}}},
    {"name": "k", "scipy": {"distribution": "poisson", "params": {"mu": 3.0}}},
    {
        "name": "spend",
        "bernoulli_mixture": {
            "p": 0.3,
            "dist": {"distribution": "lognorm", "params": {"s": 1.0, "scale": 50}},
        },
    },
]


@pytest.mark.parametrize(
    "run",
    [
        {"max_row_groups_in_flight": 1, "max_submitted_tasks": 1},
        {"max_row_groups_in_flight": 8, "max_worker_threads": 1, "scheduling": "column"},
    ],
)
async def test_values_do_not_depend_on_concurrency(
    run: dict[str, Any], autojump_clock: Any
) -> None:
    """The same seed and row groups give the same table whatever the concurrency limits."""
    base = {"seed": 11, "row_group_size": 40}
    reference = await gl.apreview({"columns": COLUMNS, "run": base}, num_records=200)
    other = await gl.apreview({"columns": COLUMNS, "run": base | run}, num_records=200)
    assert other.table.to_pylist() == reference.table.to_pylist()
    assert len(set(reference.table.column("g").to_pylist())) == 200


async def test_seed_changes_the_values(autojump_clock: Any) -> None:
    """Another run seed gives other values."""
    a = await gl.apreview({"columns": COLUMNS, "run": {"seed": 1}}, num_records=20)
    b = await gl.apreview({"columns": COLUMNS, "run": {"seed": 2}}, num_records=20)
    assert a.table.column("g").to_pylist() != b.table.column("g").to_pylist()


@pytest.mark.parametrize(
    "column",
    [
        ScipyColumn(name="x", distribution="gamma", params={"a": 2}),
        BernoulliMixtureColumn(name="x", p=0.5, dist=ScipyDistribution(distribution="norm")),
    ],
)
def test_a_dropped_row_does_not_change_the_others(column: Any) -> None:
    """Values are drawn for every row of the group, so live rows keep their values when
    others were dropped."""
    generator = build(column)
    full = cast(
        list[Any],
        generator.generate(
            BatchContext(row_ids=range(10, 20), columns={}, row_group=1, column="x", seed=3)
        ),
    )
    live = [11, 14, 19]
    some = generator.generate(
        BatchContext(
            row_ids=live,
            group_row_ids=range(10, 20),
            columns={},
            row_group=1,
            column="x",
            seed=3,
        )
    )
    assert some == [full[i - 10] for i in live]


# --------------------------------------------------------------------------- hypothesis

VALID = st.one_of(
    st.builds(
        lambda a, scale: ("gamma", {"a": a, "scale": scale}),
        st.floats(0.05, 50),
        st.floats(0.01, 1e3),
    ),
    st.builds(lambda a, b: ("beta", {"a": a, "b": b}), st.floats(0.1, 20), st.floats(0.1, 20)),
    st.builds(lambda s: ("lognorm", {"s": s}), st.floats(0.01, 3)),
    st.builds(lambda mu: ("poisson", {"mu": mu}), st.floats(0, 1e4)),
    st.builds(lambda n, p: ("binom", {"n": n, "p": p}), st.integers(0, 1000), st.floats(0, 1)),
    st.builds(
        lambda loc, scale: ("norm", {"loc": loc, "scale": scale}),
        st.floats(-1e6, 1e6),
        st.floats(1e-3, 1e3),
    ),
)
INVALID = st.one_of(
    st.builds(lambda a: ("gamma", {"a": a}), st.floats(-1e6, 0)),
    st.builds(lambda b: ("beta", {"a": 1.0, "b": b}), st.floats(-10, 0)),
    st.builds(lambda mu: ("poisson", {"mu": mu}), st.floats(-1e6, -1e-9)),
    st.builds(lambda p: ("binom", {"n": 3, "p": p}), st.floats(1.0001, 1e3)),
    st.builds(lambda scale: ("norm", {"scale": scale}), st.floats(-1e3, 0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=VALID, seed=st.integers(0, 2**32))
def test_valid_distributions_draw_finite_values_in_their_support(
    spec: tuple[str, dict[str, float]], seed: int
) -> None:
    """A valid distribution and parameters build, and every draw is finite and in the support."""
    name, params = spec
    low, high = getattr(scipy.stats, name)(**params).support()
    values = draw(ScipyColumn(name="x", distribution=name, params=params), 50, seed=seed)
    assert all(math.isfinite(v) and low <= v <= high for v in values)


@settings(max_examples=40, deadline=None)
@given(spec=INVALID)
def test_parameters_outside_the_domain_fail_naming_the_field(
    spec: tuple[str, dict[str, float]],
) -> None:
    """Parameters a distribution refuses fail validation on ``scipy.params``."""
    name, params = spec
    error = config_error({"name": "g", "scipy": {"distribution": name, "params": params}})
    assert (error.column, error.field) == ("g", "scipy.params")
    assert name in error.message


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"distribution": "gama"}, "scipy.distribution", "did you mean 'gamma'?"),
        ({"distribution": "no_such_thing"}, "scipy.distribution", "unknown scipy.stats"),
        ({"distribution": "gamma", "params": {"b": 1}}, "scipy.params", "no parameter 'b'"),
        ({"distribution": "gamma", "params": {"scal": 1, "a": 1}}, "scipy.params", "'scale'?"),
        ({"distribution": "beta", "params": {"a": 1}}, "scipy.params", "needs the parameter"),
        ({"distribution": "gamma", "params": {"a": 0}}, "scipy.params", "outside the domain"),
        ({"distribution": "gamma", "params": {"a": True}}, "scipy.params.a", "number"),
        ({"distribution": "gamma", "params": {"a": "x"}}, "scipy.params.a", "number"),
        ({"distribution": "norm", "params": [1]}, "scipy.params", ""),
        ({"distribution": ""}, "scipy.distribution", "distribution name"),
        ({"distribution": "norm", "low": 2, "high": 1}, "scipy.high", "must be >= low"),
        (
            {"distribution": "poisson", "params": {"mu": 1}, "low": 1.2, "high": 1.8},
            "scipy.high",
            "no integer",
        ),
    ],
)
def test_scipy_config_errors(spec: dict[str, Any], field: str, message: str) -> None:
    """A bad distribution, parameter or range fails validation naming column and field."""
    error = config_error({"name": "g", "scipy": spec})
    assert (error.column, error.field) == ("g", field)
    assert message in str(error)


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"p": 1.5, "dist": {"distribution": "norm"}}, "bernoulli_mixture.p", "between 0 and 1"),
        ({"p": -0.1, "dist": {"distribution": "norm"}}, "bernoulli_mixture.p", "between 0 and 1"),
        (
            {"p": 0.5, "dist": {"distribution": "nrm"}},
            "bernoulli_mixture.dist.distribution",
            "did you mean 'norm'?",
        ),
        (
            {"p": 0.5, "dist": {"distribution": "gamma"}},
            "bernoulli_mixture.dist.params",
            "needs the parameter(s) a",
        ),
        ({"p": 0.5}, "bernoulli_mixture.dist", ""),
    ],
)
def test_mixture_config_errors(spec: dict[str, Any], field: str, message: str) -> None:
    """A probability outside [0, 1] or a bad distribution fails naming column and field."""
    error = config_error({"name": "m", "bernoulli_mixture": spec})
    assert (error.column, error.field) == ("m", field)
    assert message in str(error)


def test_missing_scipy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without scipy, a scipy column fails validation saying which extra installs it."""
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    error = config_error({"name": "g", "scipy": {"distribution": "norm"}})
    assert error.field == "scipy.distribution"
    assert "gridloom[scipy]" in str(error)


# --------------------------------------------------------------------------- builder / YAML


def test_builder_methods_build_the_same_columns_as_yaml() -> None:
    """``PipelineBuilder.scipy`` and ``.bernoulli_mixture`` give the columns YAML gives."""
    built = (
        PipelineBuilder()
        .scipy("g", "gamma", {"a": 2.0}, high=10)
        .bernoulli_mixture("m", 0.3, {"distribution": "lognorm", "params": {"s": 1.0}})
        .build()
    )
    loaded = structure_pipeline(
        {
            "columns": [
                {"name": "g", "scipy": {"distribution": "gamma", "params": {"a": 2.0}, "high": 10}},
                {
                    "name": "m",
                    "bernoulli_mixture": {
                        "p": 0.3,
                        "dist": {"distribution": "lognorm", "params": {"s": 1.0}},
                    },
                },
            ]
        }
    )
    assert built.columns == loaded.columns
    assert gl.validate(built).nodes


async def test_columns_reach_the_output_file(tmp_path: Any, autojump_clock: Any) -> None:
    """A run writes both kinds with their natural types (float, int, float)."""
    result = await gl.acreate(
        {"columns": COLUMNS, "run": {"seed": 5}}, num_records=30, output_dir=tmp_path / "out"
    )
    types = {f.name: str(f.type) for f in result.table.schema}
    assert types == {"g": "double", "k": "int64", "spend": "double"}
    assert result.table.num_rows == 30
