"""``llm_code``: code from a model, the content of one fenced code block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._kind import ColumnKind
from ..config._llm import LLMColumn, not_templated
from ..config._models import ModelConfig
from ..generators._factory import BuildContext
from ..generators._jinja import TemplateLimits
from ..generators.base import CellContext
from ..generators.llm import FENCE, ModelColumnGenerator, string_type

__all__ = ["KIND", "LLMCodeColumn", "LLMCodeGenerator", "extract_code"]


@frozen(kw_only=True)
class LLMCodeColumn(LLMColumn):
    """Code from a model: the model is asked for one fenced code block, whose content is kept.

    Attributes:
        language: the programming language asked for (also the code fence's tag); used as
            written, so it cannot hold Jinja syntax.
    """

    kind: ClassVar[str] = "llm_code"
    language: str = attrs.field(
        default="python", validator=[attrs.validators.min_len(1), not_templated]
    )


def extract_code(text: str, language: str | None = None) -> str:
    """The content of the first fenced code block (preferring one tagged ``language``), or the
    whole text stripped when there is no fence."""
    blocks = FENCE.findall(text)
    if not blocks:
        return text.strip()
    if language is not None:
        for tag, body in blocks:
            if tag.lower() == language.lower():
                return str(body).rstrip()
    return str(blocks[0][1]).rstrip()


class LLMCodeGenerator(ModelColumnGenerator):
    """``llm_code``: asks for one fenced code block in ``language``; keeps its content."""

    config: LLMCodeColumn

    def __init__(
        self, config: LLMCodeColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(config, model, string_type, limits)

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        own = super().system_text(row)
        tag = self.config.language.lower()
        rule = (
            f"Answer with a single fenced code block in {self.config.language}: "
            f"```{tag} on the first line, the code, then ``` on the last line."
        )
        return f"{own}\n\n{rule}" if own else rule

    async def accept(self, text: str) -> Any:
        """The code: what ``validate_with`` validators check (``{kind: python}``, ...)."""
        return extract_code(text, self.config.language)

    async def agenerate(self, ctx: CellContext) -> Any:
        value, response = await self.answer(ctx, await self.render_messages(ctx.row))
        return self.result(value, response)


def _build(column: LLMCodeColumn, ctx: BuildContext) -> LLMCodeGenerator:
    model = ctx.model_config(column, column.model)
    return LLMCodeGenerator(column, model, limits=ctx.template_limits)


KIND = ColumnKind(config=LLMCodeColumn, build=_build, positional=("model", "prompt"))
