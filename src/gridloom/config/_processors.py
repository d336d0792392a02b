"""Processors: steps that reshape each finished row group before it is written.

A pipeline's ``processors:`` list runs, in order, on every row group once all its cells are
done, just before the row group is written (so only that group's rows are in memory). Each
processor is a one-key mapping naming its kind::

    processors:
      - {drop_columns: [scratch, notes]}
      - {rename: {question: prompt}}
      - schema_transform:
          template:
            messages:
              - {role: user, content: "{{ prompt }}"}
              - {role: assistant, content: "{{ answer }}"}

What can be checked without the pipeline's columns is checked here, at load; column
references, template syntax and the output types are checked when the pipeline is validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ._validators import to_tuple

__all__ = [
    "PROCESSOR_KINDS",
    "DropColumnsProcessor",
    "ProcessorConfig",
    "RenameProcessor",
    "SchemaTransformProcessor",
]

#: How deep a ``schema_transform`` template may nest lists and mappings.
MAX_TEMPLATE_DEPTH = 32


def _names(_inst: Any, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must name at least one column")
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{attribute.name} must hold column names, got {name!r}")
        if name in seen:
            raise ValueError(f"{attribute.name} names {name!r} twice")
        seen.add(name)


def _renames(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping) or not value:
        raise ValueError("rename must map at least one old column name to a new one")
    targets: dict[str, str] = {}
    for old, new in value.items():
        if not isinstance(old, str) or not old or not isinstance(new, str) or not new:
            raise TypeError(f"rename maps names to names, got {old!r}: {new!r}")
        if new in targets:
            raise ValueError(
                f"rename gives two columns the name {new!r}: {targets[new]!r}, {old!r}"
            )
        targets[new] = old


def _as_lists(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, all the way down (what a config file holds)."""
    if isinstance(value, Mapping):
        return {key: _as_lists(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_lists(item) for item in value]
    return value


def _template(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            "template must be a mapping of output column names to values (strings are Jinja"
            " templates), e.g. {messages: [{role: user, content: '{{ question }}'}]}"
        )
    _check_json_like(value, "", 0)


def _check_json_like(value: Any, where: str, depth: int) -> None:
    if depth > MAX_TEMPLATE_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_TEMPLATE_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"{where}: keys must be non-empty strings, got {key!r}")
            _check_json_like(item, f"{where}.{key}" if where else key, depth + 1)
    elif isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"{where}: an empty list has no item type; give at least one item")
        for i, item in enumerate(value):
            _check_json_like(item, f"{where}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, str | bool | int | float):
        raise TypeError(
            f"{where}: expected a string, number, boolean, list or mapping, got {value!r}"
        )


@frozen(kw_only=True)
class ProcessorConfig:
    """Base of the processor kinds: ``kind`` is the key a processor is written under;
    ``shorthand`` the one field whose value that key holds directly (``None``: the key holds
    a mapping of parameters)."""

    kind: ClassVar[str] = ""
    shorthand: ClassVar[str | None] = None
    #: The key always holds the shorthand field's value.
    shorthand_only: ClassVar[bool] = True


@frozen(kw_only=True)
class DropColumnsProcessor(ProcessorConfig):
    """``{drop_columns: [a, b]}``: remove these columns from the output.

    Attributes:
        columns: names of columns present at this point of the processor list (generated
            columns, or names given by an earlier processor).
    """

    kind: ClassVar[str] = "drop_columns"
    shorthand: ClassVar[str | None] = "columns"
    columns: tuple[str, ...] = attrs.field(converter=to_tuple, validator=_names)


@frozen(kw_only=True)
class RenameProcessor(ProcessorConfig):
    """``{rename: {old: new}}``: rename output columns.

    Attributes:
        mapping: old name to new name; every old name must exist at this point, and no new
            name may clash with another column's name.
    """

    kind: ClassVar[str] = "rename"
    shorthand: ClassVar[str | None] = "mapping"
    mapping: dict[str, str] = attrs.field(validator=_renames)


@frozen(kw_only=True)
class SchemaTransformProcessor(ProcessorConfig):
    """``{schema_transform: {template: {...}}}``: build a new record per row, which replaces
    the row's columns (each top-level key of ``template`` is an output column).

    The template is JSON-like data whose strings are Jinja templates rendered over the row,
    in the run's sandbox and under its ``template_*`` limits. A string that is exactly one
    ``{{ path }}`` — a column, optionally followed by constant steps such as ``.field``,
    ``['key']`` or ``[0]`` into a struct or list column — keeps the value itself and its type:
    ``"{{ tags }}"`` is the list, ``"{{ n }}"`` the integer, not their text. Other strings
    render to text; numbers, booleans and nulls are kept as written; lists take the one type
    their items share (structs merge their fields). Columns stored as JSON text (``dtype:
    json``) are text here too.

    The Arrow type of every output column is derived when the pipeline is validated, from
    the template's shape and the declared types of the columns it names, so all row groups
    share one schema. A row whose template fails to render, or whose record does not fit
    that schema, is dropped like a row whose cell failed: its drop record names
    ``processors[i].schema_transform`` and the reason; the other rows go on.

    Attributes:
        template: mapping of output column names to values.
    """

    kind: ClassVar[str] = "schema_transform"
    template: dict[str, Any] = attrs.field(converter=_as_lists, validator=_template)


#: Processor kinds by the key they are written under.
PROCESSOR_KINDS: dict[str, type[ProcessorConfig]] = {
    cls.kind: cls for cls in (DropColumnsProcessor, RenameProcessor, SchemaTransformProcessor)
}
