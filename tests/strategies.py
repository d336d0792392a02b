"""Shared hypothesis strategies.

Config: :func:`pipelines` draws valid :class:`~gridloom.config.PipelineConfig` objects covering
every column kind, with unique names and valid parameters, that a YAML or JSON file can hold
(custom functions as import paths, string mapping keys, finite floats).

JSON Schemas: :func:`json_schemas` draws satisfiable schemas from the subset the simulated
endpoint answers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, get_args

from hypothesis import strategies as st

from gridloom.config import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    Constraint,
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
#: Any ``str`` at all, lone surrogates well represented (what ``surrogateescape`` makes of a
#: non-UTF-8 file name, or a ``"\\ud800"`` escape in a JSON file, decodes to).
any_texts = st.text(
    st.characters(exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    max_size=24,
)
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
        conditional = draw(
            st.none()
            | st.dictionaries(
                identifiers.map(lambda other: f"{other} == 1"),
                st.fixed_dictionaries({"values": st.lists(scalars, min_size=1, max_size=3)}),
                min_size=1,
                max_size=2,
            )
        )
        column: ColumnConfig = CategoryColumn(
            **draw(st.fixed_dictionaries(_common(name))),
            values=values,
            weights=weights,
            conditional_params=conditional,
        )
        return column

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
    replacement=st.booleans(),
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
        constraints=draw(st.lists(constraints(names), max_size=2)),
    )


def constraints(names: list[str]) -> st.SearchStrategy[Constraint]:
    """A constraint between two of ``names`` (when there are two) or against a constant."""
    constant = st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["2024-01-31", "2024-01-31T12:00:00"]),
    )
    column = st.sampled_from(names)
    against = st.builds(
        Constraint,
        column=column,
        op=st.sampled_from(["<", "<=", ">", ">="]),
        value=constant,
        max_attempts=st.integers(1, 1000),
    )
    if len(names) < 2:
        return against
    pair = st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True)
    between = pair.flatmap(
        lambda p: st.builds(
            Constraint, column=st.just(p[0]), op=st.sampled_from(["<", ">="]), other=st.just(p[1])
        )
    )
    return against | between


# --------------------------------------------------------------------------- JSON Schemas
# The subset the simulated endpoint can answer (gridloom.simulated._schema_values); every
# schema drawn here is satisfiable.

_integer_bounds = st.integers(-1000, 1000)


@st.composite
def _integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(_integer_bounds)
    width = draw(st.integers(0, 500))
    style = draw(st.sampled_from(["none", "inclusive", "exclusive", "low", "high", "multiple"]))
    if style == "inclusive":
        schema |= {"minimum": low, "maximum": low + width}
    elif style == "exclusive":
        schema |= {"exclusiveMinimum": low, "exclusiveMaximum": low + width + 2}
    elif style == "low":
        schema["minimum"] = low
    elif style == "high":
        schema["exclusiveMaximum"] = low
    elif style == "multiple":
        step = draw(st.integers(1, 10))
        schema |= {"minimum": low, "maximum": low + width + step, "multipleOf": step}
    return schema


@st.composite
def _number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    low = draw(st.floats(-1e6, 1e6))
    width = draw(st.floats(1e-3, 1e4))
    style = draw(st.sampled_from(["none", "inclusive", "exclusive", "low", "high"]))
    if style == "inclusive":
        schema |= {"minimum": low, "maximum": low + width}
    elif style == "exclusive":
        schema |= {"exclusiveMinimum": low, "exclusiveMaximum": low + width}
    elif style == "low":
        schema["exclusiveMinimum"] = low
    elif style == "high":
        schema["maximum"] = low
    return schema


@st.composite
def _string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    style = draw(st.sampled_from(["none", "lengths", "format", "enum"]))
    if style == "lengths":
        low = draw(st.integers(0, 30))
        if draw(st.booleans()):
            schema["minLength"] = low
        if draw(st.booleans()):
            schema["maxLength"] = low + draw(st.integers(0, 30))
    elif style == "format":
        formats = ["date", "date-time", "time", "email", "uri", "uuid", "hostname", "ipv4"]
        schema["format"] = draw(st.sampled_from(formats))
    elif style == "enum":
        schema["enum"] = draw(st.lists(texts, min_size=1, max_size=4, unique=True))
    return schema


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), texts)
#: Leaf schemas by the JSON type of the values they accept (disjoint types, for ``oneOf``).
_typed_leaf_schemas: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "string": _string_schemas(),
    "integer": _integer_schemas(),
    "boolean": st.just({"type": "boolean"}),
    "null": st.just({"type": "null"}),
}
_leaf_schemas = st.one_of(
    *_typed_leaf_schemas.values(),
    _number_schemas(),
    st.builds(lambda value: {"const": value}, _json_scalars),
    st.builds(
        lambda values: {"enum": values},
        st.lists(_json_scalars, min_size=1, max_size=4, unique_by=lambda v: (type(v), v)),
    ),
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        return {**schema, "type": [kind, "null"]}
    return schema


@st.composite
def _object_schemas(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    properties = draw(st.dictionaries(identifiers, children, max_size=4))
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties:
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


@st.composite
def _array_schemas(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": draw(children)}
    low = draw(st.integers(0, 3))
    if draw(st.booleans()):
        schema["minItems"] = low
    if draw(st.booleans()):
        schema["maxItems"] = low + draw(st.integers(0, 3))
    return schema


_one_of_schemas = (
    st.lists(st.sampled_from(sorted(_typed_leaf_schemas)), min_size=1, max_size=3, unique=True)
    .flatmap(lambda kinds: st.tuples(*(_typed_leaf_schemas[k] for k in kinds)))
    .map(lambda branches: {"oneOf": list(branches)})
)


def _schema_trees(extra_leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaf_schemas | extra_leaves | _one_of_schemas,
        lambda children: st.one_of(
            _object_schemas(children),
            _array_schemas(children),
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"anyOf": xs}),
            children.map(_nullable),
        ),
        max_leaves=8,
    )


@st.composite
def json_schemas(draw: st.DrawFn) -> dict[str, Any]:
    """A satisfiable JSON Schema from the subset the simulated endpoint supports, sometimes with
    ``$defs`` that the body refers to with ``$ref``."""
    defs = draw(st.dictionaries(identifiers, _schema_trees(st.nothing()), max_size=2))
    refs = st.sampled_from([{"$ref": f"#/$defs/{name}"} for name in sorted(defs)])
    body: dict[str, Any] = draw(_schema_trees(refs if defs else st.nothing()))
    # A copy: the leaves are shared objects of sampled_from, which a test that edits the
    # schema it drew would otherwise change for every later draw of every test.
    return copy.deepcopy({**body, "$defs": defs} if defs else body)


# --------------------------------------------------------------------------- fields of schemas

#: Names a template can read with a dot: not a Jinja keyword, not a method Jinja would find
#: on a dict first (``items``, ``keys``, ...).
_JINJA_WORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "for", "recursive"}
)
field_names = identifiers.filter(lambda name: name not in _JINJA_WORDS and name not in dir(dict))


def _closed_object(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object schema with at least one property that lets no other field in (saying
    ``additionalProperties: false``, or not mentioning it)."""
    return st.builds(
        lambda properties, explicit: {
            "type": "object",
            "properties": properties,
            **({"additionalProperties": False} if explicit else {}),
        },
        st.dictionaries(field_names, children, min_size=1, max_size=4),
        st.booleans(),
    )


#: Object schemas whose objects (nested, or inside arrays) are all closed.
closed_object_schemas = st.recursive(
    st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]),
    lambda children: st.one_of(
        _closed_object(children),
        st.builds(lambda items: {"type": "array", "items": items}, children),
    ),
    max_leaves=10,
).flatmap(
    lambda schema: (
        st.just(schema) if schema.get("type") == "object" else _closed_object(st.just(schema))
    )
)


@st.composite
def schema_paths(draw: st.DrawFn, schema: dict[str, Any]) -> list[str | int]:
    """A path that exists in ``schema``: property names through objects, indices through
    arrays; it may stop anywhere."""
    path: list[str | int] = []
    node = schema
    while node.get("type") in ("object", "array") and (not path or draw(st.booleans())):
        if node["type"] == "object":
            name = draw(st.sampled_from(sorted(node["properties"])))
            path.append(name)
            node = node["properties"][name]
        else:
            path.append(draw(st.integers(0, 3)))
            node = node["items"]
    return path


@st.composite
def jinja_reads(draw: st.DrawFn, root: str, path: list[str | int]) -> str:
    """A Jinja expression reading ``path`` from ``root``, each step spelt one of the ways
    Jinja allows: ``.name`` or ``["name"]``; ``[0]`` or ``.0``."""
    text = root
    for step in path:
        if isinstance(step, int):
            text += draw(st.sampled_from([f"[{step}]", f".{step}"]))
        else:
            text += draw(st.sampled_from([f".{step}", f'["{step}"]', f"['{step}']"]))
    return text
