"""What model-calling column kinds share: the :class:`LLMColumn` base and :class:`Rubric`.

The kinds themselves (``llm_text``, ``llm_code``, ``llm_structured``, ``llm_judge``) live in
:mod:`gridloom.kinds`; a plugin's model-calling kind subclasses :class:`LLMColumn` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from .._attrs import frozen
from ._cache import CacheSetting, check_cache_setting
from ._columns import ColumnConfig
from ._inference import (
    InferenceDistribution,
    as_param,
    check_max_tokens,
    check_temperature,
    check_top_p,
)
from ._validator import ValidatorConfig
from ._validators import as_mapping, to_tuple

#: Suffix of the side column holding a model's reasoning text.
REASONING_SUFFIX = "__reasoning"
#: Suffix of the side column holding the inference parameters each cell drew.
INFERENCE_SUFFIX = "__inference"
#: The inference parameters a column or model may draw per cell, in drawing order.
INFERENCE_PARAMS = ("temperature", "top_p", "max_tokens")
#: What a model column may do with an answer cut at ``max_tokens`` (``on_truncated``).
ON_TRUNCATED = ("keep", "drop", "retry")

__all__ = [
    "INFERENCE_PARAMS",
    "INFERENCE_SUFFIX",
    "ON_TRUNCATED",
    "REASONING_SUFFIX",
    "LLMColumn",
    "Rubric",
    "not_templated",
    "templated",
]


#: What starts a Jinja tag; a structural field holding one would be sent or used literally.
_TEMPLATE_MARKERS = ("{{", "{%")


def templated(text: object) -> bool:
    """Whether ``text`` holds Jinja syntax (``{{`` or ``{%``)."""
    return isinstance(text, str) and any(marker in text for marker in _TEMPLATE_MARKERS)


def not_templated(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Refuse Jinja syntax in a field that is used as is, never rendered."""
    if templated(value):
        raise ValueError(
            f"{attribute.name} is used as written, not rendered as a template, so it cannot"
            f" hold '{{{{' or '{{%' (got {value!r}); put per-row text in the prompt instead"
        )


def _check_on_truncated(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ON_TRUNCATED:
        raise ValueError(
            f"{attribute.name} must be one of {', '.join(ON_TRUNCATED)} (got {value!r})"
        )


@frozen(kw_only=True)
class LLMColumn(ColumnConfig):
    """Fields every model-calling column has.

    Attributes:
        model: the model alias to call (one of ``models[].alias``).
        prompt: the user message, a Jinja template over other columns.
        system_prompt: an optional system message, also a template.
        temperature: sampling temperature for this column (``>= 0``; default: the
            model's). A number, or a distribution each cell draws its own value from:
            ``{uniform: [0.5, 1.0]}`` or ``{values: [0.2, 0.9], weights: [1, 3]}`` (see
            docs/inference.md). A column that draws a parameter (a distribution of its own
            or its model's) also keeps the values each cell drew, in a column named
            ``<name>__inference``.
        top_p: nucleus sampling probability for this column (from 0 to 1; default: the
            model's); a number or a distribution, like ``temperature``.
        max_tokens: the most tokens an answer may have (default: the model's; when neither
            sets it, none is sent and the server's own limit applies, except on an
            ``anthropic`` provider, whose API requires one: 1024 is sent); a whole number
            ``>= 1`` or a distribution of whole numbers, like ``temperature``.
        timeout: seconds allowed per request (default: the model's).
        extra_body: fields added to the request body.
        with_reasoning: also keep the model's reasoning text, in a column named
            ``<name>__reasoning`` (empty when the model returns none).
        validate_with: validators every answer must pass (rejection sampling), each written
            like a `validate` column's validator without `target`: `{kind: regex, pattern:
            ...}`, `{kind: python, rules: [F]}`, `{kind: callable, function: mod:fn}` (see
            docs/validators.md). They check the cell's value: the text (`llm_text`), the
            extracted code (`llm_code`), the parsed, schema-valid value (`llm_structured`,
            `llm_judge`). A rejected answer is sent back with the validators' messages, up to
            `max_correction_attempts` times; then the row is dropped (`ValidationFailed`).
        max_correction_attempts: how many times a rejected answer is sent back to the model
            for correction (a follow-up turn quoting the problems) before the row is dropped.
        on_truncated: what becomes of an answer cut at ``max_tokens`` (``finish_reason:
            length``; Anthropic's ``max_tokens``): ``keep`` it, truncated, and count it
            (``truncated`` in the column's counts); ``drop`` its row (``AnswerTruncated``,
            the reason in the dropped records); or ``retry``: ask again, as a failure that
            may pass, within the run's ``max_cell_attempts`` and ``salvage_rounds``, then
            drop the row. ``retry`` only helps where answers are sampled (``temperature``
            above 0, no ``seed``, not served from the cache): the same deterministic request
            is cut again. An ``llm_agent`` applies it to its final answer.
        cache: this column's use of the response cache (docs/cache.md): ``true``,
            ``read_only``, ``false``, or ``null`` (default: the model's ``cache`` setting).
            Not part of the config's hash.
    """

    #: Parameters added after the first release: left out of the config's hash at their
    #: default (a subclass that sets its own list keeps ``validate_with`` in it).
    omit_at_default: ClassVar[tuple[str, ...]] = (
        "validate_with",
        "max_correction_attempts",
        "on_truncated",
    )
    #: Settings of how the column runs, not what it generates: left out of the config's
    #: hash, and out of a dumped config when unset.
    execution_fields: ClassVar[tuple[str, ...]] = ("cache",)

    model: str
    prompt: str
    system_prompt: str | None = None
    temperature: float | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_temperature
    )
    top_p: float | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_top_p
    )
    max_tokens: int | InferenceDistribution | None = attrs.field(
        default=None, converter=as_param, validator=check_max_tokens
    )
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    extra_body: dict[str, Any] = attrs.field(factory=dict)
    with_reasoning: bool = False
    validate_with: tuple[ValidatorConfig, ...] = attrs.field(
        default=(),
        converter=to_tuple,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(ValidatorConfig)),
    )
    max_correction_attempts: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    on_truncated: Literal["keep", "drop", "retry"] = attrs.field(
        default="keep", validator=_check_on_truncated
    )
    cache: CacheSetting = attrs.field(default=None, validator=check_cache_setting)

    def templates(self) -> dict[str, str]:
        out = {"prompt": self.prompt}
        if self.system_prompt is not None:
            out["system_prompt"] = self.system_prompt
        return out

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model}

    def drawn_params(self) -> tuple[str, ...]:
        """The inference parameters this column sets as distributions (drawn per cell)."""
        return tuple(
            name
            for name in INFERENCE_PARAMS
            if isinstance(getattr(self, name), InferenceDistribution)
        )

    def output_names(self, models: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The column, then ``<name>__reasoning`` (``with_reasoning``), then
        ``<name>__inference`` when a parameter is drawn per cell: one the column sets as a
        distribution, or — given the pipeline's ``models`` (``ModelConfig`` by alias) — one
        its model sets as a distribution and the column leaves unset."""
        names: tuple[str, ...] = (self.name,)
        if self.with_reasoning:
            names += (self.name + REASONING_SUFFIX,)
        if self.drawn_params() or self.model_drawn_params(models):
            names += (self.name + INFERENCE_SUFFIX,)
        return names

    def model_drawn_params(self, models: Mapping[str, Any] | None) -> tuple[str, ...]:
        """The parameters this column leaves unset that its model (in ``models``) sets as
        distributions."""
        model = (models or {}).get(getattr(self, "model", None) or "")
        if model is None:
            return ()
        return tuple(
            name
            for name in INFERENCE_PARAMS
            if getattr(self, name) is None
            and isinstance(getattr(model, name, None), InferenceDistribution)
        )


def _score_keys(scores: Any) -> dict[int | str, str]:
    """Score keys written as digits (JSON has only string keys) become whole numbers."""
    out: dict[int | str, str] = {}
    for key, meaning in as_mapping(scores).items():
        if isinstance(key, str) and key.lstrip("-").isdigit():
            key = int(key)
        out[key] = meaning
    return out


@frozen(kw_only=True)
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
        validator=attrs.validators.and_(attrs.validators.min_len(1), not_templated)
    )
    description: str = ""
    scores: dict[int | str, str] = attrs.field(converter=_score_keys)

    @scores.validator
    def _check_scores(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError(f"rubric {self.name!r} needs at least one score")
        for score in value:
            if templated(score):
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
