"""``llm_structured``: JSON, YAML or XML from a model, valid against a JSON Schema (or XSD)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from .._attrs import frozen
from ..config._kind import ColumnKind
from ..config._llm import LLMColumn, templated
from ..config._schema_refs import ref_problem
from ..config._schema_required import required_problem
from ..generators._factory import BuildContext
from ..generators._structured_formats import FORMATS, compile_xsd
from ..generators.llm import RAW_SUFFIX, LLMStructuredGenerator

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


#: A name an XML element or attribute can have (without a namespace prefix).
_XML_NAME = re.compile(r"[^\W\d][\w.-]*")


def _xml_unnamed(schema: Any, path: str = "schema") -> str | None:
    """The path of a property in ``schema`` whose name cannot be an XML element's (or, as
    ``@name``, an attribute's) name."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name in properties:
                bare = name[1:] if name.startswith("@") else name
                if name != "#text" and (_XML_NAME.fullmatch(bare) is None):
                    return f"{path}.properties.{name}"
        for key, value in schema.items():
            if isinstance(value, dict | list) and (found := _xml_unnamed(value, f"{path}.{key}")):
                return found
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            if found := _xml_unnamed(item, f"{path}[{index}]"):
                return found
    return None


def _check_schema(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise ValueError("schema must be a non-empty JSON Schema mapping")
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(value).check_schema(value)
    except exceptions.SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
    problem = ref_problem(value) or required_problem(value)
    if problem is not None:
        raise ValueError(problem)
    where = _templated_annotation(value)
    if where is not None:
        raise ValueError(
            f"{where} holds '{{{{' or '{{%', but a schema is sent as written, not rendered"
            " per row; put per-row text in the prompt instead"
        )


def _check_xsd(inst: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        if inst.schema is None:
            raise ValueError("give schema (a JSON Schema) or, for format xml, xsd")
        return
    if inst.format != "xml":
        raise ValueError(f"xsd is for format xml only (format is {inst.format})")
    if inst.schema is not None:
        raise ValueError("give schema or xsd, not both")
    if not value.strip():
        raise ValueError("xsd must be the text of an XML Schema")
    compile_xsd(value)


def _check_format(inst: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {value!r}")
    if value == "xml" and (where := _xml_unnamed(inst.schema)) is not None:
        raise ValueError(
            f"{where} cannot be an XML element's name (format xml maps each property to an"
            " element, and '@name' to an attribute)"
        )


@frozen(kw_only=True)
class LLMStructuredColumn(LLMColumn):
    """Structured data from a model, as JSON, YAML or XML, valid against ``schema``.

    With ``format: json`` (the default) and a model whose ``json_schema_mode`` is on, the
    schema goes to the provider as the response format; otherwise (and always for YAML and
    XML) it is put in the prompt with an instruction for the format. The answer's fenced block
    for the format (or its first fenced block, or its whole text) is parsed safely: YAML as
    plain data only (aliases and tags other than the core ones refused; ``yes``/``no`` and
    dates stay strings), XML without a DTD, entities or external references. XML is checked
    in its JSON form: the root element's children are properties, a repeated child is an
    array, an attribute is a property ``@name``, text is coerced to the number, integer or
    boolean the schema asks for (see ``docs/structured-formats.md``). With ``xsd`` instead of
    ``schema``, the XML is validated against that XML Schema (needs the ``xml`` extra:
    ``pip install 'gridloom[xml]'``) and decoded by it. An answer that does not parse or does
    not validate is sent back with the error, up to ``max_correction_attempts`` times; then the
    cell fails. Templates downstream see the parsed object (``{{ facts.facts[0] }}``). The file
    holds it natively when the schema is closed enough: objects with ``properties`` (and
    ``additionalProperties`` false or not mentioned) are structs, arrays with ``items`` lists,
    scalars their type, ``enum``/``const``/``anyOf``/``oneOf`` of one type (and ``null``) that
    type; a field is nullable unless it is ``required`` and its schema rules ``null`` out; keys
    outside ``properties`` are not stored (``keep_raw`` keeps the answer's text). Any other
    schema (open objects, mixed types, tuples, recursive ``$ref``) or an ``xsd`` stores JSON
    text, marked ``gridloom.json`` in the field's metadata (``to_pandas()`` parses it). A value
    its native type cannot hold (an integer beyond 64 bits) fails the cell (see
    ``docs/structured-formats.md``). ``validate`` checks the fields templates read against the
    schema's ``properties``: a name the schema rules out is an error (an object schema that
    does not mention ``additionalProperties`` counts as closed; ``additionalProperties: true``
    opens it). For the same reason, a name that a closed object's ``required`` (or
    ``dependentRequired``) lists but its ``properties`` do not declare is refused when the
    config is loaded, naming where: it would never be stored (a typo, as a rule). A schema's
    ``description`` and ``title`` texts are sent as written, so they cannot hold Jinja syntax.
    Only a local ``$ref`` (``#/$defs/item``, ``#anchor``) is followed, and
    nothing is ever fetched: any other ``$ref`` (``https://...``, ``file://...``,
    ``other.json``) is refused when the config is loaded, as are a ``$ref`` that points to
    nothing and a loop of them that never descends into the value (``{"$ref": "#"}``).

    Attributes:
        schema: the JSON Schema of the answer (templates downstream may read only the fields
            it declares); required unless ``xsd`` is given.
        format: the answer's format: ``json``, ``yaml`` or ``xml``.
        xsd: for ``format: xml`` only, instead of ``schema``: the text of an XML Schema (at
            most 256 KiB; nothing it imports or includes is fetched).
        keep_raw: also keep the accepted answer's text as the model wrote it, in a column
            named ``<name>__raw``.
        max_correction_attempts: how many times an invalid answer is sent back for correction.
    """

    kind: ClassVar[str] = "llm_structured"
    #: Parameters added after the first release: left out of the config's hash at their default.
    omit_at_default: ClassVar[tuple[str, ...]] = (
        "format",
        "xsd",
        "keep_raw",
        "validate_with",
        "on_truncated",
    )
    schema: dict[str, Any] | None = attrs.field(default=None, validator=_check_schema)
    format: Literal["json", "yaml", "xml"] = attrs.field(default="json", validator=_check_format)
    xsd: str | None = attrs.field(default=None, validator=_check_xsd)
    keep_raw: bool = False
    max_correction_attempts: int = attrs.field(default=2, validator=attrs.validators.ge(0))

    def value_schema(self) -> Mapping[str, Any] | None:
        return self.schema

    def output_names(self, models: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        names = super().output_names(models)
        return (*names, self.name + RAW_SUFFIX) if self.keep_raw else names


def _build(column: LLMStructuredColumn, ctx: BuildContext) -> LLMStructuredGenerator:
    return LLMStructuredGenerator(
        column,
        ctx.model_config(column, column.model),
        schema=column.schema,
        max_corrections=column.max_correction_attempts,
        limits=ctx.template_limits,
        answer_format=column.format,
        xsd=column.xsd,
        keep_raw=column.keep_raw,
    )


KIND = ColumnKind(
    config=LLMStructuredColumn, build=_build, positional=("model", "prompt", "schema")
)
