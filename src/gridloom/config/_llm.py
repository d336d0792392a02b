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


def _check_schema(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict) or not value:
        raise ValueError("schema must be a non-empty JSON Schema mapping")
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(value).check_schema(value)
    except exceptions.SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None


@attrs.frozen(kw_only=True)
class LLMColumn(ColumnConfig):
    """Fields every model-calling column has.

    Attributes:
        model: the model alias to call.
        prompt: the user message, a Jinja template over other columns.
        system_prompt: an optional system message, also a template.
        temperature, top_p, max_tokens: override the model's defaults for this column.
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
        language: the programming language asked for (also the code fence's tag).
    """

    kind: ClassVar[str] = "llm_code"
    language: str = attrs.field(default="python", validator=attrs.validators.min_len(1))


@attrs.frozen(kw_only=True)
class LLMStructuredColumn(LLMColumn):
    """JSON from a model, valid against ``schema``.

    With a model whose ``json_schema_mode`` is on, the schema goes to the provider as the
    response format; otherwise it is put in the prompt. An answer that does not parse or does
    not validate is sent back with the error, up to ``max_correction_attempts`` times; then the
    cell fails. Templates downstream see the parsed object (``{{ facts.items[0] }}``); the file
    holds it as JSON text.

    Attributes:
        schema: the JSON Schema of the answer.
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
        name: the criterion's name (a key of the judge column's value).
        description: what is being judged.
        scores: each allowed score and what it means, e.g. ``{1: wrong, 3: partly, 5: exact}``.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    description: str = ""
    scores: dict[int | str, str] = attrs.field(converter=_score_keys)

    @scores.validator
    def _check_scores(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError(f"rubric {self.name!r} needs at least one score")


@attrs.frozen(kw_only=True)
class LLMJudgeColumn(LLMColumn):
    """A model's judgement against named rubrics: for each rubric a score and a reason.

    The value is ``{rubric: {"score": ..., "reasoning": "..."}}`` (JSON text in the file).

    Attributes:
        rubrics: the criteria.
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
