"""The ``json_schema`` validator: the value (a parsed JSON value, or text that is parsed) is
valid against a JSON Schema. The schema is checked when the config is loaded (only local
``$ref`` is followed: nothing is fetched; see :mod:`gridloom.config._schema_refs`); each error
is reported as ``$.path: message``, in the order of the paths."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import attrs

from ..._attrs import frozen
from ...config._schema_refs import local_validator, ref_problem, unresolved
from ...config._validator import ValidatorConfig
from ...generators._factory import BuildContext
from ...generators.base import Context
from ._base import Checker, ValidatorKind, invalid, valid
from ._column import ValidateColumn

__all__ = ["VALIDATOR", "JsonSchemaCheck", "JsonSchemaChecker", "json_path"]


def _check_schema(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError("schema must be a JSON Schema mapping")
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(value).check_schema(value)
    except exceptions.SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
    problem = ref_problem(value)
    if problem is not None:
        raise ValueError(problem)


@frozen(kw_only=True)
class JsonSchemaCheck(ValidatorConfig):
    """A JSON value valid against a JSON Schema (text is parsed as JSON first).

    Attributes:
        schema: the JSON Schema (its dialect from `$schema`, else the latest); a `$ref` must
            be local (`#/$defs/...`): nothing is fetched.
        parse_text: parse a text value as JSON; when false text is checked as a JSON string.
    """

    kind: ClassVar[str] = "json_schema"
    schema: dict[str, Any] = attrs.field(validator=_check_schema)
    parse_text: bool = True


def json_path(path: Any) -> str:
    """A jsonschema error's path as ``$.a[0].b``."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class JsonSchemaChecker(Checker):
    """Validates each value with one compiled jsonschema validator."""

    def __init__(self, check: JsonSchemaCheck):
        self.config = check
        self.validator = local_validator(check.schema)

    def check(self, value: Any, ctx: Context) -> Any:
        from referencing.exceptions import Unresolvable  # loaded with the validator

        if isinstance(value, str) and self.config.parse_text:
            try:
                value = json.loads(value)
            except ValueError as exc:
                return invalid([f"not JSON: {exc}"])
        try:
            errors = sorted(
                self.validator.iter_errors(value),
                key=lambda e: (json_path(e.absolute_path), e.message),
            )
        except RecursionError:
            return invalid(["the value is nested too deeply to check"])
        except Unresolvable as exc:  # a local reference that slipped past the load check
            return invalid([f"the schema cannot be used: {unresolved(exc)}"])
        if not errors:
            return valid()
        return invalid(f"{json_path(e.absolute_path)}: {e.message}" for e in errors)


def _build(check: JsonSchemaCheck, column: ValidateColumn, ctx: BuildContext) -> JsonSchemaChecker:
    return JsonSchemaChecker(check)


VALIDATOR = ValidatorKind(config=JsonSchemaCheck, build=_build)
