"""Hostile config files and values: each is refused quickly with a ConfigError that says what
and where — never a traceback, a hang or a run that fails later — and whatever is accepted
compiles, dumps, loads back equal and previews."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.config import _io as config_io
from gridloom.config import dump_config, load_config, structure_pipeline
from gridloom.config._io import read_config_document
from gridloom.errors import ConfigError

UNIFORM = {"name": "x", "uniform": {"low": 0, "high": 1}}
#: A valid columns section, in YAML.
COLUMNS = "columns:\n  - {name: x, uniform: {low: 0, high: 1}}\n"


@contextmanager
def quickly(seconds: float = 5.0) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < seconds


def refused(path: Path, match: str) -> ConfigError:
    with quickly(), pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    return info.value


def billion_laughs() -> str:
    """Ten anchors, each a list of ten aliases of the previous one: 10**10 values written out."""
    names = "abcdefghij"
    lines = ["unused:", "  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in itertools.pairwise(names):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    return "\n".join(lines) + "\n" + COLUMNS


# --------------------------------------------------------------------------- reading limits


def test_billion_laughs_under_an_unused_key_is_refused_quickly(tmp_path: Path) -> None:
    """Nested aliases that would expand to 10**10 values are refused while reading, with
    their line, before anything is built from them."""
    path = tmp_path / "lol.yaml"
    path.write_text(billion_laughs())
    error = refused(path, r"aliases stand for more than 100,000 values .* at line \d+")
    assert "lol.yaml" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]\n",
        "a: &a {b: *a}\n",
        "a: &a [1, {b: [2, *a]}]\n",
        "a: &a {<<: *a}\n",
    ],
)
def test_a_self_referencing_anchor_is_refused(tmp_path: Path, text: str) -> None:
    """An alias inside the list or mapping it names would make a structure that contains
    itself: refused, naming the alias and its place."""
    path = tmp_path / "self.yaml"
    path.write_text(text + COLUMNS)
    refused(path, r"alias \*a is inside the list or mapping it refers to at line 1")


def in_params(value: str, *, as_json: bool = False) -> str:
    """A valid pipeline whose custom column's params hold ``value`` (YAML or JSON text)."""
    if as_json:
        text = (
            '{"columns": [{"name": "f", "custom": {"function": "json:dumps", "params": {"p": V}}}]}'
        )
    else:
        text = "columns:\n  - {name: f, custom: {function: 'json:dumps', params: {p: V}}}\n"
    return text.replace("V}", value + "}", 1)


BLOCK = "columns:\n  - name: f\n    custom:\n      function: json:dumps\n      params:\n"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flow.yaml", in_params("[" * 10_000 + "]" * 10_000)),
        ("flow100.yaml", in_params("[" * 100 + "]" * 100)),
        ("block.yaml", BLOCK + "".join(" " * (8 + i) + "k:\n" for i in range(1_000))),
        ("deep.json", in_params("[" * 10_000 + "]" * 10_000, as_json=True)),
        ("deep100.json", in_params("[" * 100 + "]" * 100, as_json=True)),
        ("deepobj.json", in_params('{"b": ' * 10_000 + "1" + "}" * 10_000, as_json=True)),
    ],
)
def test_deep_nesting_is_refused(tmp_path: Path, name: str, text: str) -> None:
    """YAML and JSON nested far deeper than 64 levels (in a field that takes any value) fail
    as a ConfigError, not a RecursionError, nor a config that loads."""
    path = tmp_path / name
    path.write_text(text)
    refused(path, r"nest more than 64 levels deep|maximum nesting depth")


def nested_params(depth: int) -> dict[str, Any]:
    """A pipeline whose custom column's params nest lists ``depth`` levels in all."""
    value: Any = 1
    for _ in range(depth - 5):  # the pipeline, columns, the column, custom, params: 5 levels
        value = [value]
    column = {"name": "f", "custom": {"function": "json:dumps", "params": {"p": value}}}
    return {"columns": [column]}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nesting_is_accepted_up_to_64_levels(tmp_path: Path, suffix: str) -> None:
    """64 levels load; 65 do not, in a file or given as a mapping, and the error names the
    column and field where the nesting goes too deep."""
    path = tmp_path / f"c{suffix}"
    path.write_text(json.dumps(nested_params(64)))
    assert load_config(path).column("f") is not None
    path.write_text(json.dumps(nested_params(65)))
    error = refused(path, "more than 64 levels deep")
    assert error.column in ("f", None)
    with pytest.raises(ConfigError, match="more than 64 levels deep") as info:
        structure_pipeline(nested_params(65))
    assert info.value.column == "f"
    assert str(info.value.field).startswith("custom.params.p")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A 100 MB config (sparse, made in an instant) is refused by its size: 16 MiB at most."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    refused(path, r"104,857,600 bytes; a config file may have at most 16,777,216 \(16 MiB\)")


def test_a_document_with_too_many_values_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values a document holds are counted while reading (aliases as what they stand
    for); past the limit it is refused."""
    monkeypatch.setattr(config_io, "MAX_CONFIG_VALUES", 1_000)
    path = tmp_path / "many.yaml"
    path.write_text("big: [" + ", ".join(["1"] * 2_000) + "]\n" + COLUMNS)
    refused(path, "more than 1,000 values")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_config_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A directory or a named pipe (which would block a read forever) is refused at once."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    refused(fifo, "is not a regular file")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    refused(folder, "is not a regular file")


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError naming the line."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(COLUMNS.encode() + b"# caf\xe9\n")
    refused(path, r"not UTF-8 text \(line 3\)")


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_a_utf8_byte_order_mark_is_skipped(tmp_path: Path, suffix: str) -> None:
    """A config file starting with a UTF-8 BOM (as some Windows editors write) loads as the
    same file without it; a JSON one was refused with "Unexpected UTF-8 BOM"."""
    doc = {"columns": [{"name": "x", "category": {"values": ["é", "b"]}}], "run": {"seed": 3}}
    text = json.dumps(doc, ensure_ascii=False) if suffix == ".json" else yaml.safe_dump(doc)
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    plain.write_bytes(text.encode())
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(marked) == load_config(plain)
    result = CliRunner().invoke(cli, ["validate", str(marked)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_after_a_byte_order_mark_bytes_that_are_not_utf8_keep_their_line(tmp_path: Path) -> None:
    """The BOM is skipped, not counted: bad bytes further on are still named by their line."""
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"columns":\n []\n, "x": "caf\xe9"}')
    refused(path, r"not UTF-8 text \(line 3\)")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2024-13-01", "month must be in 1..12"),
        ("0000-01-01", "year 0 is out of range"),
        ("9" * 5_000, "Exceeds the limit"),
        ("!!float 'x'", "could not convert"),
    ],
)
def test_values_yaml_cannot_build_are_config_errors(
    tmp_path: Path, value: str, problem: str
) -> None:
    """A timestamp, number or tagged value that PyYAML fails to build is a ConfigError with
    its line, not a ValueError traceback."""
    path = tmp_path / "v.yaml"
    path.write_text(COLUMNS + f"unused: {value}\n")
    refused(path, rf"not valid YAML: cannot read this value: .*{problem}.* at line 3")


def test_an_integer_too_long_to_write_back_is_refused(tmp_path: Path) -> None:
    """A hexadecimal integer of 5,000 digits loads in Python but could not be written to a
    config file again: refused where it stands."""
    path = tmp_path / "hex.yaml"
    path.write_text(
        "columns:\n  - {name: f, custom: {function: 'json:dumps', params: {x: 0x"
        + "f" * 5_000
        + "}}}\n"
    )
    error = refused(path, "more than 3,000 digits")
    assert (error.column, error.field) == ("f", "custom.params.x")


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system",
        "!!set {a, b}",
        "!!binary aGVsbG8=",
        "!!omap [{a: 1}]",
        "!!pairs [{a: 1}]",
    ],
)
def test_only_plain_tags_are_read(tmp_path: Path, tagged: str) -> None:
    """Tags that build Python objects, bytes, sets or pair lists are refused."""
    path = tmp_path / "t.yaml"
    path.write_text(COLUMNS + f"unused: {tagged}\n")
    refused(path, "not valid YAML")


def test_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    """Ordinary use of anchors — shared settings merged into several entries — loads."""
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "columns:\n"
        "  - {name: a, uniform: &bounds {low: 0, high: 10}}\n"
        "  - {name: b, uniform: {<<: *bounds, convert_to: int}}\n"
        "  - {name: c, uniform: *bounds}\n"
    )
    cfg = load_config(path)
    assert [c.high for c in cfg.columns] == [10, 10, 10]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("document", "column", "field"),
    [
        (
            '{"columns": [{"name": "c", "category": {"values": [1, NaN]}}]}',
            "c",
            "category.values[1]",
        ),
        (
            '{"columns": [{"name": "c", "category": {"values": [1, 2], "weights": [1e999, 1]}}]}',
            "c",
            "category.weights[0]",
        ),
        ('{"columns": [{"name": "c", "uuid": {"prefix": "\\ud800"}}]}', "c", "uuid.prefix"),
        (
            '{"columns": [{"name": "c", "custom": {"function": "json:dumps",'
            ' "params": {"k": [Infinity]}}}]}',
            "c",
            "custom.params.k[0]",
        ),
        (
            '{"columns": [{"name": "c", "uniform": {"low": 0, "high": 1}}],'
            ' "models": [], "run": {"fill_budget": -Infinity}}',
            None,
            "run.fill_budget",
        ),
    ],
)
def test_json_values_no_config_can_hold_are_refused_where_they_are(
    tmp_path: Path, document: str, column: str | None, field: str
) -> None:
    """NaN, infinities (``1e999``) and lone surrogates — which no config file can be written
    with — are refused at load, in typed and free-form fields alike, naming column and field."""
    path = tmp_path / "c.json"
    path.write_text(document)
    error = refused(path, "finite number|UTF-8")
    assert (error.column, error.field) == (column, field)
    assert len(error.issues) == 1  # reported once, not again by the field's own check


def test_a_python_mapping_that_contains_itself_is_refused() -> None:
    """A mapping given in Python that contains itself is a ConfigError, not a
    RecursionError."""
    doc: dict[str, Any] = {"columns": [UNIFORM]}
    doc["me"] = doc
    with quickly(), pytest.raises(ConfigError, match="contain themselves"):
        structure_pipeline(doc)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("lol.yaml", billion_laughs(), "aliases stand for more than"),
        ("self.yaml", "a: &a [*a]\n" + COLUMNS, "alias \\*a is inside"),
        ("deep.yaml", "a: " + "[" * 10_000 + "]" * 10_000 + "\n" + COLUMNS, "nesting"),
        ("deep.json", "[" * 10_000 + "]" * 10_000, "nest more than 64"),
        ("nan.json", '{"columns": [{"name": "x", "uniform": {"low": NaN, "high": 1}}]}', "finite"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "preview"])
def test_the_cli_prints_a_json_error_object_for_a_hostile_file(
    tmp_path: Path, name: str, text: str, message: str, command: str
) -> None:
    """``--json`` prints one JSON error object (no traceback) and exits 2."""
    path = tmp_path / name
    path.write_text(text)
    with quickly():
        result = CliRunner().invoke(cli, [command, str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["type"] == "ConfigError"
    assert message.replace("\\", "") in doc["error"]["message"]
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- random documents


def _nested(depth: int, leaf: Any, kinds: list[bool]) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if kinds[level % len(kinds)] else [value]
    return value


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(0, 120),
    kinds=st.lists(st.booleans(), min_size=1, max_size=5),
    leaf=st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(st.characters(codec="utf-8"), max_size=5),
        st.none(),
        st.booleans(),
    ),
    as_json=st.booleans(),
)
def test_random_nesting_loads_or_is_refused_cleanly(
    depth: int, kinds: list[bool], leaf: Any, as_json: bool
) -> None:
    """Free-form params nested to any depth, with any leaf, load when they are within 64
    levels and finite, and are otherwise a ConfigError — never another exception."""
    params = {"p": _nested(depth, leaf, kinds)}
    doc = {"columns": [{"name": "f", "custom": {"function": "json:dumps", "params": params}}]}
    finite = not (isinstance(leaf, float) and not math.isfinite(leaf))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("c.json" if as_json else "c.yaml")
        path.write_text(json.dumps(doc) if as_json else yaml.safe_dump(doc))
        try:
            cfg = load_config(path)
        except ConfigError:
            assert depth + 5 > 64 or not finite  # params' value sits at level depth + 5
            return
    assert depth + 5 <= 64
    assert finite
    assert structure_pipeline(yaml.safe_load(dump_config(cfg))) == cfg


# --------------------------------------------------------------------------- sampler parameters

NAN, INF = math.nan, math.inf
HOSTILE_FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, 5e-324, 1e-300, 9.5, 10.0, 1e15, 1.000001e15]
HOSTILE_FLOATS += [2.0**53, 9.2e18, 2.0**63, 1e300, -1e300, 1.7e308, -1.7e308, NAN, INF, -INF]
HOSTILE_INTS = [0, 1, -1, 2, 10, 2**31, 2**53 + 1, 106_751_991, 106_751_992, 3_652_058]
HOSTILE_INTS += [3_652_059, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**20, 10**400]

numbers = st.one_of(
    st.sampled_from(HOSTILE_FLOATS),
    st.sampled_from(HOSTILE_INTS),
    st.integers(-1_000, 1_000),
    st.floats(),
    st.integers(),
)
convert_tos = st.sampled_from(["int", "float", "string"])
units = st.sampled_from(["days", "hours", "minutes", "seconds"])
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
moments = st.one_of(
    st.datetimes(timezones=st.none() | offsets),
    st.sampled_from([dt.datetime.min, dt.datetime.max]).flatmap(
        lambda edge: st.just(edge) | offsets.map(lambda tz: edge.replace(tzinfo=tz))
    ),
)
scalars = st.one_of(
    st.sampled_from(HOSTILE_FLOATS + HOSTILE_INTS),
    st.text(st.characters(codec="utf-8"), max_size=4),
    st.none(),
    st.booleans(),
    st.dates(),
)
category_values = st.one_of(scalars, st.lists(st.integers(0, 3), max_size=2))


def params(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def sampler_pipelines(draw: st.DrawFn) -> dict[str, Any]:
    """A pipeline of one sampler column ``x`` (plus the column it refers to, if any), whose
    parameters are drawn from hostile values: NaN, infinities, huge and boundary numbers."""
    kind = draw(
        st.sampled_from(
            [
                *("uniform", "gaussian", "poisson", "bernoulli", "binomial", "category"),
                *("subcategory", "datetime", "timedelta", "uuid"),
            ]
        )
    )
    extra: list[dict[str, Any]] = []
    spec: dict[str, Any]
    if kind == "uniform":
        spec = draw(
            params(
                {"low": numbers, "high": numbers}, {"convert_to": convert_tos, "decimals": numbers}
            )
        )
    elif kind == "gaussian":
        spec = draw(
            params(
                {},
                {
                    "mean": numbers,
                    "stddev": numbers,
                    "convert_to": convert_tos,
                    "decimals": numbers,
                },
            )
        )
    elif kind == "poisson":
        spec = draw(params({"mean": numbers}, {"convert_to": convert_tos}))
    elif kind == "bernoulli":
        spec = draw(params({"p": numbers}, {"convert_to": convert_tos}))
    elif kind == "binomial":
        spec = draw(params({"n": numbers, "p": numbers}, {"convert_to": convert_tos}))
    elif kind == "category":
        values = draw(st.lists(category_values, min_size=1, max_size=4))
        spec = {"values": values}
        if draw(st.booleans()):
            size = draw(st.sampled_from([len(values), len(values) + 1]))
            spec["weights"] = draw(st.lists(numbers, min_size=size, max_size=size))
    elif kind == "subcategory":
        parents = draw(st.lists(scalars, min_size=1, max_size=3, unique_by=repr))
        extra.append({"name": "parent", "category": {"values": parents}})
        keys = draw(st.lists(scalars, max_size=2, unique_by=repr))
        spec = {
            "parent": "parent",
            "values": {
                key: draw(st.lists(category_values, min_size=1, max_size=2))
                for key in [*parents, *keys]
                if not isinstance(key, float) or not math.isnan(key)
            },
        }
    elif kind == "datetime":
        spec = draw(
            params(
                {"start": moments, "end": moments},
                {
                    "unit": units,
                    "format": st.sampled_from(["%Y-%m-%d", "%H:%M", "%", "plain", "%Y\x00"])
                    | st.text(st.characters(codec="utf-8"), max_size=4),
                },
            )
        )
    elif kind == "timedelta":
        spec = draw(params({"min": numbers, "max": numbers}, {"unit": units}))
        if draw(st.booleans()):
            start, end = sorted(draw(st.lists(st.datetimes(), min_size=2, max_size=2)))
            extra.append({"name": "when", "datetime": {"start": start, "end": end}})
            spec["reference"] = "when"
    else:
        spec = draw(params({}, {"prefix": st.text(st.characters(codec="utf-8"), max_size=4)}))
    return {"columns": [*extra, {"name": "x", kind: spec}], "run": {"seed": 3}}


def _as_json(doc: dict[str, Any]) -> str:
    def default(value: Any) -> str:
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    def keys(value: Any) -> Any:  # JSON keys are text: a YAML key 1 is "1" there
        if isinstance(value, dict):
            return {
                k if isinstance(k, str) else json.dumps(k, default=default): keys(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [keys(v) for v in value]
        return value

    return json.dumps(keys(doc), default=default)


def check_round_trip(doc: dict[str, Any], as_json: bool) -> None:
    """Refused at load or validate with a ConfigError, or: compiles, dumps, loads back equal,
    and previews every row."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("c.json" if as_json else "c.yaml")
        path.write_text(_as_json(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True))
        try:
            gl.validate(path)
        except ConfigError:
            event("refused")
            return
        cfg = load_config(path)
        again = Path(folder) / "again.yaml"
        again.write_text(dump_config(cfg))
        assert load_config(again) == cfg
    result = gl.preview(cfg, num_records=6)
    assert (result.status, result.table.num_rows) == ("complete", 6)
    event("previewed")


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(doc=sampler_pipelines(), as_json=st.booleans())
def test_sampler_parameters_are_refused_at_load_or_work_end_to_end(
    doc: dict[str, Any], as_json: bool
) -> None:
    """Every sampler, with parameters drawn from NaN, infinities, huge, negative and boundary
    numbers (as YAML and as JSON): a ConfigError before anything runs, or a pipeline that
    compiles, dumps to a config file, loads back equal and previews every row."""
    check_round_trip(doc, as_json)


HOSTILE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("uniform NaN", {"uniform": {"low": NAN, "high": 1}}),
    ("uniform huge int", {"uniform": {"low": 0, "high": 10**400}}),
    ("uniform too wide", {"uniform": {"low": -1.7e308, "high": 1.7e308}}),
    ("uniform int beyond int64", {"uniform": {"low": 0, "high": 1e300, "convert_to": "int"}}),
    ("gaussian overflows", {"gaussian": {"mean": 1e308, "stddev": 1e307}}),
    ("gaussian int beyond int64", {"gaussian": {"stddev": 2e18, "convert_to": "int"}}),
    ("poisson NaN", {"poisson": {"mean": NAN}}),
    ("poisson astronomical", {"poisson": {"mean": 1e300}}),
    ("binomial n beyond int64", {"binomial": {"n": 10**30, "p": 0.5}}),
    ("bernoulli true", {"bernoulli": {"p": True}}),
    ("category NaN weight", {"category": {"values": ["a", "b"], "weights": [NAN, 1]}}),
    ("category weights overflow", {"category": {"values": ["a", "b"], "weights": [1e308, 1e308]}}),
    ("category NaN value", {"category": {"values": [NAN, 1.0]}}),
    ("category huge int value", {"category": {"values": [10**400, 1.5]}}),
    ("category list value", {"category": {"values": [[1, 2], "a"]}}),
    ("timedelta overflow", {"timedelta": {"min": 0, "max": 10**12}}),
    ("timedelta beyond duration", {"timedelta": {"min": 0, "max": 200_000_000}}),
    (
        "datetime leaves range in UTC",
        {"datetime": {"start": "0001-01-01T00:00:00+01:00", "end": "0001-01-02T00:00:00"}},
    ),
    (
        "datetime no whole day",
        {
            "datetime": {
                "start": "9999-12-31T12:00:00",
                "end": "9999-12-31T23:00:00",
                "unit": "days",
            }
        },
    ),
    (
        "datetime format NUL",
        {"datetime": {"start": "2020-01-01", "end": "2021-01-01", "format": "%Y\x00"}},
    ),
]


@pytest.mark.parametrize(("case", "column"), HOSTILE_CASES, ids=[c for c, _ in HOSTILE_CASES])
@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_each_known_hostile_sampler_is_refused_naming_column_and_field(
    case: str, column: dict[str, Any], as_json: bool
) -> None:
    """The cases the attacker found (and their kin): ``validate`` refuses each, naming the
    column and the field, where it used to pass them on to a failing run."""
    doc = {"columns": [{"name": "x", **column}]}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("c.json" if as_json else "c.yaml")
        path.write_text(_as_json(doc) if as_json else yaml.safe_dump(doc))
        with quickly(), pytest.raises(ConfigError) as info:
            gl.validate(path)
    assert info.value.column == "x", str(info.value)
    kind = next(iter(column))
    assert info.value.field is not None
    assert info.value.field.split(".")[0] in (kind, "unit", "convert_to", "max"), str(info.value)


def test_read_config_document_reads_with_the_same_limits(tmp_path: Path) -> None:
    """The parsed document of a config file, for code that looks into one before loading it
    (the CLI), is read with the loader's limits: a hostile file is a ConfigError."""
    path = tmp_path / "c.yaml"
    path.write_text(COLUMNS)
    assert read_config_document(path)["columns"][0]["name"] == "x"
    for text in ("a: " + "[" * 5_000 + "]" * 5_000 + "\n", "a: 2024-13-01\n", billion_laughs()):
        path.write_text(text)
        with quickly(), pytest.raises(ConfigError):
            read_config_document(path)
