"""Shared hypothesis strategies.

Config: :func:`pipelines` draws valid :class:`~gridloom.config.PipelineConfig` objects covering
every column kind, with unique names and valid parameters, that a YAML or JSON file can hold
(custom functions as import paths, string mapping keys, finite floats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from hypothesis import strategies as st

from gridloom.config import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    CustomColumn,
    DatetimeColumn,
    DType,
    ExpressionColumn,
    GaussianColumn,
    ModelConfig,
    PipelineConfig,
    PoissonColumn,
    ProviderConfig,
    RunConfig,
    SeedDatasetConfig,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)

# --------------------------------------------------------------------------- building blocks

#: Identifiers: column names, provider names, model aliases.
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
#: Free text, any Unicode a UTF-8 file can hold.
texts = st.text(st.characters(codec="utf-8"), max_size=16)
#: Finite floats of a size no sampler would choke on.
finite_floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
#: Scalars a YAML or JSON file can hold.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), finite_floats, texts)
#: Nested JSON-like values (free-form ``params`` and ``extra_body`` contents).
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=6,
)
convert_tos = st.none() | st.sampled_from(["int", "float", "string"])
decimals = st.none() | st.integers(0, 6)
time_units = st.sampled_from(["days", "hours", "minutes", "seconds"])
dtypes = st.sampled_from(get_args(DType))
probabilities = st.floats(min_value=0.0, max_value=1.0)
positive_floats = st.floats(min_value=1e-6, max_value=1e6)

# --------------------------------------------------------------------------- columns


def _common(name: str) -> dict[str, Any]:
    return {
        "name": st.just(name),
        "depends_on": st.lists(identifiers, max_size=2),
        "drop": st.booleans(),
    }


def _category(name: str) -> st.SearchStrategy[ColumnConfig]:
    @st.composite
    def build(draw: st.DrawFn) -> ColumnConfig:
        values = draw(st.lists(scalars, min_size=1, max_size=5))
        weights = draw(
            st.none()
            | st.lists(
                st.floats(min_value=0.0, max_value=100.0),
                min_size=len(values),
                max_size=len(values),
            ).filter(lambda ws: sum(ws) > 0)
        )
        return CategoryColumn(
            **draw(st.fixed_dictionaries(_common(name))), values=values, weights=weights
        )

    return build()


def _subcategory(name: str) -> st.SearchStrategy[ColumnConfig]:
    return st.builds(
        SubcategoryColumn,
        **_common(name),
        parent=identifiers,
        values=st.dictionaries(
            texts, st.lists(scalars, min_size=1, max_size=3), min_size=1, max_size=3
        ),
    )


def _uniform(name: str) -> st.SearchStrategy[ColumnConfig]:
    return st.tuples(finite_floats, st.floats(min_value=0.0, max_value=1e6)).flatmap(
        lambda lw: st.builds(
            UniformColumn,
            **_common(name),
            low=st.just(lw[0]),
            high=st.just(lw[0] + lw[1]),
            convert_to=convert_tos,
            decimals=decimals,
        )
    )


def _datetime(name: str) -> st.SearchStrategy[ColumnConfig]:
    bounds = st.lists(st.datetimes(), min_size=2, max_size=2).map(sorted)
    return bounds.flatmap(
        lambda se: st.builds(
            DatetimeColumn,
            **_common(name),
            start=st.just(se[0]),
            end=st.just(se[1]),
            unit=time_units,
            format=st.none() | st.sampled_from(["%Y-%m-%d", "%H:%M"]),
        )
    )


def _timedelta(name: str) -> st.SearchStrategy[ColumnConfig]:
    return st.tuples(st.integers(-1000, 1000), st.integers(0, 1000)).flatmap(
        lambda mw: st.builds(
            TimedeltaColumn,
            **_common(name),
            min=st.just(mw[0]),
            max=st.just(mw[0] + mw[1]),
            unit=time_units,
            reference=st.none() | identifiers,
        )
    )


_COLUMN_FACTORIES: tuple[Callable[[str], st.SearchStrategy[ColumnConfig]], ...] = (
    _category,
    _subcategory,
    _uniform,
    lambda name: st.builds(
        GaussianColumn,
        **_common(name),
        mean=finite_floats,
        stddev=positive_floats,
        convert_to=convert_tos,
        decimals=decimals,
    ),
    lambda name: st.builds(
        PoissonColumn, **_common(name), mean=positive_floats, convert_to=convert_tos
    ),
    lambda name: st.builds(
        BernoulliColumn, **_common(name), p=probabilities, convert_to=convert_tos
    ),
    lambda name: st.builds(
        BinomialColumn,
        **_common(name),
        n=st.integers(0, 1000),
        p=probabilities,
        convert_to=convert_tos,
    ),
    lambda name: st.builds(
        UUIDColumn, **_common(name), prefix=texts, short=st.booleans(), uppercase=st.booleans()
    ),
    _datetime,
    _timedelta,
    lambda name: st.builds(ExpressionColumn, **_common(name), template=texts, dtype=dtypes),
    lambda name: st.builds(
        CustomColumn,
        **_common(name),
        function=st.sampled_from(["json:dumps", "math:sqrt", "builtins:len"]),
        mode=st.sampled_from(["cell", "batch"]),
        dtype=dtypes,
        params=st.dictionaries(texts, json_values, max_size=3),
    ),
)


def columns(name: str) -> st.SearchStrategy[ColumnConfig]:
    """A valid column of any kind called ``name``."""
    return st.one_of(*(factory(name) for factory in _COLUMN_FACTORIES))


# --------------------------------------------------------------------------- pipeline parts


def providers(name: str) -> st.SearchStrategy[ProviderConfig]:
    """A valid provider called ``name``: simulated, or OpenAI/Anthropic with an endpoint."""
    extras: dict[str, Any] = {
        "api_key_env": st.none() | identifiers.map(str.upper),
        "headers": st.dictionaries(texts, texts, max_size=2),
        "extra_body": st.dictionaries(texts, json_values, max_size=2),
    }
    return st.builds(
        ProviderConfig, name=st.just(name), type=st.just("simulated"), **extras
    ) | st.builds(
        ProviderConfig,
        name=st.just(name),
        type=st.sampled_from(["openai", "anthropic"]),
        endpoint=st.just("http://127.0.0.1:8000/v1"),
        **extras,
    )


def models(alias: str, provider_names: list[str]) -> st.SearchStrategy[ModelConfig]:
    """A valid model called ``alias`` on one of ``provider_names``."""
    return st.builds(
        ModelConfig,
        alias=st.just(alias),
        provider=st.sampled_from(provider_names),
        model=texts,
        max_parallel_requests=st.integers(1, 512),
        temperature=st.none() | st.floats(0.0, 2.0),
        top_p=st.none() | probabilities,
        max_tokens=st.none() | st.integers(1, 100_000),
        timeout=positive_floats,
    )


seed_datasets = st.builds(
    SeedDatasetConfig,
    path=st.sampled_from(["people.csv", "data/*.parquet", "/abs/rows.jsonl"]),
    format=st.sampled_from(["auto", "parquet", "csv", "jsonl"]),
    order=st.sampled_from(["ordered", "shuffled"]),
    cycle=st.booleans(),
    columns=st.lists(identifiers, max_size=3),
)

run_configs = st.builds(
    RunConfig,
    row_group_size=st.integers(1, 100_000),
    max_row_groups_in_flight=st.integers(1, 64),
    max_submitted_tasks=st.integers(1, 4096),
    max_llm_wait_tasks=st.integers(1, 4096),
    max_worker_threads=st.integers(1, 64),
    seed=st.none() | st.integers(0, 2**63 - 1),
    scheduling=st.sampled_from(["cell", "column"]),
)


@st.composite
def pipelines(draw: st.DrawFn, max_columns: int = 6) -> PipelineConfig:
    """A valid pipeline of up to ``max_columns`` columns of any kinds (names unique)."""
    names = draw(st.lists(identifiers, min_size=1, max_size=max_columns, unique=True))
    cols = [draw(columns(name)) for name in names]
    provider_names = draw(st.lists(identifiers, max_size=2, unique=True))
    provs = [draw(providers(name)) for name in provider_names]
    mods = []
    if provider_names:
        aliases = draw(st.lists(identifiers, max_size=3, unique=True))
        mods = [draw(models(alias, provider_names)) for alias in aliases]
    return PipelineConfig(
        columns=cols,
        providers=provs,
        models=mods,
        seed_dataset=draw(st.none() | seed_datasets),
        run=draw(run_configs),
    )
