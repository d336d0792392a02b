"""``custom``: a user function, sync or async, called per cell or per batch.

A synchronous function becomes a :class:`CustomGenerator` (run in a worker thread); an
``async def`` function — or an object whose ``__call__`` is ``async def`` — becomes an
:class:`AsyncCustomGenerator` (run on the trio loop). :func:`custom_generator` picks. A
function that calls ``sys.exit()`` or raises another exception that is not an ``Exception``
(but ``KeyboardInterrupt``) fails its cell or batch like any error (see
:mod:`gridloom.generators._escapes`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, DType
from ..config._kind import ColumnKind
from ..config._models import ModelConfig
from ..config._validators import function_path
from ..errors import ConfigError, GenerationError
from ..generators._dtypes import arrow_type, coerce, json_text
from ..generators._escapes import user_acall, user_call
from ..generators._factory import BuildContext
from ..generators._rows import row_class
from ..generators.base import BatchContext, CellContext, ColumnGenerator, Context, RowFailure
from ..generators.custom import is_async_callable, resolve_function
from ..storage._convert import JSON_TEXT_METADATA

__all__ = ["KIND", "AsyncCustomGenerator", "CustomColumn", "CustomGenerator", "custom_generator"]


@frozen(kw_only=True)
class CustomColumn(ColumnConfig):
    """A user function, sync or async, called per cell or per batch.

    ``function`` is a callable, or an import path ``"package.module:function"`` (the form used
    in YAML). Per cell it receives ``(row, ctx)`` — ``row`` maps the upstream columns to this row's
    values — and returns the value. Per batch it receives ``(columns, ctx)`` — each upstream column
    as a list over the batch's rows — and returns a list with one value per row. ``params`` are
    passed as ``ctx.params``. Columns it reads must be listed in ``depends_on``: ``row`` (and
    ``columns``) holds only those, and reading another raises ``ColumnNotInRow`` (a
    ``KeyError``) naming it, whether the pipeline has it, and what the row holds. A function that
    raises fails its cell (a batch function: the batch's rows), which is dropped with the reason
    naming the column; so does one that calls ``sys.exit()`` or raises another exception that
    is not an ``Exception`` — only ``KeyboardInterrupt`` stops the run, as Ctrl-C does.

    ``model`` names a model alias the function calls itself: the column is then *model-bound*
    (its tasks wait on the network under the LLM-wait limit, without holding a dispatch slot)
    and ``ctx.model`` is that alias's model handle: ``await ctx.model.chat(request,
    cell=ctx.cell_key)`` sends a request through the alias's throttle, retries, response
    cache and usage counts (``cell`` names the row, so that a sampled request the model
    caches by ``cache: true`` keeps an answer of its own in each row, as LLM columns do), and
    ``ctx.model.config`` is its ``ModelConfig``.

    A run records a fingerprint of the function's code — the SHA-256 of its module's whole
    file — and a resume after an edit of that file is refused, naming the column, unless
    ``--accept-code-change`` records the change (docs/quickstart.md, "Interrupting and
    resuming").

    Attributes:
        function: the callable or its import path ``"package.module:function"``.
        mode: ``cell`` (one call per row) or ``batch`` (one call per row group).
        dtype: the type each returned value is stored as (``json``: any JSON-able value, or
            JSON text that is parsed; templates downstream read the value, the file holds JSON
            text marked ``gridloom.json`` in the field's metadata, which ``to_pandas()``
            parses).
        params: passed to the function as ``ctx.params``.
        model: a model alias the function calls itself (makes the column model-bound).
    """

    kind: ClassVar[str] = "custom"
    function: str | Callable[..., Any] = attrs.field(validator=function_path)
    mode: Literal["cell", "batch"] = "cell"
    dtype: DType = "string"
    params: dict[str, Any] = attrs.field(factory=dict)
    model: str | None = None

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model} if self.model is not None else {}


class _CustomBase(ColumnGenerator[Context]):
    def __init__(
        self,
        config: CustomColumn,
        function: Callable[..., Any],
        model: Any = None,
        producers: Mapping[str, str] | None = None,
    ):
        super().__init__(
            name=config.name, outputs={config.name: arrow_type(config.dtype, column=config.name)}
        )
        if config.mode not in ("cell", "batch"):
            raise ConfigError(
                f"mode must be cell or batch, got {config.mode!r}", column=config.name, field="mode"
            )
        self.config = config
        self.function = function
        self.granularity = config.mode
        if config.dtype == "json":  # parsed in memory (for templates), JSON text on disk
            self.encoders = {config.name: json_text}
            self.field_metadata = {config.name: JSON_TEXT_METADATA}
        self.params: Mapping[str, Any] = MappingProxyType(dict(config.params))
        self.model = model
        self.model_bound = config.model is not None
        # A row (or batch's columns) that names the column a read of a missing one asked for.
        self._row = row_class(config.name, producers or {})
        if self.model_bound and isinstance(model, ModelConfig):
            self.model_lane = (model.alias, model.max_parallel_requests)

    def _arguments(self, ctx: CellContext | BatchContext) -> tuple[Any, ...]:
        ctx.params = self.params
        if self.model_bound:
            ctx.model = ctx.models.get(self.config.model or "", self.model)
        if isinstance(ctx, BatchContext):
            return (self._row({name: list(values) for name, values in ctx.columns.items()}), ctx)
        return (self._row(ctx.row), ctx)

    def _finish(self, result: Any, ctx: CellContext | BatchContext) -> Any:
        dtype = self.config.dtype
        if not isinstance(ctx, BatchContext):
            return coerce(result, dtype, column=self.name)
        expected = len(ctx.row_ids)
        if isinstance(result, str | bytes | Mapping) or not isinstance(result, Sequence):
            raise GenerationError(
                f"column {self.name!r}: a batch function must return a list, got"
                f" {type(result).__name__} for {expected} rows"
            )
        if len(result) != expected:
            raise GenerationError(
                f"column {self.name!r}: batch function returned a list of the wrong length:"
                f" got {len(result)} values for {expected} rows"
            )
        out: list[Any] = []
        for value in result:
            if isinstance(value, RowFailure):
                out.append(value)
                continue
            try:
                out.append(coerce(value, dtype, column=self.name))
            except GenerationError as exc:  # this row fails; the others go on
                out.append(RowFailure(exc))
        return out


class CustomGenerator(_CustomBase):
    """Calls a synchronous user function in a worker thread.

    Per cell: ``function(row, ctx)`` → the value. Per batch: ``function(columns, ctx)`` → a
    list with one value per row. Values are coerced to the column's dtype; ``ctx.params`` is
    the column's ``params`` (read-only).

    Args:
        config: the column.
        function: the resolved callable (see :func:`resolve_function`).
    """

    inline = False

    def generate(self, ctx: CellContext | BatchContext) -> Any:
        """Call the function for this cell or batch and coerce what it returns."""
        result = user_call(self.function, *self._arguments(ctx), column=self.name)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise GenerationError(
                f"column {self.name!r}: the function returned an awaitable; declare it async def"
            )
        return self._finish(result, ctx)


class AsyncCustomGenerator(_CustomBase):
    """Awaits an asynchronous user function on the trio loop; otherwise as
    :class:`CustomGenerator`."""

    async def agenerate(self, ctx: CellContext | BatchContext) -> Any:
        """Await the function for this cell or batch and coerce what it returns."""
        result = await user_acall(self.function, *self._arguments(ctx), column=self.name)
        return self._finish(result, ctx)


def custom_generator(
    config: CustomColumn,
    *,
    search_path: Path | None = None,
    model: Any = None,
    producers: Mapping[str, str] | None = None,
) -> CustomGenerator | AsyncCustomGenerator:
    """Resolve ``config.function`` and wrap it in the sync or async generator it needs
    (``producers``: the pipeline's columns → the column filling each, for the message of a
    read of a column the row does not hold; see :func:`~gridloom.generators._rows.row_class`).

    Raises:
        ConfigError: the function cannot be resolved, or the dtype or mode is unknown.
    """
    function = resolve_function(
        config.function, column=config.name, search_path=search_path, field="custom.function"
    )
    if is_async_callable(function):
        return AsyncCustomGenerator(config, function, model, producers)
    return CustomGenerator(config, function, model, producers)


def _build(column: CustomColumn, ctx: BuildContext) -> ColumnGenerator[Any]:
    model = ctx.models.get(column.model) if column.model is not None else None
    return custom_generator(column, search_path=ctx.base_dir, model=model, producers=ctx.producers)


KIND = ColumnKind(config=CustomColumn, build=_build, positional=("function",))
