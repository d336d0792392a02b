"""The JSON Schema (draft 2020-12) of the pipeline config format, built from the attrs models.

Nothing here is written by hand per field: the schema follows the attrs classes by
introspection (field types, defaults, the numeric and length validators, and the
descriptions of the docstrings' ``Attributes:`` sections), so it cannot drift from what the
converter accepts. It describes the *JSON form* of a config, which is also what a YAML file
reads as in an editor: datetimes are ISO 8601 strings and mapping keys are strings.

Columns follow the converter (:mod:`._converter`): each column is a mapping with ``name``,
exactly one *kind key* whose value holds that kind's parameters, and the optional common
fields ``depends_on`` and ``drop``. The schema lists every kind key as an optional property
of one ``Column`` object and requires exactly one of them (``oneOf`` over ``required``), so a
validator points at the very key or parameter at fault.

The converter stays the authority: a few rules span fields (``high >= low``, unique names,
model aliases that exist, templates that parse) and are checked only when a config is loaded.
"""

from __future__ import annotations

import collections.abc
import datetime as dt
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from .._attrs import define
from ._columns import ColumnConfig
from ._kind import COMMON_FIELDS, ColumnKind
from ._kinds import column_kinds, kind_named
from ._models import PipelineConfig
from ._processors import PROCESSOR_KINDS, ProcessorConfig
from ._tools import TOOL_KINDS, ToolConfig
from ._validator import FILE_SCHEMA, ValidatorConfig

__all__ = ["SCHEMA_DIALECT", "config_json_schema", "kind_schema", "split_doc"]

#: The JSON Schema dialect of :func:`config_json_schema`.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Name of the column union in ``$defs``.
_COLUMN_DEF = "Column"

_COMPARISONS = {
    ">=": "minimum",
    ">": "exclusiveMinimum",
    "<=": "maximum",
    "<": "exclusiveMaximum",
}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline config, generated from the attrs models.

    Returns:
        A JSON-serialisable schema: the pipeline's own properties at the top level, every
        nested section (providers, models, run, each column kind's parameters, ...) under
        ``$defs`` and referenced with ``$ref``.

    Example:
        >>> import jsonschema, yaml
        >>> from gridloom.config import config_json_schema
        >>> doc = yaml.safe_load(open("examples/people.yaml"))  # doctest: +SKIP
        >>> jsonschema.validate(doc, config_json_schema())  # doctest: +SKIP
    """
    builder = _Builder()
    root = builder.object_schema(PipelineConfig)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "gridloom pipeline configuration",
        **root,
        "$defs": dict(sorted(builder.defs.items())),
    }


def split_doc(cls: type) -> tuple[str, dict[str, str]]:
    """The docstring's prose, and its Google-style ``Attributes:`` entries by field name.

    Entries of base classes are included (a subclass's own entry wins); an entry naming
    several fields (``low, high: ...``) describes each of them.
    """
    described: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or "__doc__" not in vars(klass):
            continue
        described.update(_attributes(inspect.cleandoc(klass.__doc__ or "")))
    prose = inspect.cleandoc(cls.__doc__ or "").partition("Attributes:")[0]
    return _plain_text(prose), described


def _attributes(text: str) -> dict[str, str]:
    block = text.partition("Attributes:")[2]
    described: dict[str, str] = {}
    current: list[str] = []
    for line in block.splitlines():
        if line.startswith("    ") and not line.startswith("        ") and ":" in line:
            names, _, rest = line.strip().partition(":")
            current = [name.strip() for name in names.split(",")]
            for name in current:
                described[name] = rest.strip()
        elif line.strip() and current:
            for name in current:
                described[name] += " " + line.strip()
        elif not line.startswith(" ") and line.strip():
            break  # the next section
    return {name: _plain_text(value) for name, value in described.items()}


def _plain_text(text: str) -> str:
    """Docstring text as one paragraph per blank-line-separated block, ``x`` for ````x````."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p).replace("``", "`")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_callable(tp: Any) -> bool:
    return typing.get_origin(tp) is collections.abc.Callable or tp is collections.abc.Callable


def _json_default(value: Any) -> tuple[bool, Any]:
    """Whether a default can be shown in the schema, and its JSON form."""
    if value is None or isinstance(value, str | bool | int | float):
        return True, value
    if isinstance(value, tuple | list):
        items = [_json_default(item) for item in value]
        return all(ok for ok, _ in items), [item for _, item in items]
    if isinstance(value, dict):
        if not value:
            return True, {}
        return False, None
    return False, None


def _constraints(validator: Any, out: dict[str, Any], *, is_array: bool) -> None:
    """Schema keywords for what ``validator`` checks (only the checks it can express)."""
    if validator is None:
        return
    inner = getattr(validator, "validator", None)
    if inner is not None:  # attrs.validators.optional
        _constraints(inner, out, is_array=is_array)
        return
    for sub in getattr(validator, "_validators", ()):  # attrs.validators.and_
        _constraints(sub, out, is_array=is_array)
    keyword = _COMPARISONS.get(getattr(validator, "compare_op", ""))
    if keyword is not None:
        out[keyword] = validator.bound
    min_length = getattr(validator, "min_length", None)
    if isinstance(min_length, int):
        out["minItems" if is_array else "minLength"] = min_length
    keywords = getattr(validator, "json_schema", None)  # see _validators.schema_keywords
    if isinstance(keywords, dict):
        out.update(keywords)


@define
class _Builder:
    """Builds the schema of one class tree, collecting nested classes in ``defs``."""

    defs: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def ref(self, cls: type) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a class may (indirectly) refer to itself
            self.defs[name] = self.object_schema(cls)
        return {"$ref": f"#/$defs/{name}"}

    def object_schema(self, cls: type, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        """An attrs class as a closed object: its fields, required when they have no default."""
        hints = typing.get_type_hints(cls)
        prose, described = split_doc(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if field.name in skip:
                continue
            prop = self.field_schema(field, hints[field.name])
            if field.name in described:
                prop["description"] = described[field.name]
            properties[field.name] = prop
            if field.default is attrs.NOTHING:
                required.append(field.name)
        schema: dict[str, Any] = {"type": "object"}
        if prose:
            schema["description"] = prose
        schema["properties"] = properties
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        # What the fields' types cannot say (e.g. "exactly one of these keys").
        schema.update(getattr(cls, "json_schema_extra", None) or {})
        return schema

    def field_schema(self, field: attrs.Attribute[Any], tp: Any) -> dict[str, Any]:
        schema = dict(self.type_schema(tp))
        is_array = schema.get("type") == "array" or any(
            branch.get("type") == "array" for branch in schema.get("anyOf", ())
        )
        _constraints(field.validator, schema, is_array=is_array)
        default: Any = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = None if default.takes_self else default.factory()
            if default is None or attrs.has(type(default)):
                return schema
        if default is not attrs.NOTHING:
            ok, value = _json_default(default)
            if ok:
                schema["default"] = value
        return schema

    def type_schema(self, tp: Any) -> dict[str, Any]:
        """The schema of a type annotation of the config models."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp is dt.datetime:
            return {"type": "string", "description": "An ISO 8601 datetime."}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if _is_union(tp):
            return self._union_schema(args)
        if origin is tuple or tp is tuple:
            items = args[0] if args and (len(args) == 1 or args[1] is Ellipsis) else Any
            return {"type": "array", "items": self.type_schema(items)}
        if origin is dict:
            value = args[1] if args else Any
            return {"type": "object", "additionalProperties": self.type_schema(value)}
        if tp is ColumnConfig:
            return self._column_ref()
        if tp is ProcessorConfig:
            return self._keyed_schema(PROCESSOR_KINDS)
        if tp is ToolConfig:
            return self._keyed_schema(TOOL_KINDS)
        if tp is ValidatorConfig:
            return self._validator_ref()
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp)
        raise TypeError(f"no JSON Schema for the config type {tp!r}; teach _schema.py about it")

    def _union_schema(self, args: tuple[Any, ...]) -> dict[str, Any]:
        if str in args and any(_is_callable(arg) for arg in args):
            # CustomColumn.function: in a file, only the import path form exists.
            return {
                "type": "string",
                "pattern": "^[^:]+:.+$",
                "description": "An import path 'package.module:function'.",
            }
        return {"anyOf": [self.type_schema(arg) for arg in args if not _is_callable(arg)]}

    def _keyed_schema(self, kinds: Mapping[str, type[Any]]) -> dict[str, Any]:
        """``{<kind>: value}`` (processors, tools): one key, the kind; a kind with a
        shorthand field may hold that field's value directly (``{drop_columns: [...]}``,
        ``{python: "m:f"}``), only it when ``shorthand_only``."""
        branches: list[dict[str, Any]] = []
        for key, cls in kinds.items():
            params = self.object_schema(cls)
            if cls.shorthand is not None:  # {drop_columns: [...]}, {rename: {...}}
                value = params["properties"][cls.shorthand]
                value = {**value, "description": params.get("description", "")}
                if not cls.shorthand_only:  # {python: "m:f"} or {python: {function: ...}}
                    self.defs[cls.__name__] = params
                    value = {"anyOf": [value, {"$ref": f"#/$defs/{cls.__name__}"}]}
            else:
                self.defs[cls.__name__] = params
                value = {"$ref": f"#/$defs/{cls.__name__}"}
            branches.append(
                {
                    "type": "object",
                    "properties": {key: value},
                    "required": [key],
                    "additionalProperties": False,
                }
            )
        return {"oneOf": branches}

    def _validator_ref(self) -> dict[str, Any]:
        """``{kind: <validator>, **parameters}`` (``validate_with`` entries), once in $defs:
        described by the validators' :data:`FILE_SCHEMA`, which the ``validate`` kind sets
        when it loads (here, if nothing has loaded it yet); as a bare object if it cannot."""
        name = ValidatorConfig.__name__
        if name not in self.defs:
            self.defs[name] = {}
            if not FILE_SCHEMA:
                kind_named("validate")
            made = FILE_SCHEMA[0](self) if FILE_SCHEMA else self.object_schema(ValidatorConfig)
            self.defs[name] = made
        return {"$ref": f"#/$defs/{name}"}

    def _column_ref(self) -> dict[str, Any]:
        if _COLUMN_DEF not in self.defs:
            self.defs[_COLUMN_DEF] = {}
            self.defs[_COLUMN_DEF] = self._column_schema()
        return {"$ref": f"#/$defs/{_COLUMN_DEF}"}

    def _column_schema(self) -> dict[str, Any]:
        """``{name, <kind>: {params}, depends_on?, drop?}`` with exactly one kind key."""
        common = self.object_schema(ColumnConfig)
        properties: dict[str, Any] = dict(common["properties"])
        kinds = column_kinds()
        for key, kind in kinds.items():
            params = kind_schema(kind, self)
            self.defs[kind.config.__name__] = params
            ref = {"$ref": f"#/$defs/{kind.config.__name__}"}
            branches: list[dict[str, Any]] = [ref]
            if kind.shorthand is not None:  # {expression: "..."} is {expression: {template: ...}}
                branches.append(
                    {"type": "string", "description": f"Shorthand for the {kind.shorthand}."}
                )
            if not params.get("required"):  # {uuid: null} takes every default
                branches.append({"type": "null"})
            properties[key] = ref if len(branches) == 1 else {"anyOf": branches}
        description = (
            "A column: a mapping with `name`, exactly one kind key holding that kind's"
            " parameters, and the optional common fields `depends_on`, `drop` and"
            f" `skip_when`. Kind keys: {', '.join(kinds)}."
        )
        return {
            "type": "object",
            "description": description,
            "properties": properties,
            "required": common.get("required", []),
            "additionalProperties": False,
            "oneOf": [{"required": [key]} for key in kinds],
        }


def kind_schema(kind: ColumnKind[Any], builder: _Builder | None = None) -> dict[str, Any]:
    """The JSON Schema of a column kind's parameters: its config class's fields but the common
    ones, as the kind's ``schema`` hook adjusts it.

    Args:
        kind: the kind.
        builder: the schema being built (nested classes go to its ``$defs``); a new one when
            ``None`` (to check that a kind has a schema at all).
    """
    builder = builder if builder is not None else _Builder()
    params = builder.object_schema(kind.config, skip=frozenset(COMMON_FIELDS))
    if kind.schema is not None:
        params = kind.schema(params)
    return params
