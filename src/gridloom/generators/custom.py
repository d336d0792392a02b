"""Generators for user functions (:class:`~gridloom.config.CustomColumn`).

A synchronous function becomes a :class:`CustomGenerator` (run in a worker thread); an
``async def`` function — or an object whose ``__call__`` is ``async def`` — becomes an
:class:`AsyncCustomGenerator` (run on the trio loop). :func:`custom_generator` picks.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..config._columns import CustomColumn
from ..config._models import ModelConfig
from ..errors import ConfigError, GenerationError
from ._dtypes import arrow_type, coerce, json_text
from .base import BatchContext, CellContext, ColumnGenerator, RowFailure

__all__ = [
    "AsyncCustomGenerator",
    "CustomGenerator",
    "custom_generator",
    "is_async_callable",
    "resolve_function",
]


def resolve_function(
    function: str | Callable[..., Any], *, column: str, search_path: Path | None = None
) -> Callable[..., Any]:
    """The callable ``function`` names: itself, or the object at ``"pkg.mod:attr[.attr...]"``.

    When the module is not importable as is and ``search_path`` is given (the config file's
    folder), that folder is added to ``sys.path`` — as Python does for a script's folder — so a
    config can sit next to the module holding its functions.

    Raises:
        ConfigError: the module cannot be imported, the attribute does not exist, or the
            object is not callable (field ``function``).
    """
    if not isinstance(function, str):
        if not callable(function):
            raise ConfigError(f"{function!r} is not callable", column=column, field="function")
        return function
    module_name, sep, attr_path = function.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(
            f"expected an import path 'package.module:function', got {function!r}",
            column=column,
            field="function",
        )
    try:
        target: Any = _import(module_name, search_path)
    except Exception as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for {function!r}: {exc}",
            column=column,
            field="function",
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ConfigError(
                f"{function!r}: {type(target).__name__} {getattr(target, '__name__', target)!r}"
                f" has no attribute {attr!r}",
                column=column,
                field="function",
            ) from None
    if not callable(target):
        raise ConfigError(f"{function!r} is not callable", column=column, field="function")
    return target  # type: ignore[no-any-return]


def _import(module_name: str, search_path: Path | None) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        folder = str(search_path.resolve()) if search_path is not None else None
        if folder is None or exc.name != module_name.partition(".")[0] or folder in sys.path:
            raise
        sys.path.insert(0, folder)
        return importlib.import_module(module_name)


def is_async_callable(function: Callable[..., Any]) -> bool:
    """True for ``async def`` functions (also wrapped in ``functools.partial``) and for
    objects whose ``__call__`` is ``async def``."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004
    )


class _CustomBase(ColumnGenerator):
    def __init__(self, config: CustomColumn, function: Callable[..., Any], model: Any = None):
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
        self.params: Mapping[str, Any] = MappingProxyType(dict(config.params))
        self.model = model
        self.model_bound = config.model is not None
        if self.model_bound and isinstance(model, ModelConfig):
            self.model_lane = (model.alias, model.max_parallel_requests)

    def _arguments(self, ctx: CellContext | BatchContext) -> tuple[Any, ...]:
        ctx.params = self.params
        if self.model_bound:
            ctx.model = ctx.models.get(self.config.model or "", self.model)
        if isinstance(ctx, BatchContext):
            return ({name: list(values) for name, values in ctx.columns.items()}, ctx)
        return (dict(ctx.row), ctx)

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
        result = self.function(*self._arguments(ctx))
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
        result = await self.function(*self._arguments(ctx))
        return self._finish(result, ctx)


def custom_generator(
    config: CustomColumn, *, search_path: Path | None = None, model: Any = None
) -> CustomGenerator | AsyncCustomGenerator:
    """Resolve ``config.function`` and wrap it in the sync or async generator it needs.

    Raises:
        ConfigError: the function cannot be resolved, or the dtype or mode is unknown.
    """
    function = resolve_function(config.function, column=config.name, search_path=search_path)
    if is_async_callable(function):
        return AsyncCustomGenerator(config, function, model)
    return CustomGenerator(config, function, model)
