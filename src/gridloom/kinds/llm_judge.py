"""``llm_judge``: a model's judgement against named rubrics: a score and a reason for each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._kind import ColumnKind
from ..config._llm import LLMColumn, Rubric
from ..config._models import ModelConfig
from ..config._validators import to_tuple
from ..generators._factory import BuildContext
from ..generators._jinja import CompiledTemplate, TemplateLimits
from ..generators.llm import JINJA_SYNTAX, LLMStructuredGenerator, compile_field, render

__all__ = ["KIND", "LLMJudgeColumn", "LLMJudgeGenerator", "judge_schema"]


def judge_schema(rubrics: tuple[Rubric, ...]) -> dict[str, Any]:
    """The JSON Schema of a judge's answer: per rubric, an allowed score and a reason."""
    return {
        "type": "object",
        "properties": {
            rubric.name: {
                "type": "object",
                "properties": {
                    "score": {"enum": list(rubric.scores)},
                    "reasoning": {"type": "string"},
                },
                "required": ["score", "reasoning"],
                "additionalProperties": False,
            }
            for rubric in rubrics
        },
        "required": [rubric.name for rubric in rubrics],
        "additionalProperties": False,
    }


@frozen(kw_only=True)
class LLMJudgeColumn(LLMColumn):
    """A model's judgement against named rubrics: for each rubric a score and a reason.

    The value is ``{rubric: {"score": ..., "reasoning": "..."}}`` (a struct in the file, or
    JSON text when a rubric's scores mix types);
    templates downstream read it as ``{{ quality.accuracy.score }}``, checked by ``validate``.
    Each rubric's description and score meanings are Jinja templates over the row, like the
    prompt.

    Attributes:
        rubrics: the criteria, each with a unique name (see ``rubrics[]`` below).
        max_correction_attempts: how many times an invalid answer is sent back for correction.
    """

    kind: ClassVar[str] = "llm_judge"
    #: ``max_correction_attempts`` was always written here: only ``validate_with`` is left out.
    omit_at_default: ClassVar[tuple[str, ...]] = ("validate_with", "on_truncated")
    rubrics: tuple[Rubric, ...] = attrs.field(
        converter=to_tuple, validator=attrs.validators.min_len(1)
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

    def value_schema(self) -> Mapping[str, Any] | None:
        return judge_schema(self.rubrics)


class LLMJudgeGenerator(LLMStructuredGenerator):
    """``llm_judge``: for each rubric, a score from its scale and a short reason."""

    config: LLMJudgeColumn

    def __init__(
        self, config: LLMJudgeColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(
            config,
            model,
            schema=judge_schema(config.rubrics),
            max_corrections=config.max_correction_attempts,
            limits=limits,
        )
        # A rubric's description and its scores' meanings are templates over the row, like
        # the prompt; text without Jinja syntax is kept as is (and rendered once, below).
        self._rubrics = [
            (
                rubric,
                self._rubric_text(f"rubrics[{i}].description", rubric.description),
                [
                    (score, self._rubric_text(f"rubrics[{i}].scores.{score}", meaning))
                    for score, meaning in rubric.scores.items()
                ],
            )
            for i, rubric in enumerate(config.rubrics)
        ]
        templates = [
            text
            for _, description, meanings in self._rubrics
            for text in (description, *(meaning for _, meaning in meanings))
            if not isinstance(text, str)
        ]
        self.render_inline = self.render_inline and all(t.simple for t in templates)
        self._instructions = None if templates else self.instructions({})

    def _rubric_text(self, field: str, text: str) -> str | CompiledTemplate:
        if JINJA_SYNTAX.search(text) is None:
            return text
        return compile_field(self.name, f"{self.config.kind}.{field}", text, self.limits)

    def instructions(self, row: Mapping[str, Any]) -> str:
        """The judging instructions, with each rubric's texts rendered over ``row``."""

        def text(piece: str | CompiledTemplate) -> str:
            return piece if isinstance(piece, str) else render(self.name, piece, row)

        lines = [
            "You are a careful judge. Score the user's material on each rubric below, choosing"
            " one of the listed scores, and give a one-sentence reason for each."
        ]
        for rubric, description, meanings in self._rubrics:
            lines.append(f"\nRubric {rubric.name!r}: {text(description)}".rstrip(": "))
            lines.extend(f"  {score}: {text(meaning)}" for score, meaning in meanings)
        return "\n".join(lines)

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        own = super().system_text(row)
        rules = self._instructions if self._instructions is not None else self.instructions(row)
        return f"{own}\n\n{rules}" if own else rules


def _build(column: LLMJudgeColumn, ctx: BuildContext) -> LLMJudgeGenerator:
    model = ctx.model_config(column, column.model)
    return LLMJudgeGenerator(column, model, limits=ctx.template_limits)


KIND = ColumnKind(config=LLMJudgeColumn, build=_build, positional=("model", "prompt", "rubrics"))
