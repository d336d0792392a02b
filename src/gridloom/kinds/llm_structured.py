"""``llm_structured``: JSON from a model, valid against a JSON Schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..config._kind import ColumnKind
from ..config._llm import LLMColumn, templated
from ..generators._factory import BuildContext
from ..generators.llm import LLMStructuredGenerator

__all__ = ["KIND", "LLMStructuredColumn"]


def _templated_annotation(schema: Any, path: str = "schema") -> str | None:
    """The path of a ``description`` or ``title`` in a JSON Schema that holds Jinja syntax."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            where = f"{path}.{key}"
            if key in ("description", "title") and templated(value):
                return where
            if isinstance(value, dict | list) and (found := _templated_annotation(value, where)):
                return found
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            if found := _templated_annotation(item, f"{path}[{index}]"):
                return found
    return None


def _check_schema(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict) or not value:
        raise ValueError("schema must be a non-empty JSON Schema mapping")
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(value).check_schema(value)
    except exceptions.SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
    where = _templated_annotation(value)
    if where is not None:
        raise ValueError(
            f"{where} holds '{{{{' or '{{%', but a schema is sent as written, not rendered"
            " per row; put per-row text in the prompt instead"
        )


@attrs.frozen(kw_only=True)
class LLMStructuredColumn(LLMColumn):
    """JSON from a model, valid against ``schema``.

    With a model whose ``json_schema_mode`` is on, the schema goes to the provider as the
    response format; otherwise it is put in the prompt. An answer that does not parse or does
    not validate is sent back with the error, up to ``max_correction_attempts`` times; then the
    cell fails. Templates downstream see the parsed object (``{{ facts.facts[0] }}``); the file
    holds it as JSON text. ``validate`` checks the fields templates read against the schema's
    ``properties``: a name the schema rules out is an error (an object schema that does not
    mention ``additionalProperties`` counts as closed; ``additionalProperties: true`` opens
    it). A schema's ``description`` and ``title`` texts are sent as written, so they cannot
    hold Jinja syntax.

    Attributes:
        schema: the JSON Schema of the answer (templates downstream may read only the fields
            it declares).
        max_correction_attempts: how many times an invalid answer is sent back for correction.
    """

    kind: ClassVar[str] = "llm_structured"
    schema: dict[str, Any] = attrs.field(validator=_check_schema)
    max_correction_attempts: int = attrs.field(default=2, validator=attrs.validators.ge(0))

    def value_schema(self) -> Mapping[str, Any] | None:
        return self.schema


def _build(column: LLMStructuredColumn, ctx: BuildContext) -> LLMStructuredGenerator:
    return LLMStructuredGenerator(
        column,
        ctx.model_config(column, column.model),
        schema=column.schema,
        max_corrections=column.max_correction_attempts,
        limits=ctx.template_limits,
    )


KIND = ColumnKind(
    config=LLMStructuredColumn, build=_build, positional=("model", "prompt", "schema")
)
