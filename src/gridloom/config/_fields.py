"""Structuring a config class field by field, without generating code for it.

cattrs structures an attrs class with a function it writes as Python source for that class
and compiles (``cattrs.gen.make_dict_structure_fn``). For the fifteen config classes of the
quickstart, that source is about 90 kB, and writing and compiling it was 5 % of all the
instructions of a ``gridloom preview`` (callgrind), far more than structuring the config
itself. A config is structured once, so :class:`FieldStructurer` does the same work by
walking the class's fields, and raises what the generated function raises, in the same order
and with the same notes (cattrs' detailed validation, which the config's error report reads):

- each field ``__init__`` takes, in order: a field without a default is read from the mapping
  (a missing key is the ``KeyError`` of reading it), one with a default only when its key is
  there; the value goes through the field type's structure hook (none for a field whose attrs
  converter cattrs leaves to attrs), and a failure gets the note ``Structuring class <qualified
  name> @ attribute <field>`` and is collected;
- keys that are no field's are one :class:`~cattrs.errors.ForbiddenExtraKeysError`, collected
  last;
- anything collected is raised as one :class:`~cattrs.errors.ClassValidationError` ("While
  structuring <name>"); else the class is made, and its own failure (a validator's) is raised
  the same way.

The hooks are looked up as cattrs looks them up, once per class, on first use. A class this
does not cover (a generic one, a ``Final`` or ``Annotated`` field) gets cattrs' generated
function instead. ``tests/test_config_fields_structurer.py`` holds both to the same results.

The other way, :class:`FieldUnstructurer` does what cattrs' generated unstructure function
does (a run writes its config once, to ``config.yaml`` and its hash): each ``__init__`` field,
in order, under its name, through its type's unstructure hook (none where that hook returns the
value as it is). Writing and compiling those functions was most of a run's first dump, some
10 ms before its first request.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    StructureHandlerNotFoundError,
)
from cattrs.fns import identity, raise_error
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from .._attrs import frozen

__all__ = [
    "FieldStructurer",
    "FieldUnstructurer",
    "field_unstructurers",
    "structurer_for",
    "unstructurer_for",
]

_Hook = Callable[[Any, Any], Any]
_Unhook = Callable[[Any], Any]


@frozen
class _Field:
    name: str
    #: The keyword of ``__init__`` (the field's alias).
    keyword: str
    type: Any
    hook: _Hook | None
    required: bool


def _hook(field: attrs.Attribute[Any], converter: Converter) -> _Hook | None:
    """The hook cattrs' generated function would call for ``field`` (``None``: the value is
    passed as it is, for attrs' converter to handle)."""
    if field.type is None:
        return converter.structure
    try:
        hook = converter.get_structure_hook(field.type, cache_result=False)
    except StructureHandlerNotFoundError:
        if field.converter is None:
            raise
        return None
    except RecursionError:  # a class holding itself: looked up when used
        return converter.structure
    if field.converter is not None and hook == raise_error:
        return None
    return hook


def _covered(cls: type[Any]) -> bool:
    """Whether :class:`FieldStructurer` does for ``cls`` what cattrs' generated function does."""
    if getattr(cls, "__parameters__", ()):
        return False
    for field in attrs.fields(cls):
        origin = get_origin(field.type)
        if field.type is typing.Final or origin is typing.Final or origin is typing.Annotated:
            return False
    return True


@frozen
class FieldStructurer:
    """Structures a mapping into the attrs class ``cls``, field by field (see the module)."""

    cls: type[Any]
    fields: tuple[_Field, ...]
    keys: frozenset[str]

    @classmethod
    def of(cls, config_class: type[Any], converter: Converter) -> FieldStructurer:
        fields = tuple(
            _Field(
                name=field.name,
                keyword=field.alias,
                type=field.type,
                hook=_hook(field, converter),
                required=field.default is attrs.NOTHING,
            )
            for field in attrs.fields(config_class)
            if field.init
        )
        return cls(config_class, fields, frozenset(field.name for field in fields))

    def __call__(self, obj: Mapping[str, Any], _: Any = None) -> Any:
        values: dict[str, Any] = {}
        errors: list[Exception] = []
        for field in self.fields:
            if not field.required and field.name not in obj:
                continue
            try:
                value = obj[field.name]
                values[field.keyword] = (
                    value if field.hook is None else field.hook(value, field.type)
                )
            except Exception as exc:
                note = AttributeValidationNote(
                    f"Structuring class {self.cls.__qualname__} @ attribute {field.name}",
                    field.name,
                    field.type,
                )
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        unknown = set(obj.keys()) - self.keys
        if unknown:
            errors.append(ForbiddenExtraKeysError("", self.cls, unknown))
        if errors:
            raise ClassValidationError(f"While structuring {self.cls.__name__}", errors, self.cls)
        try:
            return self.cls(**values)
        except Exception as exc:  # raised, as cattrs' function does, with exc as its context
            raise ClassValidationError(f"While structuring {self.cls.__name__}", [exc], self.cls)  # noqa: B904


def structurer_for(cls: type[Any], converter: Converter) -> _Hook:
    """The function structuring a mapping into ``cls`` that ``converter`` uses: a
    :class:`FieldStructurer`, or cattrs' generated one for a class it does not cover (both
    forbid unknown keys and report every problem)."""
    attrs.resolve_types(cls)
    if _covered(cls):
        return FieldStructurer.of(cls, converter)
    hook: _Hook = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )
    return hook


@frozen
class FieldUnstructurer:
    """Unstructures an instance of an attrs class into a dict, field by field (see the module):
    ``fields`` holds each ``__init__`` field's name and hook (``None``: the value as it is)."""

    fields: tuple[tuple[str, _Unhook | None], ...]

    @classmethod
    def of(cls, config_class: type[Any], converter: Converter) -> FieldUnstructurer:
        return cls(
            tuple(
                (field.name, _unhook(field, converter))
                for field in attrs.fields(config_class)
                if field.init
            )
        )

    def __call__(self, obj: Any) -> dict[str, Any]:
        return {
            name: getattr(obj, name) if hook is None else hook(getattr(obj, name))
            for name, hook in self.fields
        }


def _unhook(field: attrs.Attribute[Any], converter: Converter) -> _Unhook | None:
    """The hook cattrs' generated unstructure function would call for ``field``."""
    if field.type is None:
        return converter.unstructure
    try:
        hook = converter.get_unstructure_hook(field.type, cache_result=False)
    except RecursionError:  # a class holding itself: looked up when used
        return converter.unstructure
    return None if hook == identity else hook


def unstructurer_for(cls: type[Any], converter: Converter) -> _Unhook:
    """The function unstructuring an instance of ``cls`` that ``converter`` uses: a
    :class:`FieldUnstructurer`, or cattrs' generated one for a class it does not cover."""
    attrs.resolve_types(cls)
    if _covered(cls):
        return FieldUnstructurer.of(cls, converter)
    hook: _Unhook = make_dict_unstructure_fn(cls, converter)
    return hook


def field_unstructurers(converter: Converter) -> Callable[[type[Any]], _Unhook]:
    """``converter``'s unstructure hook factory for config classes: the hook of a class looks
    up the hooks of its fields (and so of the classes they hold) when a value of it is first
    unstructured, not when a class holding one is."""

    def hook_of(cls: type[Any]) -> _Unhook:
        made: list[_Unhook] = []

        def unstructure_attrs(obj: Any) -> Any:
            if not made:  # two threads may both make it: the same function either way
                made.append(unstructurer_for(cls, converter))
            return made[0](obj)

        return unstructure_attrs

    return hook_of
