"""``embedding``: the embedding vector of a text, from a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio

from .._attrs import frozen
from ..clients._types import EmbeddingRequest
from ..config._columns import ColumnConfig, ModelEndpoint
from ..config._kind import ColumnKind
from ..config._models import ModelConfig
from ..errors import GenerationError
from ..generators._factory import BuildContext
from ..generators._jinja import TemplateLimits
from ..generators.base import CellContext, ColumnGenerator
from ..generators.llm import compile_field, render

if TYPE_CHECKING:
    pass

__all__ = ["KIND", "EmbeddingColumn", "EmbeddingGenerator"]


@frozen(kw_only=True)
class EmbeddingColumn(ColumnConfig):
    """An embedding vector of a text.

    Attributes:
        model: the model alias to call.
        input: the text to embed, a Jinja template over other columns.
        timeout: seconds allowed per request (default: the model's).
    """

    kind: ClassVar[str] = "embedding"
    model_endpoint: ClassVar[ModelEndpoint] = "embedding"
    model: str
    input: str
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    def templates(self) -> dict[str, str]:
        return {"input": self.input}

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model}


class EmbeddingGenerator(ColumnGenerator[CellContext]):
    """``embedding``: the vector of the rendered ``input`` text (stored as list<float32>)."""

    granularity = "cell"
    model_bound = True
    inline = False

    def __init__(
        self, config: EmbeddingColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        import pyarrow as pa

        super().__init__(name=config.name, outputs={config.name: pa.list_(pa.float32())})
        self.config = config
        self.model_config = model
        self.model_lane = (model.alias, model.max_parallel_requests)
        self._input = compile_field(config.name, "embedding.input", config.input, limits)

    async def agenerate(self, ctx: CellContext) -> Any:
        handle = ctx.models.get(self.config.model)
        if handle is None:
            raise GenerationError(f"column {self.name!r}: model {self.config.model!r} is not open")
        if self._input.simple:
            text = render(self.name, self._input, ctx.row)
        else:
            text = await trio.to_thread.run_sync(
                render, self.name, self._input, ctx.row, abandon_on_cancel=True
            )
        timeout = self.config.timeout or self.model_config.timeout
        response = await handle.embed(
            EmbeddingRequest(model=self.model_config.model, inputs=(text,), timeout=timeout)
        )
        if len(response.vectors) != 1:
            raise GenerationError(
                f"column {self.name!r}: expected one vector, got {len(response.vectors)}"
            )
        return list(response.vectors[0])


def _build(column: EmbeddingColumn, ctx: BuildContext) -> EmbeddingGenerator:
    model = ctx.model_config(column, column.model)
    return EmbeddingGenerator(column, model, limits=ctx.template_limits)


KIND = ColumnKind(config=EmbeddingColumn, build=_build, positional=("model", "input"))
