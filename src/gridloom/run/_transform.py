"""``schema_transform``: a JSON-like template whose strings are Jinja templates, compiled once
against the columns it reads, then rendered per row into a new record.

Compiling derives the Arrow type of every output column from the template's shape and the
declared types of the columns it names (:func:`compile_transform`), so every row group is
written with the same schema. Leaves:

* a string that is exactly one ``{{ path }}`` — a column, optionally followed by constant
  ``.field`` / ``['key']`` / ``[index]`` steps — keeps the value itself and its declared type
  (a list stays a list, an integer an integer); the steps only read dicts and lists, no
  template runs;
* any other string is a template rendered to text (type ``string``) in the run's sandbox,
  under its limits; a column stored as JSON text (marked in its field's metadata: a
  ``dtype: json`` column, or a structured one whose schema is too open for a native type)
  is parsed for it, so ``{{ answer.reply }}`` reads the field;
* numbers, booleans and nulls are constants of their own type;
* lists take the one type all their items unify to (structs unify field by field); mappings
  are structs.

A row whose template fails to render, whose path reads past its value, or whose record does
not fit the derived type is reported as a failure of that row (the processor layer drops it
with the reason); the other rows go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2 import nodes

from ..config._issues import suggest
from ..errors import ConfigError, TemplateError
from ..generators._jinja import (
    CompiledTemplate,
    TemplateLimits,
    compile_template,
    parse_template,
    template_variables,
)
from ..storage._convert import is_json_text

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CompiledTransform", "RowFailures", "compile_transform"]

#: Failures of a processor step: position of the row in the group's kept rows → (error type,
#: message).
RowFailures = dict[int, tuple[str, str]]

# What a value that does not fit a type raises: pyarrow's ArrowInvalid and ArrowTypeError are
# a ValueError and a TypeError (named apart, pyarrow would be imported with this module).
_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError)


class _PathFailure(Exception):
    """A path read past its value (a missing index, a step into a scalar)."""


class _Leaf:
    """How one node of the template becomes a value, and its type."""

    type: pa.DataType

    def value(self, row: Mapping[str, Any]) -> Any:
        raise NotImplementedError


class _Constant(_Leaf):
    def __init__(self, value: Any) -> None:
        import pyarrow as pa

        self._value = value
        if isinstance(value, bool):
            self.type = pa.bool_()
        elif isinstance(value, int):
            self.type = pa.int64()
        elif isinstance(value, float):
            self.type = pa.float64()
        else:
            self.type = pa.null()

    def value(self, row: Mapping[str, Any]) -> Any:
        return self._value


class _Path(_Leaf):
    """``{{ column.field[0] }}``: the value itself."""

    def __init__(self, column: str, steps: tuple[str | int, ...], type_: pa.DataType) -> None:
        self._column = column
        self._steps = steps
        self.type = type_

    def value(self, row: Mapping[str, Any]) -> Any:
        value = row[self._column]
        for step in self._steps:
            if value is None:
                return None
            if isinstance(step, int):
                if not isinstance(value, list | tuple):
                    raise _PathFailure(
                        f"{self._column}: cannot take [{step}] of {type(value).__name__}"
                    )
                if not -len(value) <= step < len(value):
                    raise _PathFailure(
                        f"{self._column}: index {step} out of range ({len(value)} items)"
                    )
                value = value[step]
            elif isinstance(value, Mapping):
                value = value.get(step)
            else:
                raise _PathFailure(f"{self._column}: cannot read .{step} of {type(value).__name__}")
        return value


class _Text(_Leaf):
    def __init__(self, template: CompiledTemplate, parse: tuple[str, ...] = ()) -> None:
        import pyarrow as pa

        self.type = pa.string()
        self._template = template
        self._parse = parse  # columns stored as JSON text: the template sees them parsed

    def value(self, row: Mapping[str, Any]) -> Any:
        if self._parse:
            row = dict(row)
            for name in self._parse:
                if isinstance(text := row.get(name), str):
                    row[name] = json.loads(text)
        return self._template.render(row)


class _List(_Leaf):
    def __init__(self, items: list[_Leaf], type_: pa.DataType) -> None:
        self._items = items
        self.type = type_

    def value(self, row: Mapping[str, Any]) -> Any:
        return [item.value(row) for item in self._items]


class _Struct(_Leaf):
    def __init__(self, fields: dict[str, _Leaf]) -> None:
        import pyarrow as pa

        self._fields = fields
        self.type = pa.struct([pa.field(k, leaf.type) for k, leaf in fields.items()])

    def value(self, row: Mapping[str, Any]) -> Any:
        return {key: leaf.value(row) for key, leaf in self._fields.items()}


def _unify(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The one type values of types ``a`` and ``b`` both fit, if any."""
    import pyarrow as pa

    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    numeric = {pa.int64(), pa.float64()}
    if a in numeric and b in numeric:
        return pa.float64()
    if pa.types.is_list(a) and pa.types.is_list(b):
        item = _unify(a.value_type, b.value_type)
        return None if item is None else pa.list_(item)
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        merged: dict[str, pa.DataType] = {f.name: f.type for f in a}
        for f in b:
            if f.name in merged:
                both = _unify(merged[f.name], f.type)
                if both is None:
                    return None
                merged[f.name] = both
            else:
                merged[f.name] = f.type
        return pa.struct([pa.field(k, t) for k, t in merged.items()])
    return None


def _single_expression(source: str) -> nodes.Expr | None:
    """The expression of a template that is exactly one ``{{ ... }}``, else ``None``."""
    try:
        tree = parse_template(source.strip())
    except jinja2.TemplateSyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = tree.body[0].nodes
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    expr: nodes.Expr = parts[0]
    return expr


def _path_of(expr: nodes.Expr) -> tuple[str, tuple[str | int, ...]] | None:
    """``a.b['c'][0]`` → ``("a", ("b", "c", 0))``; ``None`` for any other expression."""
    steps: list[str | int] = []
    while True:
        if isinstance(expr, nodes.Name):
            return expr.name, tuple(reversed(steps))
        if isinstance(expr, nodes.Getattr) and not expr.attr.startswith("_"):
            steps.append(expr.attr)
            expr = expr.node
        elif (
            isinstance(expr, nodes.Getitem)
            and isinstance(expr.arg, nodes.Const)
            and isinstance(expr.arg.value, str | int)
            and not isinstance(expr.arg.value, bool)
            and not str(expr.arg.value).startswith("_")
        ):
            steps.append(expr.arg.value)
            expr = expr.node
        else:
            return None


def _step_type(type_: pa.DataType, step: str | int) -> pa.DataType | None:
    import pyarrow as pa

    if isinstance(step, int):
        return (
            type_.value_type if pa.types.is_list(type_) or pa.types.is_large_list(type_) else None
        )
    if pa.types.is_struct(type_):
        index = type_.get_field_index(step)
        return None if index < 0 else type_.field(index).type
    return None


class _Compiler:
    def __init__(self, schema: pa.Schema, where: str, limits: TemplateLimits) -> None:
        self._schema = schema
        self._where = where
        self._limits = limits
        self._json_text = frozenset(f.name for f in schema if is_json_text(f))

    def _error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, field=f"{self._where}.{path}")

    def _unknown(self, name: str, path: str) -> ConfigError:
        guess = suggest(name, self._schema.names)
        hint = (
            f"; did you mean {guess!r}?"
            if guess
            else f" (columns: {', '.join(self._schema.names)})"
        )
        return self._error(path, f"references unknown column {name!r}{hint}")

    def leaf(self, value: Any, path: str) -> _Leaf:
        import pyarrow as pa

        if isinstance(value, Mapping):
            return _Struct({key: self.leaf(item, f"{path}.{key}") for key, item in value.items()})
        if isinstance(value, list | tuple):
            items = [self.leaf(item, f"{path}[{i}]") for i, item in enumerate(value)]
            type_: pa.DataType = items[0].type
            for i, item in enumerate(items[1:], 1):
                both = _unify(type_, item.type)
                if both is None:
                    raise self._error(
                        f"{path}[{i}]",
                        f"list items must share one type: this item is {item.type}, the ones"
                        f" before it {type_}",
                    )
                type_ = both
            return _List(items, pa.list_(type_))
        if isinstance(value, str):
            return self._string(value, path)
        return _Constant(value)

    def _string(self, source: str, path: str) -> _Leaf:
        expr = _single_expression(source)
        found = _path_of(expr) if expr is not None else None
        if found is not None:
            column, steps = found
            if column not in self._schema.names:
                raise self._unknown(column, path)
            type_: pa.DataType | None = self._schema.field(column).type
            for step in steps:
                assert type_ is not None
                type_ = _step_type(type_, step)
                if type_ is None:
                    break
            if type_ is not None:
                return _Path(column, steps, type_)
        try:
            names = template_variables(source, columns=self._schema.names)
        except jinja2.TemplateSyntaxError as exc:
            raise self._error(
                path, f"template does not parse: {exc.message} (line {exc.lineno})"
            ) from None
        for name in sorted(names):
            if name not in self._schema.names:
                raise self._unknown(name, path)
        try:
            template = compile_template(source, column=self._where, field=path, limits=self._limits)
        except TemplateError as exc:
            raise self._error(path, exc.message) from None
        return _Text(template, tuple(sorted(names & self._json_text)))


class CompiledTransform:
    """A compiled ``schema_transform``: :attr:`schema` is its output; :meth:`apply` builds it
    for a row group's rows."""

    def __init__(self, fields: dict[str, _Leaf], where: str) -> None:
        import pyarrow as pa

        self._fields = fields
        self._where = where
        self.schema = pa.schema([pa.field(key, leaf.type) for key, leaf in fields.items()])

    def apply(
        self, columns: Mapping[str, Sequence[Any]], rows: int
    ) -> tuple[dict[str, list[Any]], RowFailures]:
        """The new columns for ``rows`` rows of ``columns`` (failed rows hold ``None``), and
        the rows that failed."""
        failures: RowFailures = {}
        out: dict[str, list[Any]] = {key: [] for key in self._fields}
        names = list(columns)
        for i in range(rows):
            row = {name: columns[name][i] for name in names}
            record: dict[str, Any] = {}
            try:
                for key, leaf in self._fields.items():
                    record[key] = leaf.value(row)
            except Exception as exc:  # one row's template failing fails that row only
                failures[i] = (type(exc).__name__, f"{self._where}: {exc}")
                record = dict.fromkeys(self._fields)
            for key, value in record.items():
                out[key].append(value)
        for field in self.schema:
            self._check_types(field, out[field.name], failures)
        for i in failures:
            for values in out.values():
                values[i] = None
        return out, failures

    def _check_types(self, field: pa.Field, values: list[Any], failures: RowFailures) -> None:
        import pyarrow as pa

        try:
            pa.array(values, type=field.type)
            return
        except _CONVERSION_ERRORS:
            pass
        for i, value in enumerate(values):
            if i in failures:
                continue
            try:
                pa.array([value], type=field.type)
            except _CONVERSION_ERRORS as exc:
                shown = repr(value)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                failures[i] = (
                    "ValueTypeError",
                    f"{self._where}.template.{field.name}: {shown} does not fit"
                    f" {field.type}: {exc}",
                )
                values[i] = None


def compile_transform(
    template: Mapping[str, Any], schema: pa.Schema, *, where: str, limits: TemplateLimits
) -> CompiledTransform:
    """Compile a ``schema_transform`` template over columns of ``schema``.

    Args:
        template: output column name → JSON-like value whose strings are templates.
        schema: the columns at this point of the processor list.
        where: the processor, as named in messages (``processors[1].schema_transform``).
        limits: what one render may use (the run's ``template_*`` settings).

    Raises:
        ConfigError: naming the processor and the path in the template: an unknown column, a
            template that does not parse or uses what templates may not, list items of
            different types.
    """
    compiler = _Compiler(schema, where, limits)
    fields = {key: compiler.leaf(value, f"template.{key}") for key, value in template.items()}
    return CompiledTransform(fields, where)
