"""What user code raises that is not an ``Exception``, turned into a failure of its cell.

A custom function, a validator's function, a plugin's generator or a tool may call
``sys.exit()``, raise ``GeneratorExit`` or a ``BaseException`` subclass of its own. Left alone,
it would leave the cell's task, end the run's nursery and the process (with a traceback, or
silently with exit code 0). Here it ends only the cell, as any exception does, with a reason
naming the column: :func:`escaped_failure`. What must still end the run passes through:
``KeyboardInterrupt`` (Ctrl-C, which the run turns into a clean, resumable stop) and
``trio.Cancelled`` (the run's own cancellation), alone or inside an exception group.

``StopIteration`` and ``StopAsyncIteration`` are ``Exception`` s, but say nothing (their text is
empty) and the first turns into ``RuntimeError('coroutine raised StopIteration')`` on its way
through a coroutine: :func:`user_call` and :func:`user_acall` name them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import GenerationError

__all__ = ["ends_run", "escaped_failure", "user_acall", "user_call"]


def ends_run(exc: BaseException) -> bool:
    """Whether ``exc`` is, or groups, a Ctrl-C or the run's cancellation."""
    if isinstance(exc, KeyboardInterrupt | trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(ends_run(inner) for inner in exc.exceptions)
    return False


def _said(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, BaseExceptionGroup):
        kinds = sorted({type(inner).__name__ for inner in exc.exceptions})
        text = f"{exc.message} ({', '.join(kinds)})"
    else:
        try:
            text = str(exc)
        except Exception:  # a message that cannot even be shown
            text = ""
    name = type(exc).__name__
    return f"raised {name}: {text[:200]}" if text else f"raised {name}"


def escaped_failure(exc: BaseException, column: str, what: str = "the function") -> GenerationError:
    """The cell failure standing for ``exc``, raised by ``what`` (user code) of ``column``.

    Call it for an exception that is not an ``Exception`` only after checking
    :func:`ends_run` (those must be raised again).
    """
    return GenerationError(f"column {column!r}: {what} {_said(exc)}; the cell fails")


def _caught(exc: BaseException, column: str, what: str) -> GenerationError | None:
    if isinstance(exc, StopIteration | StopAsyncIteration):
        return escaped_failure(exc, column, what)
    if isinstance(exc, Exception) or ends_run(exc):
        return None
    return escaped_failure(exc, column, what)


def user_call(
    function: Callable[..., Any], *args: Any, column: str, what: str = "the function"
) -> Any:
    """``function(*args)``; what it raises that is not an ``Exception`` (but Ctrl-C), and
    ``StopIteration``, becomes a :class:`GenerationError` naming ``column``."""
    try:
        return function(*args)
    except BaseException as exc:
        failure = _caught(exc, column, what)
        if failure is None:
            raise
        raise failure from None


async def user_acall(
    function: Callable[..., Awaitable[Any]], *args: Any, column: str, what: str = "the function"
) -> Any:
    """``await function(*args)``, as :func:`user_call`."""
    try:
        return await function(*args)
    except BaseException as exc:
        failure = _caught(exc, column, what)
        if failure is None:
            raise
        raise failure from None
