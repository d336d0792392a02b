"""User functions named by import path: :func:`resolve_function` finds them and
:func:`is_async_callable` tells how to call them (the ``custom`` kind's generators, in
:mod:`gridloom.kinds.custom`, are built on these)."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["is_async_callable", "resolve_function"]


def resolve_function(
    function: str | Callable[..., Any],
    *,
    column: str,
    search_path: Path | None = None,
    field: str = "function",
) -> Callable[..., Any]:
    """The callable ``function`` names: itself, or the object at ``"pkg.mod:attr[.attr...]"``.

    When the module is not importable as is and ``search_path`` is given (the config file's
    folder), that folder is added to ``sys.path`` — as Python does for a script's folder — so a
    config can sit next to the module holding its functions.

    Raises:
        ConfigError: the module cannot be imported, the attribute does not exist, or the
            object is not callable (at ``field``: the kind's, e.g. ``custom.function``).
    """
    if not isinstance(function, str):
        if not callable(function):
            raise ConfigError(f"{function!r} is not callable", column=column, field=field)
        return function
    module_name, sep, attr_path = function.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(
            f"expected an import path 'package.module:function', got {function!r}",
            column=column,
            field=field,
        )
    try:
        target: Any = _import(module_name, search_path)
    except Exception as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for {function!r}: {exc}",
            column=column,
            field=field,
        ) from exc
    except BaseException as exc:  # sys.exit() on import: a problem of the config, not an exit
        if isinstance(exc, KeyboardInterrupt):
            raise
        said = (
            f"called sys.exit({exc.code!r})"
            if isinstance(exc, SystemExit)
            else f"raised {type(exc).__name__}"
        )
        raise ConfigError(
            f"cannot import module {module_name!r} for {function!r}: importing it {said}",
            column=column,
            field=field,
        ) from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ConfigError(
                f"{function!r}: {type(target).__name__} {getattr(target, '__name__', target)!r}"
                f" has no attribute {attr!r}",
                column=column,
                field=field,
            ) from None
    if not callable(target):
        raise ConfigError(f"{function!r} is not callable", column=column, field=field)
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
