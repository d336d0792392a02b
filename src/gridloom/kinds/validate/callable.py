"""The ``callable`` validator: a user function, sync or async, per cell or per batch, resolved
like the ``custom`` kind's functions (:func:`gridloom.generators.custom.resolve_function`).

Per cell it is called as ``function(value, ctx)`` (``ctx.row`` holds the row's upstream values:
reading a column the column's ``depends_on`` does not list raises
:class:`~gridloom.errors.ColumnNotInRow`, a ``KeyError`` naming it; ``ctx.params`` holds the
column's ``params``); per batch as ``function(values, ctx)`` with a list, and
returns a list. A result is a bool, ``(bool, messages)`` or a mapping ``{is_valid, messages,
details}``. A synchronous function runs in a worker thread; an ``async def`` one on the trio
loop. A function that raises fails its cell (or batch), with the exception as the reason
(``sys.exit()`` and other exceptions that are not ``Exception`` s, but Ctrl-C, included).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

from ..._attrs import frozen
from ...config._validator import ValidatorConfig
from ...config._validators import function_path
from ...errors import ConfigError, GenerationError
from ...generators._escapes import user_acall, user_call
from ...generators._factory import BuildContext
from ...generators._rows import row_class
from ...generators.base import BatchContext, Context
from ...generators.custom import is_async_callable, resolve_function
from ._base import Checker, ValidatorKind
from ._column import ValidateColumn

__all__ = ["VALIDATOR", "CallableCheck", "CallableChecker"]


@frozen(kw_only=True)
class CallableCheck(ValidatorConfig):
    """A user function deciding validity: `function(value, ctx)`, or `function(values, ctx)`
    per batch.

    Attributes:
        function: the callable or its import path `"package.module:function"`.
        batch: call it once per row group with the list of values (it returns a list).
        params: passed to the function as `ctx.params`.
    """

    kind: ClassVar[str] = "callable"
    function: str | Callable[..., Any] = attrs.field(validator=function_path)
    batch: bool = False
    params: dict[str, Any] = attrs.field(factory=dict)


class CallableChecker(Checker):
    """Calls the user's function (in a worker thread, or awaited when it is async)."""

    def __init__(
        self,
        check: CallableCheck,
        function: Callable[..., Any],
        *,
        column: str,
        producers: Mapping[str, str] | None = None,
    ):
        self.function = function
        self.column = column
        # ctx.row (ctx.columns per batch) names the column a read of a missing one asked for.
        self._row = row_class(column, producers or {})
        self.params: Mapping[str, Any] = MappingProxyType(dict(check.params))
        self.granularity = "batch" if check.batch else "cell"
        self.is_async = is_async_callable(function)

    def _handed(self, ctx: Context) -> None:
        ctx.params = self.params
        if isinstance(ctx, BatchContext):
            ctx.columns = self._row(ctx.columns)
        else:
            ctx.row = self._row(ctx.row)

    def check(self, value: Any, ctx: Context) -> Any:
        self._handed(ctx)
        result = user_call(self.function, value, ctx, column=self.column)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise GenerationError(
                f"column {self.column!r}: the function returned an awaitable; declare it async def"
            )
        return result

    async def acheck(self, value: Any, ctx: Context) -> Any:
        self._handed(ctx)
        return await user_acall(self.function, value, ctx, column=self.column)


def _build(check: CallableCheck, column: ValidateColumn, ctx: BuildContext) -> CallableChecker:
    try:
        function = resolve_function(check.function, column=column.name, search_path=ctx.base_dir)
    except ConfigError as exc:
        raise ConfigError(exc.message, column=column.name, field="validate.function") from None
    return CallableChecker(check, function, column=column.name, producers=ctx.producers)


VALIDATOR = ValidatorKind(config=CallableCheck, build=_build)
