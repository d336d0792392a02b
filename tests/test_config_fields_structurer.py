"""The config's field-by-field structuring and unstructuring (``gridloom.config._fields``)
against cattrs' own generated functions: for every config class and any mapping (fields
present or missing, values of any type, unknown keys), the same object or the same errors, in
the same order, with the same notes; for instances of the config classes the examples hold,
and mixes of their field values, the same plain data with the keys in the same order."""

from __future__ import annotations

from typing import Any, get_args

import attrs
import pytest
from cattrs.errors import AttributeValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.config import PipelineConfig
from gridloom.config._converter import _is_config_class, converter
from gridloom.config._fields import (
    FieldStructurer,
    FieldUnstructurer,
    _covered,
    structurer_for,
    unstructurer_for,
)
from gridloom.config._kinds import column_kinds
from gridloom.config._processors import PROCESSOR_KINDS


def _config_classes() -> list[type[Any]]:
    """Every class the converter structures field by field that a config can hold: reached
    from the pipeline, each column kind and each processor, through the types of their
    fields."""
    found: dict[str, type[Any]] = {}
    todo: list[Any] = [
        PipelineConfig,
        *(kind.config for kind in column_kinds().values()),
        *PROCESSOR_KINDS.values(),
    ]
    while todo:
        tp = todo.pop()
        todo.extend(get_args(tp))
        if not (isinstance(tp, type) and attrs.has(tp)):
            continue
        name = f"{tp.__module__}.{tp.__qualname__}"
        if name in found:
            continue
        if _is_config_class(tp):
            found[name] = tp
        attrs.resolve_types(tp)
        todo.extend(field.type for field in attrs.fields(tp))
    return [found[name] for name in sorted(found)]


CLASSES = _config_classes()

_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2)
    | st.text(max_size=4)
    | st.sampled_from(["gpt", "openai", "text", "json", "{{ x }}", "1s", "auto"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


def _shape(exc: BaseException) -> Any:
    """What an error says: its type, message, notes (with their field and type), and, for a
    group, the same of each error in it."""
    notes = [
        (str(note), getattr(note, "name", None), getattr(note, "type", None))
        for note in getattr(exc, "__notes__", [])
    ]
    if isinstance(exc, BaseExceptionGroup):
        inner = [_shape(sub) for sub in exc.exceptions]
        return (type(exc), exc.message, getattr(exc, "cl", None), notes, inner)
    return (type(exc), str(exc), notes, sorted(getattr(exc, "extra_fields", ()) or ()))


def _outcome(structure: Any, obj: dict[str, Any], cls: type[Any]) -> Any:
    try:
        return ("made", structure(obj, cls))
    except Exception as exc:
        return ("raised", _shape(exc))


def test_the_config_classes_are_found_and_covered() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"PipelineConfig", "ModelConfig", "LLMTextColumn", "RunConfig"} <= names
    assert all(_covered(cls) for cls in CLASSES)
    assert all(isinstance(structurer_for(cls, converter), FieldStructurer) for cls in CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__qualname__)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_it_structures_as_cattrs_generated_function_does(cls: type[Any], data: Any) -> None:
    names = [field.name for field in attrs.fields(cls) if field.init]
    present = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    obj = {name: data.draw(_VALUES, label=name) for name in present}
    obj.update(data.draw(st.dictionaries(st.sampled_from(["extra", "Name", "_x"]), _VALUES)))
    generated = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )
    ours = FieldStructurer.of(cls, converter)
    assert _outcome(ours, obj, cls) == _outcome(generated, obj, cls)


def test_a_valid_mapping_gives_the_same_object() -> None:
    from gridloom.config import ModelConfig

    obj = {"alias": "m", "provider": "p", "model": "x", "temperature": 0.5, "max_tokens": 9}
    generated = make_dict_structure_fn(
        ModelConfig, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )
    made = FieldStructurer.of(ModelConfig, converter)(obj, ModelConfig)
    assert made == generated(obj, ModelConfig)
    assert made.temperature == 0.5


def test_a_failure_names_its_class_and_field() -> None:
    from cattrs.errors import ClassValidationError

    from gridloom.config import ModelConfig

    with pytest.raises(ClassValidationError) as caught:
        FieldStructurer.of(ModelConfig, converter)({"alias": "m", "provider": 5, "x": 1}, None)
    errors = caught.value.exceptions
    assert [type(e).__name__ for e in errors] == [
        "TypeError",
        "KeyError",
        "ForbiddenExtraKeysError",
    ]
    note = errors[0].__notes__[-1]
    assert isinstance(note, AttributeValidationNote)
    assert note == "Structuring class ModelConfig @ attribute provider"
    assert note.name == "provider"


# --------------------------------------------------------------------------- unstructuring


def _instances(value: Any, found: dict[type[Any], list[Any]]) -> None:
    """Every config-class instance inside ``value``, by class."""
    if isinstance(value, tuple | list):
        for item in value:
            _instances(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _instances(item, found)
    elif attrs.has(type(value)):
        if _is_config_class(type(value)):
            found.setdefault(type(value), []).append(value)
        for field in attrs.fields(type(value)):
            _instances(getattr(value, field.name), found)


def _example_instances() -> dict[type[Any], list[Any]]:
    from pathlib import Path

    from gridloom.config import load_config

    found: dict[type[Any], list[Any]] = {}
    examples = Path(__file__).resolve().parent.parent / "examples"
    for path in sorted(examples.rglob("*.yaml")):
        _instances(load_config(path), found)
    return found


EXAMPLES = _example_instances()


def test_the_examples_hold_instances_of_many_classes() -> None:
    names = {cls.__name__ for cls in EXAMPLES}
    assert {"PipelineConfig", "ModelConfig", "LLMTextColumn", "RunConfig"} <= names
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("cls", sorted(EXAMPLES, key=lambda c: c.__qualname__), ids=str)
def test_it_unstructures_the_examples_as_cattrs_generated_function_does(cls: type[Any]) -> None:
    generated = make_dict_unstructure_fn(cls, converter)
    ours = FieldUnstructurer.of(cls, converter)
    assert isinstance(unstructurer_for(cls, converter), FieldUnstructurer)
    for instance in EXAMPLES[cls]:
        assert ours(instance) == generated(instance)
        assert list(ours(instance)) == list(generated(instance))  # the same key order


@pytest.mark.parametrize("cls", sorted(EXAMPLES, key=lambda c: c.__qualname__), ids=str)
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_it_unstructures_mixed_instances_as_cattrs_does(cls: type[Any], data: Any) -> None:
    """Instances mixing the field values the examples hold (each field's value drawn from
    any example instance of the class, or left at its default)."""
    init = [field for field in attrs.fields(cls) if field.init]
    kwargs: dict[str, Any] = {}
    for field in init:
        seen = [getattr(instance, field.name) for instance in EXAMPLES[cls]]
        if field.default is not attrs.NOTHING and data.draw(st.booleans(), label=field.name):
            continue
        kwargs[field.alias] = data.draw(st.sampled_from(seen), label=field.name)
    try:
        instance = cls(**kwargs)
    except (ValueError, TypeError):  # a combination the class's own checks refuse
        return
    generated = make_dict_unstructure_fn(cls, converter)
    ours = FieldUnstructurer.of(cls, converter)
    assert ours(instance) == generated(instance)
    assert list(ours(instance)) == list(generated(instance))
