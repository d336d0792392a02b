"""``validate``: a column whose value is another column's verdict under one validator.

In a file the validator's key and parameters sit beside ``target``::

    - {name: code_check, validate: {kind: python, target: code, rules: [F, E9]}}

In Python the validator is an object: ``ValidateColumn(name="code_check", target="code",
check=PythonCheck(rules=("F", "E9")))``. The converter hooks registered here translate between
the two (``kind`` is the key of the validator kind found in the ``gridloom.validators``
registry), and :func:`_schema` describes the flat form as a ``oneOf`` over the validator kinds.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pyarrow as pa
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.gen import make_dict_structure_fn

from ..._attrs import frozen
from ...config._columns import ColumnConfig
from ...config._converter import converter
from ...config._issues import ColumnIssues, Issue, describe, misplaced_key_message, suggest
from ...config._kind import COMMON_FIELDS, ColumnKind
from ...config._schema import _Builder
from ...config._validator import FILE_SCHEMA, ValidatorConfig
from ...errors import ConfigError, GenerationError
from ...generators._factory import BuildContext
from ...generators.base import BatchContext, CellContext, ColumnGenerator, Context, RowFailure
from ._base import Checker, ValidationFailed, invalid, verdict
from ._registry import validator_kinds, validator_problem

__all__ = [
    "KIND",
    "VERDICT_TYPE",
    "AsyncValidateGenerator",
    "ValidateColumn",
    "ValidateGenerator",
    "encode_verdict",
]

#: How a verdict is stored: ``details`` as JSON text (its shape is the validator's own).
VERDICT_TYPE = pa.struct(
    [
        pa.field("is_valid", pa.bool_(), nullable=False),
        pa.field("messages", pa.list_(pa.string()), nullable=False),
        pa.field("details", pa.string()),
    ]
)
#: What downstream templates may read of a verdict (``{{ code_check.is_valid }}``).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "is_valid": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "string"}},
        "details": {},
    },
    "required": ["is_valid", "messages", "details"],
    "additionalProperties": False,
}


@frozen(kw_only=True)
class ValidateColumn(ColumnConfig):
    """Another column's value checked by a validator: `{is_valid, messages, details}`.

    In a file, `kind` names the validator and its parameters sit beside `target`:
    `{kind: python, target: code, rules: [F]}` (validators: `python`, `sql`, `json_schema`,
    `regex`, `callable`, `http`, and plugins'; each one's parameters are in
    docs/validators.md); in Python they are the `check` object. The value is stored as a struct
    (`details` as JSON text); templates downstream read `{{ code_check.is_valid }}` and
    `{{ code_check.messages }}`. A null target gives a null verdict. Heavy validators run in
    worker threads or subprocesses, never on the event loop.

    Attributes:
        target: the column whose value is checked.
        check: the validator (in a file: `kind` and its parameters, beside `target`).
        drop_invalid: drop a row whose value is invalid, with the messages as the reason
            (such drops count as the column's errors for the generator health check: a
            pipeline whose every row is invalid is stopped like a broken one).
        max_chars: longest text checked, in characters; longer text is invalid.
    """

    kind: ClassVar[str] = "validate"
    target: str = attrs.field(validator=attrs.validators.min_len(1))
    check: ValidatorConfig = attrs.field(validator=attrs.validators.instance_of(ValidatorConfig))
    drop_invalid: bool = False
    max_chars: int = attrs.field(default=200_000, validator=attrs.validators.ge(1))

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        return {**super().direct_references(), "target": (self.target,)}

    def value_schema(self) -> Mapping[str, Any] | None:
        return VERDICT_SCHEMA


# --------------------------------------------------------------------------- file form

_COLUMN_FIELDS = tuple(a.name for a in attrs.fields(ValidateColumn) if a.name != "check")
KIND_KEY = ValidateColumn.kind


def _field_error(field: str, message: str) -> ClassValidationError:
    error = ValueError(message)
    error.__notes__ = [AttributeValidationNote(f"Validating ValidateColumn.{field}", field, str)]
    return ClassValidationError("While structuring ValidateColumn", [error], ValidateColumn)


def _check_class(kind: Any) -> type[ValidatorConfig]:
    kinds = validator_kinds()
    if kind is None:
        raise _field_error("kind", f"required: the validator kind, one of {', '.join(kinds)}")
    if not isinstance(kind, str):
        raise _field_error("kind", f"expected a validator kind (text), got {describe(kind)}")
    declared = kinds.get(kind)
    if declared is not None:
        return declared.config
    problem = validator_problem(kind)
    if problem is not None:
        raise _field_error("kind", problem)
    guess = suggest(kind, kinds)
    hint = f"; did you mean {guess!r}?" if guess else f"; expected one of {', '.join(kinds)}"
    raise _field_error("kind", f"unknown validator kind {kind!r}{hint}")


def _structure_check(obj: Any, _: Any) -> ValidatorConfig:
    """A validator from ``{kind, **parameters}`` (or itself)."""
    if isinstance(obj, ValidatorConfig):
        return obj
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a mapping, got {describe(obj)}")
    cls = _check_class(obj.get("kind"))
    made: ValidatorConfig = converter.structure({k: v for k, v in obj.items() if k != "kind"}, cls)
    return made


converter.register_structure_hook_func(lambda tp: tp is ValidatorConfig, _structure_check)
converter.register_unstructure_hook_func(
    lambda tp: tp is ValidatorConfig,
    lambda check: {"kind": check.kind, **converter.unstructure(check, unstructure_as=type(check))},
)
# Made once the hook above is in place: the column's ``check`` is structured by it.
_structure_fields = make_dict_structure_fn(
    ValidateColumn, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
)


def _check_keys(obj: Mapping[Any, Any], cls: type[ValidatorConfig]) -> None:
    """Refuse a key that is neither the column's nor the validator's, naming both sets (the
    validator's class alone knows only its own) and, when ``target`` is missing too, that."""
    params = [a.name for a in attrs.fields(cls) if a.init]
    known = ["kind", *(f for f in _COLUMN_FIELDS if f not in COMMON_FIELDS), *params]
    unknown = [key for key in obj if key not in known and key not in _COLUMN_FIELDS]
    if not unknown:
        return
    where = f"at the column level, beside {KIND_KEY!r}, not inside it"
    issues = [
        Issue(message, (str(key),), unknown_key=True)
        for key in unknown
        for message in [misplaced_key_message(key, known, COMMON_FIELDS, where)]
    ]
    if "target" not in obj:
        issues.append(Issue("required field is missing", ("target",)))
    raise ClassValidationError(
        "While structuring ValidateColumn", [ColumnIssues(None, issues)], ValidateColumn
    )


def _structure_column(obj: Any, _: Any) -> ValidateColumn:
    """The flat file form (``kind``, the validator's parameters and the column's fields)."""
    if isinstance(obj, ValidateColumn):
        return obj
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a mapping, got {describe(obj)}")
    cls = _check_class(obj.get("kind"))
    if "check" in obj:
        raise _field_error(
            "check",
            "unknown key 'check': the validator's parameters sit beside 'kind' and 'target'",
        )
    _check_keys(obj, cls)
    own = {k: v for k, v in obj.items() if k not in _COLUMN_FIELDS and k != "kind"}
    check = converter.structure(own, cls)
    column: ValidateColumn = _structure_fields(
        {**{k: v for k, v in obj.items() if k in _COLUMN_FIELDS}, "check": check}, ValidateColumn
    )
    return column


def _unstructure_column(column: ValidateColumn) -> dict[str, Any]:
    """The flat file form: ``name``, ``kind``, ``target``, the validator's parameters, then the
    column's other fields."""
    check = column.check
    hints = typing.get_type_hints(ValidateColumn)
    own = {
        name: converter.unstructure(getattr(column, name), unstructure_as=hints[name])
        for name in _COLUMN_FIELDS
    }
    params = converter.unstructure(check, unstructure_as=type(check))
    return {
        "name": own.pop("name"),
        "kind": check.kind,
        "target": own.pop("target"),
        **params,
        **own,
    }


converter.register_structure_hook_func(lambda tp: tp is ValidateColumn, _structure_column)
converter.register_unstructure_hook_func(lambda tp: tp is ValidateColumn, _unstructure_column)


def _schema(generated: dict[str, Any]) -> dict[str, Any]:
    """The flat file form: the column's own fields, and ``kind`` choosing a validator whose
    parameters sit beside them (one ``oneOf`` branch per validator kind)."""
    own = {k: v for k, v in generated["properties"].items() if k != "check"}
    builder = _Builder()
    branches = []
    for key, declared in validator_kinds().items():
        params = builder.object_schema(declared.config)
        branch: dict[str, Any] = {
            "type": "object",
            "title": key,
            "properties": {"kind": {"const": key}, **own, **params["properties"]},
            "required": ["kind", "target", *params.get("required", [])],
            "additionalProperties": False,
        }
        if params.get("description"):
            branch["description"] = params["description"]
        branches.append(branch)
    return {
        "type": "object",
        "description": generated.get("description", ""),
        "properties": {"kind": {"enum": list(validator_kinds())}},
        "required": ["kind", "target"],
        "oneOf": branches,
    }


def _file_schema(builder: _Builder) -> dict[str, Any]:
    """A validator in its file form (a ``validate_with`` entry): ``kind`` choosing a validator
    whose parameters sit beside it (one ``oneOf`` branch per validator kind)."""
    branches = []
    for key, declared in validator_kinds().items():
        params = builder.object_schema(declared.config)
        branch: dict[str, Any] = {
            "type": "object",
            "title": key,
            "properties": {"kind": {"const": key}, **params["properties"]},
            "required": ["kind", *params.get("required", [])],
            "additionalProperties": False,
        }
        if params.get("description"):
            branch["description"] = params["description"]
        branches.append(branch)
    return {
        "type": "object",
        "description": "A validator: `kind` (one of the validator kinds) and its parameters.",
        "properties": {"kind": {"enum": list(validator_kinds())}},
        "required": ["kind"],
        "oneOf": branches,
    }


if not FILE_SCHEMA:
    FILE_SCHEMA.append(_file_schema)


# --------------------------------------------------------------------------- generators


def encode_verdict(value: Any) -> Any:
    """A verdict as stored: ``details`` as JSON text."""
    if value is None:
        return None
    details = value.get("details")
    text = None if details is None else json.dumps(details, ensure_ascii=False, allow_nan=False)
    return {"is_valid": value["is_valid"], "messages": list(value["messages"]), "details": text}


class _ValidateBase(ColumnGenerator[Context]):
    def __init__(self, column: ValidateColumn, checker: Checker):
        super().__init__(name=column.name, outputs={column.name: VERDICT_TYPE})
        self.column = column
        self.checker = checker
        self.granularity = checker.granularity
        self.encoders = {column.name: encode_verdict}
        if checker.lane is not None:  # waits on an outside resource: its own lane, like a model
            self.model_bound = True
            self.model_lane = checker.lane

    def _precheck(self, value: Any) -> dict[str, Any] | None:
        """A verdict given without the checker (too long), or ``None`` to ask it."""
        limit = self.column.max_chars
        if isinstance(value, str | bytes | bytearray) and len(value) > limit:
            return invalid(
                [f"the value is {len(value)} characters long, more than max_chars ({limit})"]
            )
        return None

    def _inputs(self, ctx: Context) -> tuple[list[Any], list[int], list[Any]]:
        """The values, the positions to ask the checker about, and the answers so far."""
        target = self.column.target
        if isinstance(ctx, BatchContext):
            values = list(ctx.columns[target])
        else:
            values = [ctx.row.get(target)]
        answers: list[Any] = [None] * len(values)
        ask: list[int] = []
        for index, value in enumerate(values):
            if value is None:
                continue
            early = self._precheck(value)
            if early is None:
                ask.append(index)
            else:
                answers[index] = early
        return values, ask, answers

    def _judged(self, result: Any) -> Any:
        found = verdict(result, column=self.name)
        if self.column.drop_invalid and not found["is_valid"]:
            shown = "; ".join(found["messages"][:5]) or "no message"
            return RowFailure(
                ValidationFailed(
                    f"column {self.name!r}: {self.column.target!r} is invalid"
                    f" ({self.column.check.kind}): {shown}"
                )
            )
        return found

    def _finish(self, ctx: Context, ask: list[int], answers: list[Any], got: Any) -> Any:
        """The column's value (a cell) or values (a batch) from the checker's results."""
        if not isinstance(ctx, BatchContext):
            result = got if ask else answers[0]
            if result is None:
                return None
            judged = self._judged(result)
            if isinstance(judged, RowFailure):
                raise judged.error
            return judged
        if not isinstance(got, list | tuple) or len(got) != len(ask):
            raise GenerationError(
                f"column {self.name!r}: a batch validator must return a list of"
                f" {len(ask)} results, got {describe(got)}"
            )
        for index, result in zip(ask, got, strict=True):
            answers[index] = result
        out: list[Any] = []
        for result in answers:
            if result is None or isinstance(result, RowFailure):
                out.append(result)
                continue
            try:
                out.append(self._judged(result))
            except GenerationError as exc:  # this row fails; the others go on
                out.append(RowFailure(exc))
        return out

    def _question(self, values: list[Any], ask: list[int], ctx: Context) -> Any:
        return [values[i] for i in ask] if isinstance(ctx, BatchContext) else values[0]


class ValidateGenerator(_ValidateBase):
    """A validate column with a synchronous checker: runs in a worker thread."""

    def generate(self, ctx: CellContext | BatchContext) -> Any:
        """Check this cell's (or batch's) target values."""
        values, ask, answers = self._inputs(ctx)
        got = self.checker.check(self._question(values, ask, ctx), ctx) if ask else []
        return self._finish(ctx, ask, answers, got)


class AsyncValidateGenerator(_ValidateBase):
    """A validate column with an asynchronous checker: runs on the trio loop."""

    async def agenerate(self, ctx: CellContext | BatchContext) -> Any:
        """Check this cell's (or batch's) target values."""
        values, ask, answers = self._inputs(ctx)
        got = await self.checker.acheck(self._question(values, ask, ctx), ctx) if ask else []
        return self._finish(ctx, ask, answers, got)


def _build(column: ValidateColumn, ctx: BuildContext) -> ColumnGenerator[Any]:
    declared = validator_kinds().get(column.check.kind)
    if declared is None or not isinstance(column.check, declared.config):
        problem = validator_problem(column.check.kind)
        message = problem or f"no validator kind {column.check.kind!r} is registered"
        raise ConfigError(message, column=column.name, field="validate.kind")
    checker = declared.build(column.check, column, ctx)
    if not isinstance(checker, Checker):
        raise ConfigError(
            f"the {declared.name!r} validator made a {type(checker).__name__}, not a Checker",
            column=column.name,
            field="validate.kind",
        )
    if checker.is_async:
        return AsyncValidateGenerator(column, checker)
    return ValidateGenerator(column, checker)


KIND = ColumnKind(
    config=ValidateColumn, build=_build, positional=("target", "check"), schema=_schema
)

assert not set(COMMON_FIELDS) - set(_COLUMN_FIELDS)  # the common fields are the column's
