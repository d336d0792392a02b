"""``llm_text``: free text from a model."""

from __future__ import annotations

from typing import Any, ClassVar

from .._attrs import frozen
from ..config._kind import ColumnKind
from ..config._llm import LLMColumn
from ..config._models import ModelConfig
from ..generators._factory import BuildContext
from ..generators._jinja import TemplateLimits
from ..generators.base import CellContext
from ..generators.llm import ModelColumnGenerator, string_type

__all__ = ["KIND", "LLMTextColumn", "LLMTextGenerator"]


@frozen(kw_only=True)
class LLMTextColumn(LLMColumn):
    """Free text from a model (stripped of surrounding whitespace).

    With ``validate_with``, each answer is checked by those validators and a rejected one
    is sent back for correction (see docs/validators.md, "Rejection sampling")."""

    kind: ClassVar[str] = "llm_text"


class LLMTextGenerator(ModelColumnGenerator):
    """``llm_text``: the model's answer, stripped of surrounding whitespace."""

    def __init__(
        self, config: LLMColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(config, model, string_type, limits)

    async def agenerate(self, ctx: CellContext) -> Any:
        value, response = await self.answer(ctx, await self.render_messages(ctx.row))
        return self.result(value, response)


def _build(column: LLMTextColumn, ctx: BuildContext) -> LLMTextGenerator:
    model = ctx.model_config(column, column.model)
    return LLMTextGenerator(column, model, limits=ctx.template_limits)


KIND = ColumnKind(config=LLMTextColumn, build=_build, positional=("model", "prompt"))
