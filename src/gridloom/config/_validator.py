"""The base of the ``validate`` column kind's validator configurations.

A ``validate`` column checks another column's value with one *validator*: ``python``, ``sql``,
``json_schema``, ``regex``, ``callable``, ``http`` or a plugin's. Each validator kind is a
frozen attrs subclass of :class:`ValidatorConfig` whose ``kind`` class variable is its key; the
subclasses live with their validators (``gridloom.kinds.validate``) and are found through the
``gridloom.validators`` entry-point group. This base sits in the config package so the
builder's typed signature of ``validate`` can name it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .._attrs import frozen

__all__ = ["FILE_SCHEMA", "ValidatorConfig"]

#: Set when the validators load (``gridloom.kinds.validate``): the JSON Schema of a validator
#: in its file form, ``{kind, **parameters}``, made with the given schema builder. Empty
#: until then (the config schema then describes a validator as an object).
FILE_SCHEMA: list[Callable[[Any], dict[str, Any]]] = []


@frozen(kw_only=True)
class ValidatorConfig:
    """A validator of a `validate` column: one of its kinds' classes (`PythonCheck`,
    `SqlCheck`, `JsonSchemaCheck`, `RegexCheck`, `CallableCheck`, `HttpCheck` in
    `gridloom.kinds.validate`, or a plugin's). In a file its fields sit beside `target`, keyed
    by `kind`: `{kind: python, target: code, rules: [F]}`; see docs/validators.md."""

    #: The validator kind key (``python``, ``sql``, ...): set by every validator's class.
    kind: ClassVar[str] = ""
