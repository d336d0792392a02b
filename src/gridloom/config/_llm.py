"""Column configurations that call models: text, code, structured JSON, judges, embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ._columns import ColumnConfig, _tuple

#: Suffix of the side column holding a model's reasoning text.
REASONING_SUFFIX = "__reasoning"

__all__ = [
    "REASONING_SUFFIX",
    "EmbeddingColumn",
    "LLMCodeColumn",
    "LLMColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "Rubric",
]


#: What starts a Jinja tag; a structural field holding one would be sent or used literally.
_TEMPLATE_MARKERS = ("{{", "{%")


def _templated(text: object) -> bool:
    return isinstance(text, str) and any(marker in text for marker in _TEMPLATE_MARKERS)


def _not_templated(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Refuse Jinja syntax in a field that is used as is, never rendered."""
    if _templated(value):
        raise ValueError(
            f"{attribute.name} is used as written, not rendered as a template, so it cannot"
            f" hold '{{{{' or '{{%' (got {value!r}); put per-row text in the prompt instead"
        )


def _templated_annotation(schema: Any, path: str = "schema") -> str | None:
    """The path of a ``description`` or ``title`` in a JSON Schema that holds Jinja syntax."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            where = f"{path}.{key}"
            if key in ("description", "title") and _templated(value):
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
class LLMColumn(ColumnConfig):
    """Fields every model-calling column has.

    Attributes:
        model: the model alias to call (one of ``models[].alias``).
        prompt: the user message, a Jinja template over other columns.
        system_prompt: an optional system message, also a template.
        temperature: sampling temperature for this column (default: the model's).
        top_p: nucleus sampling probability for this column (default: the model's).
        max_tokens: the most tokens an answer may have (default: the model's).
        timeout: seconds allowed per request (default: the model's).
        extra_body: fields added to the request body.
        with_reasoning: also keep the model's reasoning text, in a column named
            ``<name>__reasoning`` (empty when the model returns none).
    """

    model: str
    prompt: str
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    extra_body: dict[str, Any] = attrs.field(factory=dict)
    with_reasoning: bool = False

    def templates(self) -> dict[str, str]:
        out = {"prompt": self.prompt}
        if self.system_prompt is not None:
            out["system_prompt"] = self.system_prompt
        return out

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model}

    def output_names(self) -> tuple[str, ...]:
        if self.with_reasoning:
            return (self.name, self.name + REASONING_SUFFIX)
        return (self.name,)


@attrs.frozen(kw_only=True)
class LLMTextColumn(LLMColumn):
    """Free text from a model."""

    kind: ClassVar[str] = "llm_text"


@attrs.frozen(kw_only=True)
class LLMCodeColumn(LLMColumn):
    """Code from a model: the model is asked for one fenced code block, whose content is kept.

    Attributes:
        language: the programming language asked for (also the code fence's tag); used as
            written, so it cannot hold Jinja syntax.
    """

    kind: ClassVar[str] = "llm_code"
    language: str = attrs.field(
        default="python", validator=[attrs.validators.min_len(1), _not_templated]
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


def _score_keys(scores: Any) -> dict[int | str, str]:
    """Score keys written as digits (JSON has only string keys) become whole numbers."""
    out: dict[int | str, str] = {}
    for key, meaning in dict(scores).items():
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        out[key] = meaning
    return out


@attrs.frozen(kw_only=True)
class Rubric:
    """One judging criterion.

    Attributes:
        name: the criterion's name (a key of the judge column's value; used as written).
        description: what is being judged, shown to the judge; a Jinja template over other
            columns, like the prompt.
        scores: each allowed score and what it means, e.g. ``{1: wrong, 3: partly, 5: exact}``;
            the meanings are Jinja templates too, the scores are used as written.
    """

    name: str = attrs.field(
        validator=attrs.validators.and_(attrs.validators.min_len(1), _not_templated)
    )
    description: str = ""
    scores: dict[int | str, str] = attrs.field(converter=_score_keys)

    @scores.validator
    def _check_scores(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError(f"rubric {self.name!r} needs at least one score")
        for score in value:
            if _templated(score):
                raise ValueError(
                    f"score {score!r} of rubric {self.name!r} is used as written, not rendered"
                    " as a template, so it cannot hold '{{' or '{%'"
                )

    def templates(self) -> dict[str, str]:
        """The rubric's texts shown to the judge (its description and each score's meaning),
        by field path inside the rubric: ``description``, ``scores.<score>``."""
        out = {"description": self.description} if self.description else {}
        out.update({f"scores.{score}": meaning for score, meaning in self.scores.items()})
        return out


@attrs.frozen(kw_only=True)
class LLMJudgeColumn(LLMColumn):
    """A model's judgement against named rubrics: for each rubric a score and a reason.

    The value is ``{rubric: {"score": ..., "reasoning": "..."}}`` (JSON text in the file);
    templates downstream read it as ``{{ quality.accuracy.score }}``, checked by ``validate``.
    Each rubric's description and score meanings are Jinja templates over the row, like the
    prompt.

    Attributes:
        rubrics: the criteria, each with a unique name (see ``rubrics[]`` below).
        max_correction_attempts: how many times an invalid answer is sent back for correction.
    """

    kind: ClassVar[str] = "llm_judge"
    rubrics: tuple[Rubric, ...] = attrs.field(
        converter=_tuple, validator=attrs.validators.min_len(1)
    )
    max_correction_attempts: int = attrs.field(default=2, validator=attrs.validators.ge(0))

    @rubrics.validator
    def _check_names(self, _attribute: attrs.Attribute[Any], value: tuple[Rubric, ...]) -> None:
        names = [r.name for r in value]
        if len(set(names)) != len(names):
            raise ValueError("rubric names must be unique")

    def templates(self) -> dict[str, str]:
        out = super().templates()
        for index, rubric in enumerate(self.rubrics):
            out.update(
                {f"rubrics[{index}].{key}": text for key, text in rubric.templates().items()}
            )
        return out


@attrs.frozen(kw_only=True)
class EmbeddingColumn(ColumnConfig):
    """An embedding vector of a text.

    Attributes:
        model: the model alias to call.
        input: the text to embed, a Jinja template over other columns.
        timeout: seconds allowed per request (default: the model's).
    """

    kind: ClassVar[str] = "embedding"
    model: str
    input: str
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    def templates(self) -> dict[str, str]:
        return {"input": self.input}

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model}
