"""Native Arrow types for JSON values whose shape a JSON Schema fixes.

A structured column (``llm_structured``, ``llm_judge``) holds a parsed JSON value that its
schema validated. :func:`arrow_type_for_schema` derives the Arrow type that value is stored as
when the schema pins its shape down ("closed enough"); :func:`to_arrow_value` maps a value
onto that type. A schema it cannot derive a type from keeps the value as JSON text, with the
field marked by :data:`~gridloom.storage.JSON_TEXT_METADATA`.

The mapping:

* ``object`` with ``properties`` and ``additionalProperties: false`` — or not mentioning
  ``additionalProperties``, which gridloom reads as closed, as it does when it checks the
  fields templates read (``additionalProperties: true`` or a schema opens it) → ``struct``,
  one field per property in declaration order, nullable unless the property is ``required``
  and its schema rules ``null`` out. Keys outside ``properties`` are left out of the stored
  struct (keep the answer's text with ``keep_raw`` to have them).
* ``array`` with an ``items`` schema → ``list``; its items are nullable when that schema
  allows ``null``.
* ``string`` / ``integer`` / ``number`` / ``boolean`` / ``null`` → ``string`` / ``int64`` /
  ``float64`` / ``bool`` / ``null``; ``integer`` beside ``number`` is ``float64``.
* ``enum`` or ``const`` whose values are all of one JSON type (``null`` aside) → that type.
* ``anyOf`` / ``oneOf`` / a ``type`` list whose branches, ``null`` aside, share one type →
  that type (nullable when a branch is ``null``).
* ``$ref`` to a place in the same schema (``#/...``) → the type there; a reference that
  leads back to itself (a recursive schema), or more than :data:`MAX_REF_DEPTH` hops deep,
  derives nothing.

Anything else — open objects, objects without properties, ``patternProperties``, tuples
(``prefixItems`` or an ``items`` list), ``allOf``/``not``/``if``, mixed types, boolean
schemas — derives nothing: the value is stored as JSON text.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from ..storage._convert import JSON_TEXT_METADATA
from ._dtypes import short_repr

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MAX_REF_DEPTH",
    "JsonArrowError",
    "Storage",
    "arrow_type_for_schema",
    "storage_for_schema",
    "to_arrow_value",
]

#: How many ``$ref`` hops one path through a schema may take.
MAX_REF_DEPTH = 32

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

#: Keywords that make a schema's shape more than one Arrow type can say.
_OPEN_KEYWORDS = frozenset(
    {
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentSchemas",
        "dependencies",
        "$dynamicRef",
        "$recursiveRef",
    }
)

#: The JSON Schema scalar types.
_SCALAR_NAMES = ("string", "integer", "number", "boolean", "null")


@functools.cache
def _scalars() -> dict[str, pa.DataType]:
    """The Arrow type of each JSON Schema scalar type (built on first use, not at import)."""
    import pyarrow as pa

    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "boolean": pa.bool_(),
        "null": pa.null(),
    }


class JsonArrowError(ValueError):
    """A value does not fit the Arrow type derived from its schema; the message names the
    field path."""


class _Open(Exception):
    """Internal: the schema derives no type."""


#: A derived type and whether ``null`` is allowed where it is.
_Typed: TypeAlias = "tuple[pa.DataType, bool]"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise _Open  # objects and arrays as enum/const values


def _merge(types: list[_Typed]) -> _Typed:
    """One type for values that may be any of ``types`` (``null`` makes it nullable)."""
    import pyarrow as pa

    nullable = any(t[1] or pa.types.is_null(t[0]) for t in types)
    present = [t[0] for t in types if not pa.types.is_null(t[0])]
    if not present:
        return pa.null(), True
    first = present[0]
    if all(t.equals(first) for t in present):
        return first, nullable
    if all(pa.types.is_int64(t) or pa.types.is_float64(t) for t in present):
        return pa.float64(), nullable
    raise _Open


class _Deriver:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise _Open  # another document
        node: Any = self._root
        for raw in ref[1:].split("/")[1:] if ref != "#" else []:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise _Open
        return node

    def derive(self, schema: Any, refs: tuple[str, ...] = ()) -> _Typed:
        if not isinstance(schema, Mapping) or _OPEN_KEYWORDS & schema.keys():
            raise _Open
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(ref, str) or ref in refs or len(refs) >= MAX_REF_DEPTH:
                raise _Open
            target = self.derive(self._resolve(ref), (*refs, ref))
            rest = {k: v for k, v in schema.items() if k not in ("$ref", "$defs", "definitions")}
            return target if not rest.keys() - _ANNOTATIONS else self._both(target, rest, refs)
        if "type" in schema:
            if "anyOf" in schema or "oneOf" in schema:
                raise _Open  # branches may add fields or narrow the type: left as text
            return self._typed(schema, refs)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = schema[key]
                if not isinstance(branches, list) or not branches:
                    raise _Open
                return _merge([self.derive(branch, refs) for branch in branches])
        if "const" in schema:
            kind = _json_kind(schema["const"])
            return _scalars()[kind], kind == "null"
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise _Open
            return _merge([(_scalars()[_json_kind(v)], False) for v in values])
        raise _Open  # a schema that lets any value in

    def _both(self, target: _Typed, rest: Mapping[str, Any], refs: tuple[str, ...]) -> _Typed:
        """``$ref`` beside other keywords: both must agree on one type."""
        other = self.derive(rest, refs)
        if not other[0].equals(target[0]):
            raise _Open
        return target[0], target[1] and other[1]

    def _typed(self, schema: Mapping[str, Any], refs: tuple[str, ...]) -> _Typed:
        import pyarrow as pa

        kinds = schema["type"]
        names = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(names, list) or not names or not all(n in _TYPE_NAMES for n in names):
            raise _Open
        nullable = "null" in names
        present = [n for n in names if n != "null"]
        if not present:
            return pa.null(), True
        if len(present) == 1 and present[0] == "object":
            return self._object(schema, refs), nullable
        if len(present) == 1 and present[0] == "array":
            return self._array(schema, refs), nullable
        if "object" in present or "array" in present:
            raise _Open
        merged = _merge([(_scalars()[n], False) for n in present])
        return merged[0], nullable

    def _object(self, schema: Mapping[str, Any], refs: tuple[str, ...]) -> pa.DataType:
        import pyarrow as pa

        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise _Open
        if schema.get("additionalProperties", False) is not False:
            raise _Open
        required = schema.get("required", [])
        required = set(required) if isinstance(required, list) else set()
        fields = []
        for name, sub in properties.items():
            type_, nullable = self.derive(sub, refs)
            fields.append(pa.field(str(name), type_, nullable=nullable or name not in required))
        return pa.struct(fields)

    def _array(self, schema: Mapping[str, Any], refs: tuple[str, ...]) -> pa.DataType:
        import pyarrow as pa

        items = schema.get("items")
        if not isinstance(items, Mapping):
            raise _Open  # no items schema, or a tuple
        type_, nullable = self.derive(items, refs)
        return pa.list_(pa.field("item", type_, nullable=nullable))


_TYPE_NAMES = frozenset({*_SCALAR_NAMES, "object", "array"})
#: Keywords beside ``$ref`` that do not change the value's shape.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "description", "title", "examples"})


def arrow_type_for_schema(schema: Any) -> pa.DataType | None:
    """The Arrow type a value valid against the JSON Schema ``schema`` is stored as, or
    ``None`` when the schema is not closed enough to pin one down (see the module
    docstring)."""
    if not isinstance(schema, Mapping):
        return None
    try:
        type_, _nullable = _Deriver(schema).derive(schema)
    except _Open:
        return None
    return type_


def _fail(path: str, value: Any, type_: pa.DataType, why: str = "") -> JsonArrowError:
    reason = f" ({why})" if why else ""
    return JsonArrowError(f"{path}: cannot store {short_repr(value)} as {type_}{reason}")


def to_arrow_value(value: Any, type_: pa.DataType, path: str = "value") -> Any:
    """``value`` (parsed JSON) as a Python value that Arrow stores as ``type_``: structs as
    dicts with every field (a missing one ``None``; keys outside the struct left out), whole
    floats in integer fields as ints, ints in float fields as floats.

    Raises:
        JsonArrowError: the value does not fit; the message names the field ``path``.
    """
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_struct(type_):
        if not isinstance(value, Mapping):
            raise _fail(path, value, type_, "not an object")
        out: dict[str, Any] = {}
        for field in type_:
            where = f"{path}.{field.name}"
            item = to_arrow_value(value.get(field.name), field.type, where)
            if item is None and not field.nullable:
                raise _fail(where, None, field.type, "the field is required")
            out[field.name] = item
        return out
    if pa.types.is_list(type_):
        if not isinstance(value, list | tuple):
            raise _fail(path, value, type_, "not an array")
        field = type_.value_field
        items = []
        for index, item in enumerate(value):
            converted = to_arrow_value(item, field.type, f"{path}[{index}]")
            if converted is None and not field.nullable:
                raise _fail(f"{path}[{index}]", None, field.type, "null item")
            items.append(converted)
        return items
    return _scalar(value, type_, path)


def _scalar(value: Any, type_: pa.DataType, path: str) -> Any:
    import pyarrow as pa

    if pa.types.is_string(type_):
        if isinstance(value, str):
            return value
    elif pa.types.is_boolean(type_):
        if isinstance(value, bool):
            return value
    elif pa.types.is_int64(type_):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
            raise _fail(path, value, type_, "outside the 64-bit integer range")
    elif pa.types.is_float64(type_):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            if number:
                return float(value)
        except OverflowError:
            raise _fail(path, value, type_, "too large for a float") from None
    raise _fail(path, value, type_)


#: How a structured column is stored: its Arrow type, the encoder from the parsed value to
#: the stored one, and the field's metadata.
Storage: TypeAlias = "tuple[pa.DataType, Callable[[Any], Any], Mapping[bytes, bytes]]"


def storage_for_schema(schema: Mapping[str, Any] | None, column: str, mark: bool = True) -> Storage:
    """How column ``column``, whose values ``schema`` describes, is stored: natively when a
    type derives from the schema, else as JSON text, marked in the field's metadata unless
    ``mark`` is false."""
    import pyarrow as pa

    type_ = arrow_type_for_schema(schema) if schema is not None else None
    if type_ is None:
        return pa.string(), _json_text, JSON_TEXT_METADATA if mark else {}
    derived: pa.DataType = type_

    def encode(value: Any) -> Any:
        return to_arrow_value(value, derived, column)

    return derived, encode, {}


def _json_text(value: Any) -> str | None:
    """JSON text of a structured value (a non-finite float as ``NaN``/``Infinity``, which
    :func:`json.loads` reads back: a schema may let one through)."""
    return None if value is None else json.dumps(value, ensure_ascii=False)
