"""The column-kind registry: built-ins and plugins found through one entry-point group, bad
plugins reported in one line each, and everything that iterates the kinds."""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
import gridloom.config as gc
from gridloom.cli import output_schema
from gridloom.config import (
    COLUMN_KINDS,
    PipelineBuilder,
    config_hash,
    config_json_schema,
    load_config,
    structure_pipeline,
)
from gridloom.config._building import BuilderBase
from gridloom.config._kind import BUILDER_METHODS, kind_problem
from gridloom.config._kinds import (
    BUILTIN_ENTRY_POINTS,
    ENTRY_POINT_GROUP,
    BuiltinPoint,
    column_kinds,
    discover_entry_points,
    kind_named,
    reload,
)
from gridloom.engine import compile_pipeline
from gridloom.errors import ConfigError
from gridloom.kinds import KindInfo, installed
from gridloom.kinds import _stub as stub

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = [line.partition(" = ")[0] for line in BUILTIN_ENTRY_POINTS]

#: A working kind: ``{name: x, <kind>: {text: ...}}`` fills every row with ``text`` in capitals.
SHOUT = '''
from typing import ClassVar

import attrs
import jsonschema
import pyarrow as pa

from gridloom.config import ColumnConfig
from gridloom.generators import ColumnGenerator
from gridloom.kinds import ColumnKind


@attrs.frozen(kw_only=True)
class ShoutColumn(ColumnConfig):
    """A text in capitals, the same in every row.

    Attributes:
        text: what to shout.
    """

    kind: ClassVar[str] = "{kind}"
    text: str = "hey"


class Shout(ColumnGenerator):
    granularity = "batch"
    inline = True

    def __init__(self, config):
        super().__init__(name=config.name, outputs={{config.name: pa.string()}})
        self.text = config.text.upper()

    def generate(self, ctx):
        return [self.text] * len(ctx.row_ids)


KIND = ColumnKind(config=ShoutColumn, build={build}, positional=("text",){extra})
'''


def shout(kind: str, build: str = "lambda column, ctx: Shout(column)", extra: str = "") -> str:
    """The source of a module declaring the SHOUT kind under ``kind``."""
    return SHOUT.format(kind=kind, build=build, extra=extra)


@attrs.define
class Site:
    """A folder on ``sys.path`` where tests install tiny plugin distributions."""

    root: Path

    def install(
        self, dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0"
    ) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        listed = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{listed}")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        reload()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Plugins installed in a temporary folder for one test; the registry forgets them after."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    reload()
    yield Site(root)
    reload()


def module_name() -> str:
    """A module name no other test uses (modules stay in sys.modules)."""
    return f"gl_test_plugin_{uuid.uuid4().hex[:10]}"


def info(name: str) -> KindInfo:
    return next(i for i in installed() if i.name == name)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gridloom.kinds"]


# --------------------------------------------------------------------------- the built-ins


def test_pyproject_declares_the_built_in_list() -> None:
    """pyproject.toml's gridloom.columns entry points are the fallback list, in its order."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert [f"{name} = {value}" for name, value in declared.items()] == list(BUILTIN_ENTRY_POINTS)


def test_built_ins_come_through_gridloom_s_own_entry_points() -> None:
    """Every built-in kind is found, in documented order, from the gridloom distribution."""
    reload()
    built_in = [i for i in installed() if i.builtin]
    assert [i.name for i in built_in] == BUILTIN
    assert all(i.available and i.distribution == "gridloom" for i in built_in)
    assert all(i.version == importlib.metadata.version("gridloom") for i in built_in)
    assert list(COLUMN_KINDS)[: len(BUILTIN)] == BUILTIN
    assert COLUMN_KINDS["category"] is gl.CategoryColumn


def test_built_ins_pass_every_check_the_registry_skips_for_them() -> None:
    """Each built-in kind passes the plugin checks in full, its field types resolving and its
    parameters' JSON Schema included (the registry leaves those out for built-ins, to start
    runs sooner)."""
    points = discover_entry_points(ENTRY_POINT_GROUP, BUILTIN_ENTRY_POINTS)
    built_in = [ep for ep, _dist, _version, builtin in points if builtin]
    assert [ep.name for ep in built_in] == BUILTIN
    for ep in built_in:
        assert kind_problem(ep.load(), ep.name) is None, ep.name


def test_built_ins_load_without_installed_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """From a source tree (gridloom's own entry points not installed) the built-ins load from
    the fallback list, and plugins still come through their entry points."""
    real = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    foreign = [ep for ep in real if ep.dist is None or ep.dist.name != "gridloom"]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: importlib.metadata.EntryPoints(foreign),
    )
    reload()
    try:
        built_in = [i for i in installed() if i.builtin]
        assert [i.name for i in built_in] == BUILTIN
        assert all(i.available and i.version is None for i in built_in)
        assert {i.name for i in installed() if not i.builtin} == {ep.name for ep in foreign}
        assert structure_pipeline({"columns": [{"name": "a", "uuid": {}}]}).columns
    finally:
        monkeypatch.undo()
        reload()


def test_importing_gridloom_does_not_read_entry_points() -> None:
    """The registry loads on first need, not at import."""
    code = "import gridloom\nfrom gridloom.config import _kinds\nprint(_kinds._REGISTRY._state)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "None"


def _loaded(point: object) -> tuple[str, object]:
    """What loading an entry point gives: ``("ok", the object)`` or ``(the error's type, "")``."""
    try:
        return "ok", point.load()  # type: ignore[attr-defined]
    except Exception as exc:
        return type(exc).__name__, ""


def test_a_built_in_point_loads_what_its_entry_point_loads() -> None:
    """Every built-in kind and validator loads the same object through :class:`BuiltinPoint`
    (no distribution metadata) as through ``importlib.metadata.EntryPoint``."""
    from gridloom.kinds.validate._registry import BUILTIN_VALIDATORS, VALIDATOR_GROUP

    lines = [(ENTRY_POINT_GROUP, line) for line in BUILTIN_ENTRY_POINTS]
    lines += [(VALIDATOR_GROUP, line) for line in BUILTIN_VALIDATORS]
    for group, line in lines:
        name, _, value = (part.strip() for part in line.partition("="))
        real = importlib.metadata.EntryPoint(name=name, value=value, group=group)
        assert _loaded(BuiltinPoint(name, value, group)) == _loaded(real) != ("ok", None), line


@given(
    module=st.sampled_from(["gridloom.kinds.uuid", "gridloom.no_such_module", "json", "os.path"]),
    attribute=st.sampled_from(["", "KIND", "nope", "KIND.config", "KIND.nope", "sep", "dumps"]),
    spaces=st.sampled_from(["", " "]),
)
def test_a_built_in_point_fails_like_an_entry_point(
    module: str, attribute: str, spaces: str
) -> None:
    """Missing modules and attributes, dotted attributes and a bare module load (or fail,
    with the same error type) alike through both."""
    value = f"{module}{spaces}:{spaces}{attribute}" if attribute else module
    real = importlib.metadata.EntryPoint(name="k", value=value, group=ENTRY_POINT_GROUP)
    assert _loaded(BuiltinPoint("k", value, ENTRY_POINT_GROUP)) == _loaded(real)


def test_a_pipeline_imports_only_the_kinds_it_names() -> None:
    """In a fresh interpreter, loading and compiling a pipeline of built-in kinds imports
    those kinds' modules and no other, and no distribution metadata (importlib.metadata):
    a run's start-up pays for what it uses."""
    code = textwrap.dedent(
        """
        import sys
        from gridloom.config import structure_pipeline
        from gridloom.engine import compile_pipeline
        columns = [
            {"name": "topic", "category": {"values": ["a", "b"]}},
            {"name": "id", "uuid": {}},
            {"name": "t", "expression": "{{ topic }}"},
        ]
        compile_pipeline(structure_pipeline({"columns": columns}))
        print(sorted(m for m in sys.modules if m.startswith("gridloom.kinds.")))
        print("importlib.metadata" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split("\n")[:2] == [
        "['gridloom.kinds.category', 'gridloom.kinds.expression', 'gridloom.kinds.uuid']",
        "False",
    ]


@pytest.fixture(scope="module")
def simulate_url() -> Iterator[str]:
    """A ``gridloom simulate`` endpoint in its own process (so this process's imports are not
    the run's), answering at once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridloom", "simulate", "--port", "0", "--latency", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the ready line, or "" if it ended
        if not line.startswith("{"):
            proc.kill()
            pytest.fail(f"gridloom simulate did not start: {line}{proc.communicate()[1]}")
        yield str(json.loads(line)["url"])
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize(
    ("column", "loads_jsonschema"),
    [
        ({"llm_text": {"model": "m", "prompt": "About {{ topic }}."}}, False),
        (
            {
                "llm_structured": {
                    "model": "m",
                    "prompt": "Facts about {{ topic }}.",
                    "schema": {"type": "object", "properties": {"fact": {"type": "string"}}},
                }
            },
            True,
        ),
    ],
)
@pytest.mark.parametrize("in_process", [False, True], ids=["openai endpoint", "type simulated"])
def test_a_run_loads_jsonschema_only_for_a_schema(
    simulate_url: str,
    tmp_path: Path,
    column: dict[str, object],
    loads_jsonschema: bool,
    in_process: bool,
) -> None:
    """In a fresh interpreter, a whole run (a real endpoint, rows written) imports jsonschema
    only when a column has a JSON Schema: it is tens of milliseconds of every start-up. So
    does a run whose provider is the built-in simulated endpoint, started in the same process
    (it checks the schemas requests bring, as providers do, and only they need jsonschema)."""
    provider = (
        {"name": "p", "type": "simulated"}
        if in_process
        else {"name": "p", "type": "openai", "endpoint": simulate_url}
    )
    config = {
        "providers": [provider],
        "models": [{"alias": "m", "provider": "p", "model": "x"}],
        "columns": [{"name": "topic", "category": {"values": ["a", "b"]}}, {"name": "c", **column}],
    }
    code = textwrap.dedent(
        f"""
        import sys
        import gridloom as gl
        result = gl.create({config!r}, num_records=4, output_dir={str(tmp_path / "out")!r})
        print(result.status, result.num_rows)
        print("jsonschema" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["complete 4", str(loads_jsonschema)], out.stderr


@pytest.fixture
def unread(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A fresh registry whose entry points must not be read: each read is recorded (the
    groups asked for) and fails."""
    reads: list[str] = []

    def refuse(**kw: object) -> object:
        reads.append(str(kw.get("group")))
        raise AssertionError(f"entry points read: {kw}")

    reload()
    monkeypatch.setattr(importlib.metadata, "entry_points", refuse)
    yield reads
    monkeypatch.undo()
    reload()


SAMPLERS_ONLY = {
    "columns": [
        {"name": "topic", "category": {"values": ["a", "b"]}},
        {"name": "sub", "subcategory": {"parent": "topic", "values": {"a": ["x"], "b": ["y"]}}},
        {"name": "n", "uniform": {"low": 1, "high": 9}},
        {"name": "g", "gaussian": {"mean": 0, "stddev": 1}},
        {"name": "id", "uuid": {}},
        {"name": "when", "datetime": {"start": "2024-01-01", "end": "2024-12-31"}},
        {"name": "text", "expression": "{{ topic }}-{{ n }}"},
    ]
}


def test_a_pipeline_of_built_in_kinds_reads_no_entry_points(unread: list[str]) -> None:
    """Loading, building, compiling and previewing a pipeline whose kinds are all built in
    reads no installed entry points: a built-in is resolved by its key alone."""
    cfg = structure_pipeline(SAMPLERS_ONLY)
    built = PipelineBuilder(seed=3).category("topic", ["a", "b"]).uuid("id").build()
    graph = compile_pipeline(cfg)
    assert set(graph.columns) == {c["name"] for c in SAMPLERS_ONLY["columns"]}
    assert gl.preview(built, 2).num_rows == 2
    assert unread == []
    assert gl.config._kinds._REGISTRY._state is None


def test_a_kind_that_is_not_built_in_reads_the_plugins(unread: list[str]) -> None:
    """An unknown kind key, a listing of the kinds, and validate each read the plugins'
    entry points (once: the registry keeps what it read)."""
    actions = {
        "unknown key": lambda: structure_pipeline({"columns": [{"name": "x", "sparkles": {}}]}),
        "listing": lambda: list(COLUMN_KINDS),
        "validate": lambda: gl.validate(SAMPLERS_ONLY),
    }
    for what, action in actions.items():
        reload()
        unread.clear()
        with contextlib.suppress(ConfigError):
            action()
        with contextlib.suppress(ConfigError):
            action()
        assert unread == [ENTRY_POINT_GROUP], what


def test_built_ins_by_name_are_the_registry_s_own(site: Site) -> None:
    """Whatever plugins are installed (one taking a built-in's key, one of its own), every
    name resolves lazily to what the full registry holds: built-ins to the built-in, a
    plugin's key to the plugin, an unknown key to nothing; the same object whichever is
    asked first."""
    taker, own = module_name(), module_name()
    site.install("taker-plugin", {"uuid": f"{taker}:KIND"}, {taker: shout("uuid")})
    site.install("own-plugin", {"shout": f"{own}:KIND"}, {own: shout("shout")})
    names = [*BUILTIN, "shout", "sparkles"]
    reload()
    lazily = {name: kind_named(name) for name in BUILTIN}
    assert gl.config._kinds._REGISTRY._state is None  # built-ins alone read nothing
    lazily |= {name: kind_named(name) for name in ["shout", "sparkles"]}
    eagerly = dict(column_kinds())
    assert {name: lazily[name] for name in names} == {name: eagerly.get(name) for name in names}
    assert lazily["uuid"] is eagerly["uuid"]
    assert eagerly["uuid"].config is gl.UUIDColumn
    assert eagerly["shout"].config.__module__ == own
    reload()
    assert kind_named("uuid") is eagerly["uuid"]  # loaded lazily after a full load: the same


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(
        st.one_of(st.sampled_from(BUILTIN), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
        min_size=1,
        max_size=3,
    )
)
def test_a_column_reads_the_same_lazily_and_eagerly(keys: list[str]) -> None:
    """A column mapping of any kind keys structures to the same column, or fails with the same
    message, whether the registry has read the plugins yet or not."""
    column = {"name": "c", **{key: {} for key in keys}}

    def outcome() -> object:
        try:
            return structure_pipeline({"columns": [column]}).columns[0]
        except ConfigError as exc:
            return str(exc)

    reload()
    lazy = outcome()
    column_kinds()
    assert outcome() == lazy


def test_concurrent_first_lookups_load_a_built_in_once() -> None:
    """Threads asking for built-in kinds at once, before anything loaded, all get the
    registry's object."""
    reload()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = list(pool.map(kind_named, BUILTIN * 8))
    kinds = column_kinds()
    assert [kind is kinds[name] for kind, name in zip(found, BUILTIN * 8, strict=True)] == [
        True
    ] * len(found)


def test_the_config_layer_never_imports_the_kinds() -> None:
    """No module of config (or the layers below the kinds) imports gridloom.kinds statically;
    the registry imports kinds' modules by the names their entry points give."""
    below = ["config", "storage", "throttle", "simulated", "trace", "clients"]
    paths = [p for sub in below for p in (ROOT / "src" / "gridloom" / sub).rglob("*.py")]
    paths.append(ROOT / "src" / "gridloom" / "errors.py")
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found += [f"{path.name}: {n}" for n in names if n.endswith("kinds") or ".kinds." in n]
    assert [f for f in found if "_kinds" not in f and "_kind" not in f] == []


def test_old_names_still_reach_the_built_in_classes() -> None:
    """gridloom.config.CategoryColumn (and SAMPLER_KINDS) are the registry's classes."""
    assert gc.CategoryColumn is gl.CategoryColumn is COLUMN_KINDS["category"]
    assert gc.EmbeddingColumn is COLUMN_KINDS["embedding"]
    assert [cls.kind for cls in gc.SAMPLER_KINDS] == BUILTIN[:10]
    with pytest.raises(AttributeError):
        _ = gc.NoSuchColumn


# --------------------------------------------------------------------------- config hashes


def all_kinds() -> gl.PipelineConfig:
    """A pipeline with every built-in kind and most of their fields set."""
    return (
        PipelineBuilder(seed=3)
        .category("c", ["a", 1, 2.5, True, None], weights=[1, 2, 3, 4, 5])
        .subcategory("s", "c", {"a": ["x"], 1: ["t"], 2.5: ["z"], None: ["n"]})
        .uniform("u", 0, 10, convert_to="int", decimals=None)
        .gaussian("g", 1.5, 2.0, decimals=2)
        .poisson("p", 2, convert_to="float")
        .bernoulli("b", 0.25, convert_to="string")
        .binomial("n", 3, 0.5)
        .uuid("id", prefix="id-", short=True, uppercase=True)
        .datetime("d", "2024-01-01", "2024-12-31T10:00:00+02:00", unit="hours", format=None)
        .timedelta("t", 0, 5, unit="hours", reference="d")
        .expression("e", "{{ c }}", dtype="json", drop=True)
        .custom(
            "f", "json:dumps", mode="batch", dtype="int", params={"k": [1, 2]}, depends_on=["e"]
        )
        .llm_text(
            "lt",
            "w",
            "About {{ c }}",
            system_prompt="sys {{ s }}",
            temperature=0.3,
            top_p=0.9,
            max_tokens=50,
            timeout=5,
            extra_body={"x": 1},
            with_reasoning=True,
        )
        .llm_code("lc", "w", "Code", language="go")
        .llm_structured(
            "ls",
            "w",
            "Facts",
            {"type": "object", "properties": {"a": {"type": "string"}}},
            max_correction_attempts=1,
        )
        .llm_judge(
            "lj",
            "w",
            "{{ lt }}",
            [{"name": "a", "description": "d {{ c }}", "scores": {1: "x", 5: "y"}}],
        )
        .embedding("le", "w", "{{ lt }}", timeout=3)
        .provider("sim", type="simulated")
        .model("w", provider="sim", model="m")
        .build()
    )


#: config_hash of each pipeline as computed before the kinds became plugins (commit 8483070).
HASHES_BEFORE = {
    "bottleneck": "d4e793a291f4297ccd4b85cfe6cc53356e7bffb28817a07068cbf430fe456b65",
    "people": "6cd86b984acba0d2ee0cf93503e994e0ae5f0f212dc331b7b15ce77d2d83ed5e",
    "quickstart": "12fb916783cf6e18f97138a9fd0453bfbf24e28c469e3e80be75a92eb982b809",
    "all_kinds": "46a38d8e8947f227b15aa74381ed8fb45528d84dcebb70bb04324416844563f8",
}


#: A pipeline with a seed dataset, and its config_hash before the seed dataset gained
#: index_range, partition and Hugging Face fields (commit 2ef7f24).
SEEDED = {
    "seed_dataset": {"path": "examples/data/x.parquet"},
    "columns": [{"name": "u", "uuid": {}}],
}
SEEDED_HASH = "5c9abc0d865039ed9bd3be5f6eb69d845f9221286b2c0ce0b8be7e0943ddb08a"


@pytest.mark.parametrize("name", sorted([*HASHES_BEFORE, "seeded"]))
def test_config_hashes_are_unchanged(name: str) -> None:
    """Existing pipelines keep their config hash (so their runs still resume)."""
    if name == "seeded":
        assert config_hash(structure_pipeline(SEEDED)) == SEEDED_HASH
        return
    cfg = all_kinds() if name == "all_kinds" else load_config(ROOT / "examples" / f"{name}.yaml")
    assert config_hash(cfg) == HASHES_BEFORE[name]


# --------------------------------------------------------------------------- the builder


def test_the_builder_has_a_method_per_registered_kind() -> None:
    """Every registered kind is a method of the builder class and its instances, with the
    kind's signature and docstring; dir() lists them."""
    for kind, cls in COLUMN_KINDS.items():
        method = getattr(PipelineBuilder, kind)
        assert method.__name__ == kind
        assert cls.__name__ in (method.__doc__ or "")
        assert kind in dir(PipelineBuilder())
    params = inspect.signature(PipelineBuilder.llm_text).parameters
    assert list(params)[:4] == ["self", "name", "model", "prompt"]
    assert params["system_prompt"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["drop"].default is False


def test_builder_methods_are_the_reserved_names() -> None:
    """The registry refuses kind keys named like the builder's own methods: the same list."""
    public = {n for n, v in vars(BuilderBase).items() if callable(v) and not n.startswith("_")}
    assert public == BUILDER_METHODS


def test_the_builder_stub_is_current() -> None:
    """config/_builder.pyi matches what the built-in kinds declare."""
    assert stub.main(["--check"]) == 0


def test_builder_arguments_are_checked_like_a_file() -> None:
    """Unknown arguments name the field; nested objects built from mappings are located; a
    missing or extra positional argument is a TypeError, as for any method."""
    with pytest.raises(ConfigError) as info_:
        PipelineBuilder().category("c", ["a"], wieghts=[1])
    assert (info_.value.column, info_.value.field) == ("c", "category.wieghts")
    with pytest.raises(ConfigError) as info_:
        PipelineBuilder().llm_judge("j", "m", "p", [{"name": "a", "scores": {}}])
    assert (info_.value.column, info_.value.field) == ("j", "llm_judge.rubrics[0].scores")
    with pytest.raises(TypeError):
        PipelineBuilder().uniform("u", 1)
    with pytest.raises(TypeError):
        PipelineBuilder().uuid("u", "extra")


def test_add_reaches_any_kind_by_name() -> None:
    """``.add(kind, name, ...)`` builds what ``.<kind>(name, ...)`` builds."""
    by_method = PipelineBuilder().uniform("u", 0, 5, convert_to="int").build()
    by_name = PipelineBuilder().add("uniform", "u", 0, 5, convert_to="int").build()
    assert by_method == by_name
    with pytest.raises(ConfigError, match="unknown column kind 'unifrom'"):
        PipelineBuilder().add("unifrom", "u")


def test_none_stands_for_a_default_container() -> None:
    """A mapping field may be given as None for its default (``custom(params=None)``)."""
    built = PipelineBuilder().custom("f", "json:dumps", params=None).llm_text("t", "m", "p")
    columns = built.model("m", provider="p", model="x").provider("p", type="simulated").build()
    assert columns.columns[0].params == {}


# --------------------------------------------------------------------------- plugins


def test_a_plugin_kind_is_a_kind_like_any_other(site: Site) -> None:
    """A plugin's kind loads from YAML, dumps back, has a builder method, a schema entry and
    an entry in installed() naming its distribution."""
    module = module_name()
    site.install("shout-plugin", {"shout": f"{module}:KIND"}, {module: shout("shout")}, "2.5")
    found = info("shout")
    assert (found.distribution, found.version, found.builtin, found.problem) == (
        "shout-plugin",
        "2.5",
        False,
        None,
    )
    assert found.entry_point == f"shout = {module}:KIND"
    assert found.summary == "A text in capitals, the same in every row."
    assert json.dumps(found.as_dict())
    cfg = structure_pipeline({"columns": [{"name": "s", "shout": {"text": "hi"}}]})
    assert cfg == PipelineBuilder().shout("s", "hi").build()
    assert cfg.columns[0].kind == "shout"
    schema = config_json_schema()
    assert "shout" in schema["$defs"]["Column"]["properties"]
    assert {"required": ["shout"]} in schema["$defs"]["Column"]["oneOf"]
    result = gl.preview(cfg, 3)
    assert result.table.column("s").to_pylist() == ["HI"] * 3


def test_a_plugin_may_add_to_its_schema_and_take_a_shorthand(site: Site) -> None:
    """``schema`` adjusts the kind's JSON Schema; ``shorthand`` makes a string stand for a
    field, in files and in the schema."""
    module = module_name()
    extra = ', shorthand="text", schema=lambda s: {**s, "examples": [{"text": "hi"}]}'
    site.install("shout-plugin", {"yell": f"{module}:KIND"}, {module: shout("yell", extra=extra)})
    cfg = structure_pipeline({"columns": [{"name": "s", "yell": "hello"}]})
    assert cfg.columns[0].text == "hello"  # type: ignore[attr-defined]
    schema = config_json_schema()
    assert schema["$defs"]["ShoutColumn"]["examples"] == [{"text": "hi"}]
    branches = schema["$defs"]["Column"]["properties"]["yell"]["anyOf"]
    assert {"type": "string", "description": "Shorthand for the text."} in branches


BAD_DECLARATIONS = {
    "not a ColumnKind": ("KIND = 42", "it names 42, not a gridloom.kinds.ColumnKind"),
    "not attrs": (
        "class Plain(ColumnConfig):\n    kind = 'bad'\n"
        "KIND = ColumnKind(config=Plain, build=print)",
        "config class Plain is not an attrs class",
    ),
    "no kind key": (
        "@attrs.frozen(kw_only=True)\nclass NoKey(ColumnConfig):\n    x: int = 1\n"
        "KIND = ColumnKind(config=NoKey, build=print)",
        "config class NoKey sets no kind key",
    ),
    "common field": (
        "@attrs.frozen(kw_only=True)\nclass Named(ColumnConfig):\n"
        "    kind: ClassVar[str] = 'bad'\n    name: str = 'x'\n"
        "KIND = ColumnKind(config=Named, build=print)",
        "Named redefines the common column field 'name'",
    ),
    "another name": (
        "@attrs.frozen(kw_only=True)\nclass Other(ColumnConfig):\n"
        "    kind: ClassVar[str] = 'other'\nKIND = ColumnKind(config=Other, build=print)",
        "the entry point is named 'bad' but Other declares the kind key 'other'",
    ),
    "no schema": (
        "@attrs.frozen(kw_only=True)\nclass Odd(ColumnConfig):\n"
        "    kind: ClassVar[str] = 'bad'\n    tags: set[int] = attrs.field(factory=set)\n"
        "KIND = ColumnKind(config=Odd, build=print)",
        "its parameters have no JSON Schema: TypeError",
    ),
    "unknown positional": (
        "@attrs.frozen(kw_only=True)\nclass Pos(ColumnConfig):\n"
        "    kind: ClassVar[str] = 'bad'\n"
        "KIND = ColumnKind(config=Pos, build=print, positional=('x',))",
        "'x' (positional or shorthand) is not a field of Pos",
    ),
    "build not callable": (
        "@attrs.frozen(kw_only=True)\nclass B(ColumnConfig):\n"
        "    kind: ClassVar[str] = 'bad'\nKIND = ColumnKind(config=B, build=42)",
        "its build (42) is not callable",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DECLARATIONS))
def test_a_bad_declaration_is_one_warning_and_the_rest_load(
    site: Site, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """A plugin declaring an invalid kind is reported in one line naming it (at load and by
    installed()); the built-ins and other plugins still load; a config naming the kind fails
    with a ConfigError naming the plugin and the problem."""
    source, problem = BAD_DECLARATIONS[case]
    header = "from typing import ClassVar\nimport attrs\nfrom gridloom.config import ColumnConfig\n"
    header += "from gridloom.kinds import ColumnKind\n"
    bad, good = module_name(), module_name()
    site.install("bad-plugin", {"bad": f"{bad}:KIND"}, {bad: header + source}, "0.3")
    site.install("good-plugin", {"shout": f"{good}:KIND"}, {good: shout("shout")})
    with caplog.at_level(logging.WARNING, logger="gridloom.kinds"):
        assert info("bad").problem is not None
    assert problem in (info("bad").problem or "")
    lines = warnings_of(caplog)
    assert len(lines) == 1
    assert "\n" not in lines[0]
    origin = f"plugin bad-plugin 0.3 (entry point bad = {bad}:KIND)"
    assert lines[0] == f"column kind 'bad' from {origin} is not available: {info('bad').problem}"
    assert info("shout").available
    assert all(info(name).available for name in BUILTIN)
    with pytest.raises(ConfigError) as error:
        structure_pipeline({"columns": [{"name": "x", "bad": {}}]})
    assert (error.value.column, error.value.field) == ("x", "bad")
    assert error.value.message == lines[0]


def test_a_plugin_that_fails_to_import_is_one_line(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """An import error is reported, without a traceback, in one line; the builder and
    ``add`` say the same."""
    module = module_name()
    site.install("broken-plugin", {"broken": f"{module}:KIND"}, {module: "import no_such_mod\n"})
    with caplog.at_level(logging.WARNING, logger="gridloom.kinds"):
        problem = info("broken").problem
    assert problem == "it failed to import: ModuleNotFoundError: No module named 'no_such_mod'"
    assert len(warnings_of(caplog)) == 1
    assert info("broken").config is None
    with pytest.raises(AttributeError, match=r"broken-plugin 1\.0.*No module named"):
        _ = PipelineBuilder().broken
    with pytest.raises(ConfigError, match=r"broken-plugin 1\.0.*No module named"):
        PipelineBuilder().add("broken", "b")


def test_a_plugin_cannot_shadow_a_built_in_or_an_earlier_plugin(site: Site) -> None:
    """A plugin kind named like a built-in is refused (the built-in stays); of two plugins
    with one name, the first (by distribution name) wins and the other is reported."""
    first, second, third = module_name(), module_name(), module_name()
    site.install("a-plugin", {"shout": f"{first}:KIND"}, {first: shout("shout")})
    site.install("b-plugin", {"shout": f"{second}:KIND"}, {second: shout("shout")})
    site.install("c-plugin", {"uuid": f"{third}:KIND"}, {third: shout("uuid")})
    shouts = [i for i in installed() if i.name == "shout"]
    assert [(i.distribution, i.available) for i in shouts] == [
        ("a-plugin", True),
        ("b-plugin", False),
    ]
    assert shouts[1].problem == (
        f"the kind key 'shout' is already taken by plugin a-plugin 1.0 (entry point shout ="
        f" {first}:KIND)"
    )
    uuids = [i for i in installed() if i.name == "uuid"]
    assert [i.builtin for i in uuids] == [True, False]
    assert uuids[1].problem == "the kind key 'uuid' is already taken by gridloom (built in)"
    assert COLUMN_KINDS["uuid"] is gl.UUIDColumn
    assert COLUMN_KINDS["shout"].__module__ == first


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("lambda column, ctx: 42", "made a int, not a ColumnGenerator"),
        ("lambda column, ctx: 1 / 0", "could not make its generator: ZeroDivisionError"),
    ],
)
def test_a_plugin_build_that_fails_is_a_config_error(site: Site, build: str, message: str) -> None:
    """A kind whose build fails or makes no generator fails validation, naming the plugin."""
    module = module_name()
    site.install("shout-plugin", {"shout": f"{module}:KIND"}, {module: shout("shout", build)})
    cfg = structure_pipeline({"columns": [{"name": "s", "shout": {}}]})
    with pytest.raises(ConfigError, match=message) as error:
        compile_pipeline(cfg)
    assert "(from plugin shout-plugin 1.0" in error.value.message
    assert error.value.column == "s"


def test_a_missing_plugin_is_named_as_a_possibility() -> None:
    """A column whose only key is unknown hints that a plugin may provide it."""
    with pytest.raises(ConfigError, match="needs its package installed"):
        structure_pipeline({"columns": [{"name": "x", "sparkles": {}}]})


def test_the_cli_reports_a_broken_plugin_in_one_line(site: Site, tmp_path: Path) -> None:
    """``gridloom validate`` warns once, without a traceback, and still validates a config
    that does not use the broken kind; one that does exits 2 naming the plugin."""
    module = module_name()
    site.install("broken-plugin", {"broken": f"{module}:KIND"}, {module: "raise RuntimeError('x')"})
    fine = tmp_path / "fine.yaml"
    fine.write_text("columns:\n  - {name: a, uuid: {}}\n")
    uses = tmp_path / "uses.yaml"
    uses.write_text("columns:\n  - {name: a, broken: {}}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site.root), *sys.path])}
    command = [sys.executable, "-m", "gridloom", "validate"]
    ok = subprocess.run([*command, str(fine)], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    warned = [line for line in ok.stderr.splitlines() if "broken" in line]
    assert warned == [
        "WARNING gridloom.kinds: column kind 'broken' from plugin broken-plugin 1.0 (entry point"
        f" broken = {module}:KIND) is not available: it failed to import: RuntimeError: x"
    ]
    assert "Traceback" not in ok.stderr
    bad = subprocess.run(
        [*command, str(uses)], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "broken-plugin 1.0" in bad.stdout + bad.stderr


def test_gridloom_plugins_lists_a_broken_plugin_with_its_problem(site: Site) -> None:
    """``gridloom plugins`` lists a kind that did not load with the reason and exits 1; its
    ``--json`` is the documented failure, with every kind listed beside the error."""
    module = module_name()
    site.install("broken-plugin", {"broken": f"{module}:KIND"}, {module: "raise RuntimeError('x')"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site.root), *sys.path])}
    command = [sys.executable, "-m", "gridloom", "plugins"]
    text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 1
    assert "Traceback" not in text.stderr
    [line] = [line for line in text.stdout.splitlines() if line.lstrip().startswith("broken ")]
    assert line.split(None, 1)[1] == (
        f"NOT AVAILABLE (plugin broken-plugin 1.0 (entry point broken = {module}:KIND)):"
        " it failed to import: RuntimeError: x"
    )
    assert "error: 1 column kind(s) not available: 'broken'" in text.stderr
    proc = subprocess.run(
        [*command, "--plugins-only", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, output_schema("plugins"))
    assert doc["ok"] is False
    assert doc["error"]["type"] == "PluginError"
    broken = [k for k in doc["kinds"] if k["name"] == "broken"]
    assert broken == [
        {
            "name": "broken",
            "config": None,
            "distribution": "broken-plugin",
            "version": "1.0",
            "entry_point": f"broken = {module}:KIND",
            "builtin": False,
            "available": False,
            "problem": "it failed to import: RuntimeError: x",
            "summary": "",
        }
    ]
    assert all(not k["builtin"] for k in doc["kinds"])


def test_the_kinds_package_exports_a_sorted_public_face() -> None:
    """gridloom.kinds lists its public names sorted (ruff's isort order), and each exists."""
    import gridloom.kinds as package

    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert package.__all__ == sorted(package.__all__, key=isort_key)
    assert all(hasattr(package, name) for name in package.__all__)
