"""What model-calling column kinds share: the :class:`LLMColumn` base and :class:`Rubric`.

The kinds themselves (``llm_text``, ``llm_code``, ``llm_structured``, ``llm_judge``) live in
:mod:`gridloom.kinds`; a plugin's model-calling kind subclasses :class:`LLMColumn` the same way.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._columns import ColumnConfig

#: Suffix of the side column holding a model's reasoning text.
REASONING_SUFFIX = "__reasoning"

__all__ = ["REASONING_SUFFIX", "LLMColumn", "Rubric", "not_templated", "templated"]


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
