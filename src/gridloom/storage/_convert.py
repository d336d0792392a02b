"""Turn a :class:`RowGroupData` into Arrow tables with the declared schemas."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gridloom.errors import StorageError, ValueTypeError

from ._types import DropRecord, RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "JSON_TEXT_KEY",
    "JSON_TEXT_METADATA",
    "check_row_group",
    "data_table",
    "dropped_schema",
    "dropped_table",
    "is_json_text",
    "parse_json_text",
]

#: Field metadata key marking a string column that holds JSON text (a structured or ``json``
#: column whose shape no Arrow type pins down); it is kept in the data files.
JSON_TEXT_KEY = b"gridloom.json"
#: The field metadata of such a column.
JSON_TEXT_METADATA: Mapping[bytes, bytes] = {JSON_TEXT_KEY: b"text"}


def is_json_text(field: pa.Field) -> bool:
    """Whether ``field`` holds JSON text (marked with :data:`JSON_TEXT_METADATA`)."""
    return bool(field.metadata) and JSON_TEXT_KEY in field.metadata


def parse_json_text(schema: pa.Schema, frame: Any) -> Any:
    """The pandas ``frame`` of a table with ``schema``, its JSON-text columns parsed into
    Python values (dicts, lists, scalars; a null stays ``None``), in place."""
    for field in schema:
        if is_json_text(field) and field.name in frame.columns:
            frame[field.name] = [
                None if text is None else json.loads(text) for text in frame[field.name]
            ]
    return frame


@functools.cache
def dropped_schema() -> pa.Schema:
    """Schema of the dropped-rows tables (``dropped/part-NNNNN.parquet``); built on first use,
    not at import (a preview imports pyarrow only once its first model request is out)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("row_id", pa.int64(), nullable=False),
            pa.field("column", pa.string(), nullable=False),
            pa.field("error_type", pa.string(), nullable=False),
            pa.field("message", pa.string(), nullable=False),
        ]
    )


# Everything pyarrow raises for a value that does not fit a type (its ArrowInvalid and
# ArrowTypeError are a ValueError and a TypeError).
_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError)


def check_row_group(data: RowGroupData, schema: pa.Schema) -> None:
    """Check that a row group is consistent with itself and with ``schema``.

    Raises:
        StorageError: naming the row group and the problem.
    """
    where = f"row group {data.index}"
    kept = len(data.row_ids)
    if kept > data.num_rows:
        raise StorageError(f"{where}: {kept} kept rows but the group has only {data.num_rows}")
    last = data.first_row_id + data.num_rows
    previous = data.first_row_id - 1
    for row_id in data.row_ids:
        if row_id <= previous or row_id >= last:
            raise StorageError(
                f"{where}: row_ids must be ascending and within "
                f"[{data.first_row_id}, {last}); got {row_id}"
            )
        previous = row_id
    unknown = sorted(set(data.columns) - set(schema.names))
    if unknown:
        raise StorageError(f"{where}: column(s) {unknown} are not in the declared schema")
    for name in schema.names:
        values = data.columns.get(name)
        if values is None:
            if kept:
                raise StorageError(f"{where}: no values for column {name!r}")
        elif len(values) != kept:
            raise StorageError(
                f"{where}: column {name!r} has {len(values)} values for {kept} kept rows"
            )


def _column_array(field: pa.Field, values: list[Any], data: RowGroupData) -> Any:
    import pyarrow as pa

    name, type_ = field.name, field.type
    try:
        array = pa.array(values, type=type_)
    except _CONVERSION_ERRORS as exc:
        # Find the first offending value so that the message points at a cell.
        for row_id, value in zip(data.row_ids, values, strict=True):
            try:
                pa.array([value], type=type_)
            except _CONVERSION_ERRORS:
                shown = repr(value)
                if len(shown) > 80:
                    shown = shown[:77] + "..."
                raise ValueTypeError(
                    f"column {name!r}, row {row_id}: value {shown} of type "
                    f"{type(value).__name__} cannot be stored as {type_}: {exc}"
                ) from exc
        raise ValueTypeError(
            f"column {name!r}, row group {data.index}: values cannot be stored as {type_}: {exc}"
        ) from exc
    if not field.nullable and array.null_count:
        null_row = next((r for r, v in zip(data.row_ids, values, strict=True) if v is None), None)
        raise ValueTypeError(f"column {name!r}, row {null_row}: null in a non-nullable column")
    return array


def data_table(data: RowGroupData, schema: pa.Schema) -> pa.Table:
    """Build the data table of a row group, exactly with ``schema``.

    Raises:
        StorageError: the row group is inconsistent (see :func:`check_row_group`).
        ValueTypeError: a value does not fit its column's type; names the column and row.
    """
    import pyarrow as pa

    check_row_group(data, schema)
    arrays = [_column_array(field, data.columns.get(field.name, []), data) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def dropped_table(drops: list[DropRecord]) -> pa.Table:
    """Build the dropped-rows table of a row group (possibly empty)."""
    import pyarrow as pa

    return pa.Table.from_pydict(
        {
            "row_id": [d.row_id for d in drops],
            "column": [d.column for d in drops],
            "error_type": [d.error_type for d in drops],
            "message": [d.message for d in drops],
        },
        schema=dropped_schema(),
    )
