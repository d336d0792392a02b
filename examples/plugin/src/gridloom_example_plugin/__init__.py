"""``llm_label``: one label from a fixed list, chosen by a model for each row.

An example gridloom column-kind plugin. In a pipeline::

    - name: sentiment
      llm_label:
        model: writer
        prompt: "How does this review feel? {{ review }}"
        labels: [positive, neutral, negative]

The model is asked for ``{"label": ...}`` with the labels as a JSON Schema ``enum`` (as the
response format when the model's ``json_schema_mode`` is on, else in the prompt); an answer
that is not one of them is sent back for correction, like an ``llm_structured`` column's. The
column holds the label as text. The request goes through the run's model handle for the
alias, so the column shares that model's throttle, retries and usage counts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from gridloom.config import LLMColumn, ModelConfig, to_tuple
from gridloom.generators import BuildContext, LLMStructuredGenerator, TemplateLimits
from gridloom.kinds import ColumnKind

__all__ = ["KIND", "LLMLabelColumn", "LabelGenerator"]


@attrs.frozen(kw_only=True)
class LLMLabelColumn(LLMColumn):
    """One of ``labels``, chosen by a model for each row (stored as text).

    Attributes:
        labels: the labels to choose from: at least two, each a distinct non-empty text,
            used as written.
        max_correction_attempts: how many times an answer that is not one of the labels is
            sent back for correction.
    """

    kind: ClassVar[str] = "llm_label"
    labels: tuple[str, ...] = attrs.field(converter=to_tuple, validator=attrs.validators.min_len(2))
    max_correction_attempts: int = attrs.field(default=2, validator=attrs.validators.ge(0))

    @labels.validator
    def _check_labels(self, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        if any(not isinstance(label, str) or not label for label in value):
            raise ValueError("labels must be non-empty texts")
        if len(set(value)) != len(value):
            raise ValueError("labels must be distinct")


def label_schema(labels: tuple[str, ...]) -> dict[str, Any]:
    """The JSON Schema of the model's answer: ``{"label": <one of labels>}``."""
    return {
        "type": "object",
        "properties": {"label": {"enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


class LabelGenerator(LLMStructuredGenerator):
    """Asks for one of the column's labels (with correction rounds); the value is the label."""

    def __init__(
        self, config: LLMLabelColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(
            config,
            model,
            schema=label_schema(config.labels),
            max_corrections=config.max_correction_attempts,
            limits=limits,
        )
        self.encoders = {}  # the value is the label's text, stored as it is

    def answer_value(self, answer: Any) -> Any:
        return answer["label"]


def build(column: LLMLabelColumn, ctx: BuildContext) -> LabelGenerator:
    """The kind's generator for ``column`` (``ctx`` knows the pipeline's models)."""
    return LabelGenerator(
        column, ctx.model_config(column, column.model), limits=ctx.template_limits
    )


#: What the ``gridloom.columns`` entry point ``llm_label`` names.
KIND = ColumnKind(config=LLMLabelColumn, build=build, positional=("model", "prompt", "labels"))
