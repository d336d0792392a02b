"""The file loader's rule for scalar fields, for config objects made in Python.

A config file's values go through the converter's strict scalar hooks (:mod:`._scalars`): an
``int`` field takes a whole number within 64 bits and not a boolean, a ``float`` field a
finite number, a ``str`` field text UTF-8 can encode, a ``bool`` field ``true``/``false``, a
``Literal`` field one of its choices. A config object made in Python (a builder, a class
called directly) skipped those hooks, so it could hold what no file can — ``seed="x"``,
``seed=2**80``, ``trace="yes"`` — and its run wrote a ``config.yaml`` that neither ``resume``
nor ``export`` could load back. The same rule checks those objects here:

- :func:`typed`, a field validator, checks one field when its object is made;
- :func:`type_issues` walks a whole pipeline's objects, which the pipeline checks when it is
  made, so every config class (a plugin's too) is held to the rule.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs

from ._issues import PathPart, describe
from ._scalars import structure_bool, structure_float, structure_int, structure_str
from ._validators import FieldTypeError, FieldValueError

__all__ = ["FieldTypeError", "FieldValueError", "type_issues", "type_problem", "typed"]

_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {
    int: structure_int,
    float: structure_float,
    str: structure_str,
    bool: structure_bool,
}


#: The resolved field types of each class checked so far.
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of the attrs class ``cls`` (none when they cannot be resolved).

    attrs resolves them in place, once per class (the structurer asks it to as well), so the
    annotations are evaluated once, not once for attrs and again here.
    """
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            attrs.resolve_types(cls)
            hints = {field.name: field.type for field in attrs.fields(cls)}
        except Exception:  # a plugin's annotation that does not resolve: not checked
            hints = {}
        _HINTS[cls] = hints
    return hints


def type_problem(value: Any, tp: Any) -> str | None:
    """Why a config file could not hold ``value`` in a field of type ``tp``, if it could not.

    Only the scalar types the converter reads strictly (``int``, ``float``, ``str``,
    ``bool``, ``None``, ``Literal``), unions of them and tuples of them are judged; any other
    type (a config class, a mapping, ``Any``, a callable) accepts every value here.
    """
    error = _error(value, tp)
    return None if error is None else str(error)


def _error(value: Any, tp: Any) -> TypeError | ValueError | None:
    """:func:`type_problem` as the exception the converter's hook raises (``TypeError``: the
    wrong type; ``ValueError``: the right type, a value out of bounds)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if value is None and len(members) < len(typing.get_args(tp)):
            return None
        errors = [_error(value, member) for member in members]
        if any(error is None for error in errors):
            return None
        # the bound a value of the right type breaks, else the first member's complaint
        return next((e for e in errors if isinstance(e, ValueError)), errors[0])
    if tp is type(None):
        return None if value is None else TypeError(f"expected null, got {describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return None
        listed = ", ".join(repr(c) for c in choices)
        return ValueError(f"must be one of {listed}, got {describe(value)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple) or len(args) != 2 or args[1] is not Ellipsis:
            return None
        if args[0] is Any:  # a category's values, say: judged by the field's own check
            return None
        for index, item in enumerate(value):
            error = _error(item, args[0])
            if error is not None:
                return type(error)(f"item {index}: {error}")
        return None
    hook = _HOOKS.get(tp)
    if hook is None:
        return None
    try:
        hook(value, tp)
    except (TypeError, ValueError) as exc:
        return exc
    return None


def typed(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A field validator: ``value`` is what a config file could hold in this field (its
    annotation, read as the converter reads a file; see :func:`type_problem`).

    Raises:
        TypeError: the value has the wrong type (``seed="x"``, ``seed=True``).
        ValueError: the value has the right type but no file can hold it (``seed=2**80``).
    """
    tp = _hints(type(inst)).get(attribute.name)
    error = None if tp is None else _error(value, tp)
    if error is not None:
        kind = FieldValueError if isinstance(error, ValueError) else FieldTypeError
        raise kind(str(error), attribute, str(tp), value)


def type_issues(
    obj: Any, path: tuple[PathPart, ...] = ()
) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """Each field of the config object ``obj``, and of the config objects it holds, whose
    value a config file could not hold: its path (from ``obj``) and the problem."""
    cls = type(obj)
    hints = _hints(cls)
    for field in attrs.fields(cls):
        if not field.init:
            continue
        value = getattr(obj, field.name)
        where = (*path, field.name)
        tp = hints.get(field.name)
        problem = None if tp is None else type_problem(value, tp)
        if problem is not None:
            yield where, problem
            continue
        yield from _held_issues(value, where)


def _held_issues(
    value: Any, path: tuple[PathPart, ...]
) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """The issues of the config objects ``value`` holds: itself, or the items of a tuple or
    mapping of them (a tuple whose first item is no config object holds none: a category's
    million values are not walked)."""
    if attrs.has(type(value)):
        yield from type_issues(value, path)
    elif isinstance(value, tuple | list) and value and attrs.has(type(value[0])):
        for index, item in enumerate(value):
            if attrs.has(type(item)):
                yield from type_issues(item, (*path, index))
    elif isinstance(value, dict) and value and attrs.has(type(next(iter(value.values())))):
        for key, item in value.items():
            if attrs.has(type(item)) and isinstance(key, str | int):
                yield from type_issues(item, (*path, key))
