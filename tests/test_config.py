"""Config: loading every column kind, defaults, dumping, hashing, the builder, round trips."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings

import gridloom.config as gc
from gridloom.config import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    CustomColumn,
    DatetimeColumn,
    EmbeddingColumn,
    ExpressionColumn,
    GaussianColumn,
    LLMCodeColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    PipelineBuilder,
    PipelineConfig,
    PoissonColumn,
    Rubric,
    RunConfig,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
    config_hash,
    dump_config,
    load_config,
    load_config_with_base,
    structure_pipeline,
    unstructure_pipeline,
)
from gridloom.config._distribution import ScipyDistribution
from gridloom.config._tools import PythonTool, SearchTool
from gridloom.errors import ConfigError
from gridloom.kinds import installed
from gridloom.kinds.bernoulli_mixture import BernoulliMixtureColumn
from gridloom.kinds.llm_agent import LLMAgentColumn
from gridloom.kinds.person import PersonColumn
from gridloom.kinds.scipy_dist import ScipyColumn
from gridloom.kinds.validate import ValidateColumn
from gridloom.kinds.validate.regex import RegexCheck

from .strategies import pipelines

EXAMPLE_YAML = """\
seed_dataset: {path: people.csv, order: shuffled}
columns:
  - {name: topic, category: {values: [rivers, volcanoes, deserts], weights: [2, 1, 1]}}
  - name: region
    subcategory:
      parent: topic
      values: {rivers: [Nile, Amazon], volcanoes: [Etna], deserts: [Gobi]}
  - {name: age, uniform: {low: 18, high: 90, convert_to: int}}
  - {name: title, expression: {template: "{{ topic }} of {{ region }}"}}
  - {name: score, custom: {function: "json:dumps", mode: cell, dtype: float}, depends_on: [title]}
providers:
  - {name: sim, type: simulated}
models:
  - {alias: writer, provider: sim, model: writer-8b, max_parallel_requests: 32, temperature: 0.8}
run: {row_group_size: 500, max_row_groups_in_flight: 4, seed: 7}
"""

#: One column of each kind as written in a file, and the object it must load to.
KIND_CASES: list[tuple[dict[str, Any], Any]] = [
    (
        {"name": "c", "category": {"values": ["a", "b"], "weights": [1, 3]}},
        CategoryColumn(name="c", values=("a", "b"), weights=(1.0, 3.0)),
    ),
    (
        {"name": "s", "subcategory": {"parent": "c", "values": {"a": ["x"], "b": ["y", "z"]}}},
        SubcategoryColumn(name="s", parent="c", values={"a": ("x",), "b": ("y", "z")}),
    ),
    (
        {"name": "u", "uniform": {"low": 1, "high": 2.5, "convert_to": "float", "decimals": 1}},
        UniformColumn(name="u", low=1.0, high=2.5, convert_to="float", decimals=1),
    ),
    (
        {"name": "g", "gaussian": {"mean": 10, "stddev": 2}},
        GaussianColumn(name="g", mean=10.0, stddev=2.0),
    ),
    ({"name": "p", "poisson": {"mean": 3}}, PoissonColumn(name="p", mean=3.0)),
    (
        {"name": "b", "bernoulli": {"p": 0.25, "convert_to": "string"}},
        BernoulliColumn(name="b", p=0.25, convert_to="string"),
    ),
    (
        {"name": "n", "binomial": {"n": 10, "p": 0.5}, "drop": True},
        BinomialColumn(name="n", n=10, p=0.5, drop=True),
    ),
    (
        {"name": "id", "uuid": {"prefix": "row-", "short": True}},
        UUIDColumn(name="id", prefix="row-", short=True),
    ),
    (
        {
            "name": "when",
            "datetime": {"start": "2024-01-01T00:00:00", "end": "2024-03-01T12:30:00+00:00"}
            | {"unit": "hours"},
        },
        None,  # naive/aware mix is refused; replaced below by a valid pair
    ),
    (
        {"name": "later", "timedelta": {"min": 1, "max": 30, "reference": "when"}},
        TimedeltaColumn(name="later", min=1, max=30, reference="when"),
    ),
    (
        {"name": "t", "expression": {"template": "{{ c }}!", "dtype": "string"}},
        ExpressionColumn(name="t", template="{{ c }}!"),
    ),
    (
        {
            "name": "f",
            "custom": {"function": "json:dumps", "mode": "batch", "params": {"k": [1, 2]}},
            "depends_on": ["t"],
        },
        CustomColumn(
            name="f", function="json:dumps", mode="batch", params={"k": [1, 2]}, depends_on=("t",)
        ),
    ),
]
KIND_CASES += [
    (
        {
            "name": "s",
            "llm_text": {"model": "w", "prompt": "About {{ c }}", "with_reasoning": True},
        },
        LLMTextColumn(name="s", model="w", prompt="About {{ c }}", with_reasoning=True),
    ),
    (
        {"name": "k", "llm_code": {"model": "w", "prompt": "Sort a list", "language": "rust"}},
        LLMCodeColumn(name="k", model="w", prompt="Sort a list", language="rust"),
    ),
    (
        {
            "name": "j",
            "llm_structured": {
                "model": "w",
                "prompt": "Facts",
                "schema": {"type": "object"},
                "max_correction_attempts": 1,
            },
        },
        LLMStructuredColumn(
            name="j",
            model="w",
            prompt="Facts",
            schema={"type": "object"},
            max_correction_attempts=1,
        ),
    ),
    (
        {
            "name": "q",
            "llm_judge": {
                "model": "w",
                "prompt": "{{ s }}",
                "rubrics": [{"name": "acc", "scores": {"1": "bad", "5": "good"}}],
            },
        },
        LLMJudgeColumn(
            name="q",
            model="w",
            prompt="{{ s }}",
            rubrics=(Rubric(name="acc", scores={1: "bad", 5: "good"}),),
        ),
    ),
    (
        {"name": "v", "embedding": {"model": "w", "input": "{{ s }}"}},
        EmbeddingColumn(name="v", model="w", input="{{ s }}"),
    ),
    (
        {"name": "ok", "validate": {"kind": "regex", "target": "s", "pattern": "a+"}},
        ValidateColumn(name="ok", target="s", check=RegexCheck(pattern="a+")),
    ),
]
KIND_CASES[8] = (
    {"name": "when", "datetime": {"start": "2024-01-01", "end": "2024-03-01T12:30:00"}},
    DatetimeColumn(name="when", start=dt.datetime(2024, 1, 1), end=dt.datetime(2024, 3, 1, 12, 30)),
)
KIND_CASES.append(
    (
        {"name": "who", "person": {"locale": {"en_US": 3, "de_DE": 1}, "age_range": [20, 60]}},
        PersonColumn(name="who", locale={"en_US": 3, "de_DE": 1}, age_range=(20, 60)),
    )
)
KIND_CASES += [
    (
        {"name": "g", "scipy": {"distribution": "gamma", "params": {"a": 2.0}, "high": 9}},
        ScipyColumn(name="g", distribution="gamma", params={"a": 2.0}, high=9),
    ),
    (
        {"name": "m", "bernoulli_mixture": {"p": 0.3, "dist": {"distribution": "expon"}}},
        BernoulliMixtureColumn(name="m", p=0.3, dist=ScipyDistribution(distribution="expon")),
    ),
    (
        {
            "name": "ag",
            "llm_agent": {
                "model": "w",
                "prompt": "Go",
                "tools": [{"python": "json:dumps"}, {"search": {"seed": "c.jsonl", "field": "t"}}],
                "max_turns": 3,
            },
        },
        LLMAgentColumn(
            name="ag",
            model="w",
            prompt="Go",
            tools=(PythonTool(function="json:dumps"), SearchTool(seed="c.jsonl", field="t")),
            max_turns=3,
        ),
    ),
]


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(doc), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
@pytest.mark.parametrize(
    ("column", "expected"),
    KIND_CASES,
    ids=[next(iter(set(c) - {"name", "depends_on", "drop"})) for c, _ in KIND_CASES],
)
def test_every_kind_loads_from_yaml_and_json(
    tmp_path: Path, suffix: str, column: dict[str, Any], expected: Any
) -> None:
    """Each column kind loads from a YAML or JSON file to the expected column object."""
    models = {
        "providers": [{"name": "sim", "type": "simulated"}],
        "models": [{"alias": "w", "provider": "sim", "model": "m"}],
    }
    path = _write(tmp_path, "pipeline" + suffix, {"columns": [column], **models})
    assert load_config(path).columns == (expected,)


def test_kind_cases_cover_every_kind() -> None:
    """The per-kind loading cases cover every built-in column kind (plugins' kinds have
    their own tests: test_kinds.py, test_plugin_example.py)."""
    kinds = {type(expected).kind for _, expected in KIND_CASES}
    assert kinds == {info.name for info in installed() if info.builtin}


def test_example_pipeline_loads() -> None:
    """The documented example loads with every section in place."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    assert [c.name for c in cfg.columns] == ["topic", "region", "age", "title", "score"]
    assert cfg.seed_dataset is not None
    assert cfg.seed_dataset.order == "shuffled"
    assert cfg.models[0].max_parallel_requests == 32
    assert cfg.run == RunConfig(row_group_size=500, max_row_groups_in_flight=4, seed=7)


def test_expression_shorthand() -> None:
    """``expression: "template"`` is the template, and dumps back in mapping form."""
    cfg = structure_pipeline({"columns": [{"name": "t", "expression": "Hi {{ x }}"}]})
    assert cfg.columns == (ExpressionColumn(name="t", template="Hi {{ x }}"),)
    dumped = unstructure_pipeline(cfg)["columns"][0]
    assert dumped["expression"] == {"template": "Hi {{ x }}", "dtype": "string"}


def test_defaults_fill_missing_fields() -> None:
    """Omitted fields take their defaults; ``uuid: {}`` and ``gaussian: null`` are allowed."""
    cfg = structure_pipeline(
        {"columns": [{"name": "id", "uuid": {}}, {"name": "g", "gaussian": None}]}
    )
    assert cfg.columns == (UUIDColumn(name="id"), GaussianColumn(name="g"))
    assert cfg.columns[0].depends_on == ()
    assert cfg.columns[0].drop is False
    assert cfg.run == RunConfig()
    assert cfg.providers == ()
    assert cfg.models == ()
    assert cfg.seed_dataset is None


def test_yaml_dates_and_iso_strings_load_as_datetimes() -> None:
    """An unquoted YAML date, a YAML timestamp and an ISO string all load as datetimes."""
    doc = yaml.safe_load(
        "columns: [{name: d, datetime: {start: 2024-01-01, end: '2024-01-02T03:04:05'}}]"
    )
    (col,) = structure_pipeline(doc).columns
    assert isinstance(col, DatetimeColumn)
    assert col.start == dt.datetime(2024, 1, 1)
    assert col.end == dt.datetime(2024, 1, 2, 3, 4, 5)


def test_column_objects_are_accepted_in_a_mapping() -> None:
    """A mapping may hold ready-made column objects next to plain column mappings."""
    col = UUIDColumn(name="id")
    cfg = structure_pipeline({"columns": [col, {"name": "x", "expression": "{{ id }}"}]})
    assert cfg.columns[0] is col


def test_load_config_with_base_returns_the_file_folder(tmp_path: Path) -> None:
    """Relative paths stay as written; the base folder is the config file's folder."""
    sub = tmp_path / "conf"
    sub.mkdir()
    path = _write(sub, "p.yaml", {"seed_dataset": {"path": "rows.csv"}, "columns": []})
    cfg, base = load_config_with_base(path)
    assert cfg.seed_dataset is not None
    assert cfg.seed_dataset.path == "rows.csv"
    assert base == sub.resolve()


def test_load_config_with_base_of_a_mapping_is_the_cwd() -> None:
    """For an already parsed mapping, relative paths resolve against the working directory."""
    _, base = load_config_with_base({"columns": [{"name": "id", "uuid": {}}]})
    assert base == Path.cwd()


def test_load_config_accepts_str_paths(tmp_path: Path) -> None:
    """A path given as a plain string loads like a Path."""
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE_YAML, encoding="utf-8")
    assert load_config(str(path)) == load_config(path)


# --------------------------------------------------------------------------- dumping


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_example_round_trips_through_text(fmt: str) -> None:
    """load → dump → load gives an equal pipeline, in YAML and in JSON."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    text = dump_config(cfg, format=fmt)  # type: ignore[arg-type]
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert structure_pipeline(data) == cfg


def test_dump_is_plain_data_in_canonical_shape() -> None:
    """The dump holds only plain types: lists not tuples, ISO strings for datetimes."""
    cfg = (
        PipelineBuilder()
        .category("c", ("a", "b"))
        .datetime("d", dt.datetime(2024, 1, 1), "2024-02-01")
        .build()
    )
    data = unstructure_pipeline(cfg)
    assert list(data) == ["columns", "run"]
    assert data["columns"][0] == {
        "name": "c",
        "category": {"values": ["a", "b"], "weights": None},
        "depends_on": [],
        "drop": False,
    }
    assert data["columns"][1]["datetime"]["start"] == "2024-01-01T00:00:00"


def test_dump_writes_the_file_atomically(tmp_path: Path) -> None:
    """A dump to a path writes the returned text and leaves no temporary file behind."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    target = tmp_path / "out.yaml"
    target.write_text("old", encoding="utf-8")
    text = dump_config(cfg, target)
    assert target.read_text(encoding="utf-8") == text
    assert os.listdir(tmp_path) == ["out.yaml"]
    assert load_config(target) == cfg


def test_dump_format_follows_the_suffix(tmp_path: Path) -> None:
    """Without ``format``, a ``.json`` path gets JSON and anything else YAML."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    json_text = dump_config(cfg, tmp_path / "p.json")
    assert json.loads(json_text) == unstructure_pipeline(cfg)
    assert load_config(tmp_path / "p.json") == cfg
    assert dump_config(cfg) == dump_config(cfg, format="yaml")


def test_importable_callable_dumps_as_import_path() -> None:
    """A module-level function is written as ``module:qualname`` and loads back by path."""
    cfg = PipelineBuilder().custom("f", json.dumps).build()
    data = unstructure_pipeline(cfg)
    assert data["columns"][0]["custom"]["function"] == "json:dumps"
    assert structure_pipeline(data).columns[0] == CustomColumn(name="f", function="json:dumps")


def test_lambda_cannot_be_dumped() -> None:
    """A lambda as custom function fails the dump with an error naming the column."""
    cfg = PipelineBuilder().custom("f", lambda row, ctx: 1).build()
    with pytest.raises(ConfigError, match="lambda or local function") as info:
        dump_config(cfg)
    assert (info.value.column, info.value.field) == ("f", "custom.function")


def test_lambda_is_written_by_name_when_not_strict() -> None:
    """``strict=False`` writes a lambda by its name instead of failing."""
    cfg = PipelineBuilder().custom("f", lambda row, ctx: 1).build()
    data = yaml.safe_load(dump_config(cfg, strict=False))
    assert data["columns"][0]["custom"]["function"].endswith(".<lambda>")


def test_non_finite_float_cannot_be_dumped() -> None:
    """An infinite parameter in a free-form field (typed fields refuse it when built) fails the
    dump, naming the column and field."""
    cfg = PipelineBuilder().custom("f", "json:dumps", params={"x": float("inf")}).build()
    with pytest.raises(ConfigError) as info:
        unstructure_pipeline(cfg)
    assert (info.value.column, info.value.field) == ("f", "custom.params.x")


def test_json_dump_refuses_non_string_keys() -> None:
    """Integer mapping keys (fine in YAML) are refused by a JSON dump."""
    cfg = PipelineBuilder().subcategory("s", "p", {1: ["a"]}).build()
    assert structure_pipeline(yaml.safe_load(dump_config(cfg))) == cfg
    with pytest.raises(ConfigError, match="non-string mapping key"):
        dump_config(cfg, format="json")


# --------------------------------------------------------------------------- hashing


def test_config_hash_is_sha256_hex_and_sensitive() -> None:
    """The hash is 64 hex digits and changes when any field changes."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    digest = config_hash(cfg)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    other = PipelineConfig(
        columns=cfg.columns,
        providers=cfg.providers,
        models=cfg.models,
        seed_dataset=cfg.seed_dataset,
        run=RunConfig(seed=8),
    )
    assert config_hash(other) != digest


def test_config_hash_ignores_how_numbers_were_written() -> None:
    """``weights=[2, 1]`` from Python and ``[2.0, 1.0]`` from a file hash the same."""
    built = PipelineBuilder().category("c", ["a", "b"], weights=[2, 1]).build()
    loaded = structure_pipeline(
        {"columns": [{"name": "c", "category": {"values": ["a", "b"], "weights": [2.0, 1.0]}}]}
    )
    assert built == loaded
    assert config_hash(built) == config_hash(loaded)


def test_config_hash_accepts_lambdas() -> None:
    """A pipeline with a lambda still has a hash (a run records one)."""
    cfg = PipelineBuilder().custom("f", lambda row, ctx: 1).build()
    assert len(config_hash(cfg)) == 64


def test_config_hash_is_stable_across_processes(tmp_path: Path) -> None:
    """Another interpreter (with another hash seed) computes the same hash."""
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE_YAML, encoding="utf-8")
    script = (
        "import sys; from gridloom.config import *; print(config_hash(load_config(sys.argv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip() == config_hash(load_config(path))


# --------------------------------------------------------------------------- builder


def _my_score(row: Any, ctx: Any) -> float:
    return 1.0


def test_builder_builds_the_documented_example() -> None:
    """The builder chain from the docs gives the same pipeline as plain constructors."""
    cfg = (
        PipelineBuilder(seed=7)
        .category("topic", ["rivers", "volcanoes"], weights=[2, 1])
        .uniform("age", 18, 90, convert_to="int")
        .expression("title", "{{ topic }} ({{ age }})")
        .custom("score", _my_score, depends_on=["title"], dtype="float")
        .run(row_group_size=100)
        .build()
    )
    assert cfg == PipelineConfig(
        columns=[
            CategoryColumn(name="topic", values=("rivers", "volcanoes"), weights=(2, 1)),
            UniformColumn(name="age", low=18, high=90, convert_to="int"),
            ExpressionColumn(name="title", template="{{ topic }} ({{ age }})"),
            CustomColumn(name="score", function=_my_score, depends_on=("title",), dtype="float"),
        ],
        run=RunConfig(row_group_size=100, seed=7),
    )
    loaded = structure_pipeline(unstructure_pipeline(cfg))
    assert loaded.columns[3] == CustomColumn(
        name="score", function=f"{__name__}:_my_score", depends_on=("title",), dtype="float"
    )


def test_builder_has_a_method_per_kind() -> None:
    """Every column kind has a builder method, and all of them build one pipeline."""
    cfg = (
        PipelineBuilder()
        .category("c", ["a"])
        .subcategory("s", "c", {"a": ["x"]})
        .uniform("u", 0, 1)
        .gaussian("g")
        .poisson("p", 2)
        .bernoulli("b", 0.5)
        .binomial("n", 3, 0.5)
        .scipy("sp", "gamma", {"a": 2.0})
        .bernoulli_mixture("bm", 0.5, {"distribution": "norm"})
        .uuid("id", short=True)
        .person("who", locale="de_DE", sex="female")
        .datetime("d", "2024-01-01", "2024-12-31")
        .timedelta("t", 0, 5, reference="d")
        .expression("e", "{{ c }}")
        .custom("f", "json:dumps")
        .llm_text("lt", "w", "About {{ c }}")
        .llm_code("lc", "w", "Code", language="go")
        .llm_structured("ls", "w", "Facts", {"type": "object"})
        .llm_judge("lj", "w", "{{ lt }}", [{"name": "a", "scores": {1: "x"}}])
        .llm_agent("la", "w", "{{ lt }}", tools=[{"mcp": {"command": ["srv"]}}], max_turns=2)
        .embedding("le", "w", "{{ lt }}")
        .validate("va", "lt", RegexCheck(pattern=".+"))
        .column(UUIDColumn(name="id2"))
        .provider("sim", type="simulated")
        .model("w", provider="sim", model="m")
        .seed_dataset("rows.csv", order="shuffled")
        .build()
    )
    assert {type(c).kind for c in cfg.columns} == {i.name for i in installed() if i.builtin}
    assert hasattr(PipelineBuilder, "datetime")
    assert cfg.models[0].provider == "sim"
    assert structure_pipeline(unstructure_pipeline(cfg)) == cfg


def test_builder_run_calls_merge() -> None:
    """Successive ``.run()`` calls override field by field."""
    cfg = PipelineBuilder(seed=1).uuid("id").run(row_group_size=10).run(seed=2).build()
    assert cfg.run == RunConfig(row_group_size=10, seed=2)


@pytest.mark.parametrize(
    ("build", "column", "field"),
    [
        (lambda b: b.category("c", ["a", "b"], weights=[1]), "c", "category.weights"),
        (lambda b: b.uniform("u", 5, 1), "u", "uniform.high"),
        (lambda b: b.bernoulli("b", 1.5), "b", "bernoulli.p"),
        (lambda b: b.datetime("d", "not a date", "2024-01-01"), "d", "datetime.start"),
        (lambda b: b.custom("f", "no_colon"), "f", "custom.function"),
        (lambda b: b.uuid(""), "", "name"),
        (lambda b: b.run(row_group_size=0), None, "run.row_group_size"),
        (lambda b: b.run(rowgroup=3), None, "run.rowgroup"),
        (lambda b: b.provider("p"), None, "providers[0].endpoint"),
        (lambda b: b.model("m", provider="p", model="x", timeout=0), None, "models[0].timeout"),
        (lambda b: b.uuid("a").uuid("a").build(), "a", "name"),
        (
            lambda b: b.uuid("a").model("m", provider="p", model="x").build(),
            None,
            "models[0].provider",
        ),
    ],
)
def test_builder_errors_name_column_and_field(build: Any, column: str | None, field: str) -> None:
    """Invalid builder arguments raise ConfigError naming the column and field."""
    with pytest.raises(ConfigError) as info:
        build(PipelineBuilder())
    assert (info.value.column, info.value.field) == (column, field)


def test_builder_column_rejects_non_columns() -> None:
    """``.column()`` only takes column config objects."""
    with pytest.raises(ConfigError, match="column config object"):
        PipelineBuilder().column({"name": "x"})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- public face


def test_config_all_is_sorted_and_complete() -> None:
    """``gridloom.config.__all__`` is sorted (ruff's isort style) and every name exists."""

    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert gc.__all__ == sorted(gc.__all__, key=isort_key)
    for name in gc.__all__:
        assert hasattr(gc, name), name


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(pipelines())
def test_structure_inverts_unstructure(cfg: PipelineConfig) -> None:
    """structure(unstructure(cfg)) == cfg for any valid pipeline; the hash is unchanged."""
    data = unstructure_pipeline(cfg)
    again = structure_pipeline(data)
    assert again == cfg
    assert unstructure_pipeline(again) == data
    assert config_hash(again) == config_hash(cfg)


@settings(max_examples=150, deadline=None)
@given(pipelines())
def test_text_round_trip_is_lossless(cfg: PipelineConfig) -> None:
    """load(dump(cfg)) == cfg through YAML text and through JSON text, with the same hash."""
    digest = config_hash(cfg)
    from_yaml = load_config(yaml.safe_load(dump_config(cfg, format="yaml")))
    from_json = load_config(json.loads(dump_config(cfg, format="json")))
    assert from_yaml == cfg
    assert from_json == cfg
    assert config_hash(from_yaml) == config_hash(from_json) == digest


def test_dumped_yaml_reads_well() -> None:
    """The YAML dump is block style with columns in order (a human reads a run's config)."""
    cfg = load_config(yaml.safe_load(EXAMPLE_YAML))
    text = dump_config(cfg)
    assert text.startswith("providers:\n")
    assert "- name: topic\n  category:\n" in text
    assert textwrap.dedent(text) == text


@pytest.mark.parametrize("text", ["\x85", "a\x85b", "\u2028", "\ufeff", "x\r\ny", " lead", "#"])
def test_yaml_dump_keeps_awkward_characters(text: str) -> None:
    """Line-break-like and special characters survive a YAML round trip (PyYAML's NEL bug)."""
    cfg = PipelineBuilder().category("c", [text]).uuid("id", prefix=text).build()
    assert load_config(yaml.safe_load(dump_config(cfg))) == cfg
