"""A field that holds a list takes a list, from Python as from a file.

A string given for a list was split into its characters (``category("country", "France")``
drew single letters, ``depends_on="greeting"`` waited for columns ``g``, ``r``...), a mapping
into its keys, a set in an order that changes between processes. Such a value is now refused,
with the file loader's message (``expected a list, got str 'France'``), at the same field path,
by the config classes themselves (their message names the field), by the builder and by
``load_config``.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import PipelineConfig, load_config, unstructure_pipeline
from gridloom.config._kinds import column_kinds
from gridloom.config._processors import PROCESSOR_KINDS
from gridloom.config._tools import ToolConfig
from gridloom.config._validator import ValidatorConfig
from gridloom.errors import ConfigError
from gridloom.kinds.validate import validator_kinds

#: Values that are not lists: text (split into characters before), bytes, mappings (their
#: keys), sets (no order), and scalars.
not_lists = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.sets(st.text(max_size=3), max_size=3),
    st.frozensets(st.integers(), max_size=3),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),  # a file refuses those anywhere
    st.booleans(),
)


def _is_list_type(tp: Any) -> bool:
    """``tuple[X, ...]``, or that or ``None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return len(members) == 1 and _is_list_type(members[0])
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _config_classes() -> list[type]:
    """Every gridloom config class reachable from a pipeline, its kinds, validators, tools and
    processors (a plugin's classes are the plugin's: its list fields are checked by the
    builder, see test_a_plugin_list_field)."""
    seen: dict[type, None] = {}

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            walk(arg)
        if not (isinstance(tp, type) and attrs.has(tp)) or tp in seen:
            return
        if not tp.__module__.startswith("gridloom."):
            return
        seen[tp] = None
        for sub in tp.__subclasses__():
            walk(sub)
        for hint in typing.get_type_hints(tp).values():
            walk(hint)

    roots: list[Any] = [PipelineConfig, ValidatorConfig, ToolConfig]
    roots += [kind.config for kind in column_kinds().values()]
    roots += list(validator_kinds().values())
    roots += list(PROCESSOR_KINDS.values())
    for root in roots:
        walk(root)
    return list(seen)


def _list_fields() -> list[tuple[type, attrs.Attribute[Any]]]:
    found = []
    for cls in _config_classes():
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            if field.init and _is_list_type(hints.get(field.name)):
                found.append((cls, field))
    return found


LIST_FIELDS = _list_fields()


def _convert(field: attrs.Attribute[Any], value: Any) -> Any:
    convert: Any = field.converter
    if isinstance(convert, attrs.Converter):
        return typing.cast(Any, convert).__call__(value, None, field)
    return convert(value)


def test_the_walk_finds_the_list_fields() -> None:
    """The fields the review found, and more, are in the walk (it is not vacuous)."""
    names = {(cls.__name__, field.name) for cls, field in LIST_FIELDS}
    expected = {
        ("CategoryColumn", "values"),
        ("CategoryColumn", "weights"),
        ("CustomColumn", "depends_on"),
        ("PersonColumn", "age_range"),
        ("SeedDatasetConfig", "columns"),
        ("SeedDatasetConfig", "index_range"),
        ("ThrottleConfig", "capacity_statuses"),
        ("SimulatedModel", "capacity_schedule"),
        ("LLMJudgeColumn", "rubrics"),
        ("McpTool", "command"),
        ("DropColumnsProcessor", "columns"),
        ("PipelineConfig", "columns"),
    }
    assert expected <= names
    assert len(LIST_FIELDS) > 40


@pytest.mark.parametrize(
    ("cls", "field"), LIST_FIELDS, ids=[f"{c.__name__}.{f.name}" for c, f in LIST_FIELDS]
)
@settings(max_examples=25, deadline=None)
@given(value=not_lists)
def test_every_list_field_refuses_what_is_no_list(
    cls: type, field: attrs.Attribute[Any], value: Any
) -> None:
    """Each list field of a config class has a converter, and it refuses a value that is not
    a list with the file's wording and the field's name (a new field is covered by being
    declared)."""
    assert field.converter is not None, f"{cls.__name__}.{field.name} converts nothing"
    with pytest.raises(TypeError) as caught:
        _convert(field, value)
    message = str(caught.value)
    assert "expected a list" in message or "must be a list" in message
    assert field.name in message


@pytest.mark.parametrize(
    ("cls", "field"), LIST_FIELDS, ids=[f"{c.__name__}.{f.name}" for c, f in LIST_FIELDS]
)
def test_every_list_field_still_takes_ordered_iterables(
    cls: type, field: attrs.Attribute[Any]
) -> None:
    """A list, a tuple, a generator and a range stay accepted (as a tuple, in order)."""
    for given_value in ([3, 4], (3, 4), (n for n in (3, 4)), range(3, 5)):
        converted = _convert(field, given_value)
        assert tuple(converted) == (3, 4)


# --------------------------------------------------------------------------- whole pipelines


def _pipeline() -> dict[str, Any]:
    """A pipeline in file form with a value in many list fields."""
    return {
        "providers": [
            {
                "name": "sim",
                "type": "simulated",
                "simulation": {"models": {"m": {"capacity_schedule": [{"at": 1, "capacity": 2}]}}},
            }
        ],
        "models": [{"alias": "w", "provider": "sim", "model": "m"}],
        "columns": [
            {"name": "c", "category": {"values": ["a", "b"], "weights": [1, 2]}},
            {"name": "s", "subcategory": {"parent": "c", "values": {"a": ["x"], "b": ["y"]}}},
            {"name": "p", "person": {"age_range": [20, 30]}},
            {"name": "f", "custom": {"function": "json:dumps"}, "depends_on": ["c"]},
            {
                "name": "j",
                "llm_judge": {
                    "model": "w",
                    "prompt": "Rate {{ c }}",
                    "rubrics": [{"name": "a", "scores": {1: "bad", 2: "good"}}],
                },
            },
            {
                "name": "t",
                "llm_text": {
                    "model": "w",
                    "prompt": "About {{ c }}",
                    "validate_with": [{"kind": "python", "rules": ["F"], "ignore": ["F401"]}],
                },
            },
            {"name": "v", "validate": {"kind": "python", "target": "t", "rules": ["F"]}},
            {
                "name": "ag",
                "llm_agent": {
                    "model": "w",
                    "prompt": "Answer {{ c }}",
                    "tools": [{"mcp": {"command": ["python", "server.py"], "tools": ["x"]}}],
                },
            },
        ],
        "processors": [{"drop_columns": ["f"]}],
        "run": {"throttle": {"capacity_statuses": [503]}},
    }


def _sites(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """The path of each config object in ``obj`` and each of its list fields' names."""
    if attrs.has(type(obj)):
        hints = typing.get_type_hints(type(obj))
        for field in attrs.fields(type(obj)):
            value = getattr(obj, field.name)
            if field.init and _is_list_type(hints.get(field.name)):
                yield path, field.name
            yield from _sites(value, (*path, field.name))
    elif isinstance(obj, tuple):
        for index, item in enumerate(obj):
            yield from _sites(item, (*path, index))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _sites(item, (*path, key))


def test_the_pipeline_loads() -> None:
    cfg = load_config(_pipeline())
    assert len(list(_sites(cfg))) > 20


SITES = list(_sites(load_config(_pipeline())))


def _object_at(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = (
            root[part] if isinstance(part, int) or isinstance(root, dict) else getattr(root, part)
        )
    return root


@pytest.mark.parametrize(
    ("path", "name"), SITES, ids=[".".join(map(str, (*p, n))) for p, n in SITES]
)
@settings(max_examples=10, deadline=None)
@given(value=not_lists)
def test_remaking_an_object_with_a_string_for_a_list_fails(
    path: tuple[Any, ...], name: str, value: Any
) -> None:
    """Every list field of a pipeline's objects, remade in Python with a value that is no
    list (``attrs.evolve`` runs the class's ``__init__``), is refused naming the field."""
    obj = _object_at(load_config(_pipeline()), path)
    with pytest.raises((TypeError, ValueError)) as caught:
        attrs.evolve(obj, **{name: value})
    assert f"{name}: expected a list" in str(caught.value) or f"{name} must be a list" in str(
        caught.value
    )


def _file_issue(data: dict[str, Any]) -> Any:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    return caught.value.issues[0]


def _builder_issue(make: Any) -> Any:
    with pytest.raises(ConfigError) as caught:
        make()
    return caught.value.issues[0]


def _column(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["columns"] if c["name"] == name)
    return found


#: Builder calls and the file's version of the same setting, with ``V`` for the bad value:
#: (builder call, a function setting it in the file form).
def _cases() -> list[tuple[str, Any, Any]]:
    def b() -> gl.PipelineBuilder:
        return gl.PipelineBuilder(seed=1).category("c", ["a", "b"])

    def in_column(name: str, kind: str, key: str) -> Any:
        def put(data: dict[str, Any], value: Any) -> None:
            _column(data, name)[kind][key] = value

        return put

    def put_depends_on(data: dict[str, Any], value: Any) -> None:
        _column(data, "f")["depends_on"] = value

    def put_sub(data: dict[str, Any], value: Any) -> None:
        _column(data, "s")["subcategory"]["values"] = {"a": value}

    def put_statuses(data: dict[str, Any], value: Any) -> None:
        data["run"]["throttle"]["capacity_statuses"] = value

    return [
        (
            "category.values",
            lambda v: gl.PipelineBuilder().category("c", v),
            in_column("c", "category", "values"),
        ),
        (
            "category.weights",
            lambda v: b().category("c2", ["a", "b"], weights=v),
            in_column("c", "category", "weights"),
        ),
        (
            "custom depends_on",
            lambda v: b().custom("f", "json:dumps", depends_on=v),
            put_depends_on,
        ),
        ("subcategory.values", lambda v: b().subcategory("s", "c", {"a": v}), put_sub),
        (
            "person.age_range",
            lambda v: b().person("p", age_range=v),
            in_column("p", "person", "age_range"),
        ),
        ("run.throttle", lambda v: b().run(throttle={"capacity_statuses": v}), put_statuses),
    ]


CASES = _cases()


@pytest.mark.parametrize(("label", "make", "put"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=20, deadline=None)
@given(value=not_lists)
def test_the_builder_refuses_as_the_file_does(label: str, make: Any, put: Any, value: Any) -> None:
    """The builder refuses a value that is no list where a list goes, with the file's
    message at the file's field path."""
    data = copy.deepcopy(_pipeline())
    put(data, value)
    from_file = _file_issue(data)
    from_builder = _builder_issue(lambda: make(value))
    assert from_builder.message == from_file.message
    assert from_builder.field == from_file.field
    assert from_builder.message.startswith("expected a list, got ")


def test_the_review_examples() -> None:
    """The three examples of the review: a string split into letters, now refused."""
    with pytest.raises(ConfigError) as caught:
        gl.PipelineBuilder(seed=7).category("country", "France").build()
    assert str(caught.value) == (
        "column 'country', field 'category.values': expected a list, got str 'France'"
    )
    b = gl.PipelineBuilder(seed=7).expression("greeting", "hi")
    with pytest.raises(ConfigError) as caught:
        b.custom("f", "json:dumps", depends_on="greeting")
    assert str(caught.value) == (
        "column 'f', field 'depends_on': expected a list, got str 'greeting'"
    )
    with pytest.raises(ConfigError) as caught:
        gl.PipelineBuilder(seed=7).category("c", ["abc"]).subcategory("s", "c", {"abc": "xyz"})
    assert str(caught.value) == (
        "column 's', field 'subcategory.values.abc': expected a list, got str 'xyz'"
    )


@pytest.mark.parametrize("value", ["ab", {"x": 1}, {"a", "b"}])
def test_nested_lists_in_the_builder(value: Any) -> None:
    """A list of config objects (rubrics, tools, validators) given as text, a mapping or a
    set is refused too."""
    b = gl.PipelineBuilder().category("c", ["a"])
    for make, field in (
        (lambda: b.llm_judge("j", "w", "{{ c }}", value), "llm_judge.rubrics"),
        (lambda: b.llm_agent("a", "w", "{{ c }}", tools=value), "llm_agent.tools"),
        (lambda: b.llm_text("t", "w", "{{ c }}", validate_with=value), "llm_text.validate_with"),
    ):
        issue = _builder_issue(make)
        assert issue.field == field
        assert issue.message.startswith("expected a list of ")


@settings(max_examples=20, deadline=None)
@given(value=not_lists)
def test_a_plugin_list_field(value: Any) -> None:
    """A plugin's list field is held to the rule by the builder whatever its converter (the
    example plugin converts with ``tuple``, which splits text)."""
    b = gl.PipelineBuilder().category("c", ["a"])
    issue = _builder_issue(lambda: b.add("llm_label", "l", "w", "{{ c }}", value))
    assert issue.field == "llm_label.labels"
    assert issue.message.startswith("expected a list, got ")


def test_documented_single_values_stay() -> None:
    """Where a single value is documented (a person's ``locale``, a provider's ``cert``), it
    is still taken."""
    cfg = gl.PipelineBuilder().person("p", locale="de_DE").build()
    assert cfg.columns[0].locale == "de_DE"  # type: ignore[attr-defined]
    cfg = (
        gl.PipelineBuilder()
        .category("c", ["a"])
        .provider("p", endpoint="https://example.org/v1", cert="client.pem")
        .build()
    )
    assert cfg.providers[0].cert == "client.pem"
    assert unstructure_pipeline(cfg)["providers"][0]["cert"] == "client.pem"


def test_the_config_classes_name_the_field() -> None:
    """Made directly, a config class names the field (and the key inside it)."""
    from gridloom.config import CategoryColumn, SubcategoryColumn  # type: ignore[attr-defined]

    with pytest.raises(TypeError, match=r"^values: expected a list, got str 'France'$"):
        CategoryColumn(name="c", values="France")
    with pytest.raises(TypeError, match=r"^depends_on: expected a list, got str 'ab'$"):
        CategoryColumn(name="c", values=["a"], depends_on="ab")
    with pytest.raises(TypeError, match=r"^values\['k'\]: expected a list, got str 'xyz'$"):
        SubcategoryColumn(name="s", parent="c", values={"k": "xyz"})
    with pytest.raises(TypeError, match=r"^values: expected a mapping, got str 'xyz'$"):
        SubcategoryColumn(name="s", parent="c", values="xyz")


def test_the_example_plugin_refuses_text_for_its_labels() -> None:
    """The example plugin's source (examples/plugin, which plugins.md shows) converts its
    list field with the public ``gridloom.config.to_tuple``."""
    import importlib.util
    from pathlib import Path

    source = Path(__file__).parents[1] / "examples/plugin/src/gridloom_example_plugin/__init__.py"
    spec = importlib.util.spec_from_file_location("_example_plugin_source", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    column = module.LLMLabelColumn(name="l", model="w", prompt="p", labels=["a", "b"])
    assert column.labels == ("a", "b")
    with pytest.raises(TypeError, match=r"^labels: expected a list, got str 'ab'$"):
        module.LLMLabelColumn(name="l", model="w", prompt="p", labels="ab")
    assert gl.config.to_tuple is module.to_tuple
