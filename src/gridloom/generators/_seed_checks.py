"""Checks every seed table read from a file goes through, whether read whole or one parquet
row group at a time: unique UTF-8 column names, binary values decoded as UTF-8 text (or
refused), text that is valid UTF-8, and the columns cast to the seed's schema. Every problem
is a :class:`~gridloom.errors.ConfigError` on ``seed_dataset.path`` naming the data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import ConfigError

__all__ = [
    "PATH_FIELD",
    "as_text",
    "check_names",
    "check_text",
    "checked",
    "conformed",
    "problem",
    "selected",
    "text_type",
]

PATH_FIELD = "seed_dataset.path"


def problem(message: str, field: str = PATH_FIELD) -> ConfigError:
    """A configuration error on the seed dataset's ``field`` (its path by default)."""
    return ConfigError(message, field=field)


def text_type(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every binary type in it replaced by the matching text type."""
    if pa.types.is_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.large_string()
    if pa.types.is_binary_view(kind):
        return pa.string_view()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(text_type(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(text_type(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        value_field = kind.value_field.with_type(text_type(kind.value_type))
        return pa.list_(value_field, kind.list_size)
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(text_type(field.type)) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(text_type(kind.key_type)),
            kind.item_field.with_type(text_type(kind.item_type)),
        )
    if pa.types.is_dictionary(kind):
        return pa.dictionary(kind.index_type, text_type(kind.value_type), kind.ordered)
    return kind


def _first_bad_row(column: pa.ChunkedArray) -> str:
    for row, value in enumerate(column.to_pylist(), start=1):
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return f" (data row {row})"
    return ""


def as_text(table: pa.Table, where: str) -> pa.Table:
    """``table`` with binary values decoded as UTF-8 text: never stored as bytes."""
    for index, field in enumerate(table.schema):
        wanted = text_type(field.type)
        if wanted == field.type:
            continue
        column = table.column(index)
        try:
            decoded = column.cast(wanted)
        except pa.ArrowInvalid:
            raise problem(
                f"{where}: column {field.name!r} holds bytes that are not UTF-8 text"
                f"{_first_bad_row(column)}; gridloom columns hold text"
            ) from None
        except pa.ArrowException:
            raise problem(
                f"{where}: column {field.name!r} holds binary data ({field.type}), which"
                " gridloom cannot store as text"
            ) from None
        table = table.set_column(index, field.with_type(wanted), decoded)
    return table


def check_names(table: pa.Table, where: str) -> None:
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise problem(f"{where}: a column name is not UTF-8 text") from None
    if not names:
        raise problem(f"{where} has no columns")
    seen: set[str] = set()
    for name in names:
        if "\ufffd" in name:
            raise problem(f"{where}: the column name {name!r} is not UTF-8 text")
        if name in seen:
            raise problem(f"{where} has more than one column named {name!r}")
        seen.add(name)


def check_text(table: pa.Table, where: str) -> None:
    """Refuse text values that are not UTF-8 (pyarrow's JSON reader, and some parquet
    writers, let such bytes through into text columns)."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        offset = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as exc:
                found = re.search(r"string index (\d+)", str(exc))
                row = f" (data row {offset + int(found[1]) + 1})" if found else ""
                raise problem(
                    f"{where}: column {name!r} holds text that is not UTF-8{row}"
                ) from None
            offset += len(chunk)


def checked(path: Path, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, with read and schema errors raised as ``ConfigError``."""
    try:
        return read(*args, **kwargs)
    except (OSError, pa.ArrowException) as exc:
        raise problem(f"cannot read seed data {str(path)!r}: {exc}") from exc


def conformed(path: Path, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``: columns cast to its types, nulls for those it lacks."""
    columns = [
        checked(path, table.column(field.name).cast, field.type)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def selected(schema: pa.Schema, columns: Sequence[str]) -> tuple[str, ...]:
    """The seed columns used: ``columns``, checked against ``schema``, else all."""
    names = tuple(columns) or tuple(schema.names)
    unknown = [name for name in names if name not in schema.names]
    if unknown:
        raise ConfigError(
            f"columns {unknown} are not in the seed data (it has {schema.names})",
            field="seed_dataset.columns",
        )
    return names
