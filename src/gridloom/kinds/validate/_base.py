"""What a validator is: its declaration (:class:`ValidatorKind`), the object that checks values
(:class:`Checker`), and the one shape every verdict takes (:func:`verdict`).

A validator kind is one module declaring ``VALIDATOR = ValidatorKind(config=..., build=...)``
and one entry point in the ``gridloom.validators`` group naming it (gridloom's own kinds are
declared the same way). ``build(check, column, ctx)`` makes the :class:`Checker` of one
``validate`` column, raising :class:`~gridloom.errors.ConfigError` for what is visible before a
run (a missing optional package, an unknown SQL dialect, an unresolvable function).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..._attrs import frozen
from ...config._validator import ValidatorConfig
from ...errors import ConfigError, GenerationError, ValidationFailed
from ...generators._dtypes import short_repr
from ...generators.base import Context, Granularity

if TYPE_CHECKING:
    from ...generators._factory import BuildContext
    from ._column import ValidateColumn

__all__ = [
    "MAX_MESSAGES",
    "MAX_MESSAGE_CHARS",
    "Checker",
    "ValidationFailed",
    "ValidatorKind",
    "as_text",
    "invalid",
    "needs_extra",
    "valid",
    "verdict",
]

V = TypeVar("V", bound=ValidatorConfig)

#: Most messages a verdict keeps (the rest are counted in one last message).
MAX_MESSAGES = 50
#: Longest message a verdict keeps, in characters (longer ones are cut with "...").
MAX_MESSAGE_CHARS = 500


class Checker:
    """Checks the target values of one ``validate`` column.

    Implement :meth:`check` (synchronous: it runs in a worker thread, so it may block) or
    :meth:`acheck` (asynchronous, on the trio loop: it must never block) and set ``is_async``
    to match. A ``cell`` checker gets one value and returns one result; a ``batch`` checker
    gets the row group's values as a list and returns a list of results, one per value. A
    result is what :func:`verdict` accepts: a bool, ``(bool, messages)`` or a mapping with
    ``is_valid``, ``messages`` and ``details``. Values are never ``None`` (a null target gives
    a null verdict without calling the checker).
    """

    granularity: Granularity = "cell"
    is_async: bool = False
    #: An outside resource the checks wait on (a pool of subprocesses, a remote service) and
    #: how many checks it serves at once. The column's tasks then wait in their own lane of
    #: the scheduler, as a model's do (a few times that many dispatched at once, the rest
    #: queued), rather than holding the dispatch slots other columns' tasks need while they
    #: wait for it. ``None``: the checks are plain work, dispatched like any generator's.
    lane: tuple[str, int] | None = None

    def check(self, value: Any, ctx: Context) -> Any:
        """Check ``value`` (a list of values for a batch checker)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither check nor acheck")

    async def acheck(self, value: Any, ctx: Context) -> Any:
        """Check ``value`` (a list of values for a batch checker), on the trio loop."""
        raise NotImplementedError(f"{type(self).__name__} implements neither check nor acheck")


@frozen(kw_only=True)
class ValidatorKind(Generic[V]):
    """A validator kind, declared by one module and named by its ``gridloom.validators``
    entry point (whose name must be ``config.kind``).

    Attributes:
        config: the validator's configuration, a frozen attrs subclass of
            :class:`~gridloom.config._validator.ValidatorConfig` whose ``kind`` class variable
            is the key written as ``kind:`` in a file. Its fields are the validator's
            parameters; its docstring documents them.
        build: ``build(check, column, ctx)`` → the :class:`Checker` of one ``validate`` column
            (``ctx`` is the :class:`~gridloom.generators.BuildContext`).
    """

    config: type[V]
    build: Callable[[V, ValidateColumn, BuildContext], Checker]

    @property
    def name(self) -> str:
        """The validator kind key (``config.kind``)."""
        return self.config.kind


def needs_extra(module: str, *, column: str, kind: str) -> ConfigError:
    """The error for a validator whose optional package is not installed."""
    return ConfigError(
        f"the {kind} validator needs the {module!r} package: pip install 'gridloom[validators]'",
        column=column,
        field="validate.kind",
    )


def as_text(value: Any) -> str | None:
    """``value`` as text for a text validator: text as is, UTF-8 bytes decoded; ``None`` for
    anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def valid(details: Any = None) -> dict[str, Any]:
    """A valid verdict."""
    return {"is_valid": True, "messages": [], "details": details}


def invalid(messages: Iterable[str], details: Any = None) -> dict[str, Any]:
    """An invalid verdict with ``messages`` (bounded, see :func:`verdict`)."""
    return {"is_valid": False, "messages": _messages(messages), "details": details}


def _cut(text: str) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _messages(messages: Iterable[Any]) -> list[str]:
    out: list[str] = []
    extra = 0
    for message in messages:
        if not isinstance(message, str):
            raise TypeError(f"a message must be text, got {short_repr(message)}")
        if len(out) < MAX_MESSAGES:
            out.append(_cut(message))
        else:
            extra += 1
    if extra:
        out[-1] = f"... and {extra + 1} more messages"
    return out


def _details(details: Any) -> Any:
    try:
        json.dumps(details, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"details must be JSON-serialisable: {exc}") from None
    return details


def verdict(result: Any, *, column: str) -> dict[str, Any]:
    """A checker's (or user function's) result as ``{is_valid, messages, details}``.

    Accepted: a bool; ``(bool, messages)`` with messages a text or a list of texts; a mapping
    with a bool ``is_valid`` and optional ``messages`` and ``details`` (JSON-serialisable).
    At most :data:`MAX_MESSAGES` messages of :data:`MAX_MESSAGE_CHARS` characters are kept.

    Raises:
        GenerationError: any other result, naming the column.
    """
    try:
        if isinstance(result, bool):
            return {"is_valid": result, "messages": [], "details": None}
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
            flag, messages = result
            messages = [messages] if isinstance(messages, str) else list(messages or ())
            return {"is_valid": flag, "messages": _messages(messages), "details": None}
        if isinstance(result, Mapping):
            extra = sorted(map(str, set(result) - {"is_valid", "messages", "details"}))
            if extra:
                raise TypeError(f"unexpected key {extra[0]!r}")
            flag = result.get("is_valid")
            if not isinstance(flag, bool):
                raise TypeError(f"is_valid must be a bool, got {short_repr(flag)}")
            messages = result.get("messages") or []
            messages = [messages] if isinstance(messages, str) else list(messages)
            return {
                "is_valid": flag,
                "messages": _messages(messages),
                "details": _details(result.get("details")),
            }
    except TypeError as exc:
        raise GenerationError(
            f"column {column!r}: the validator's result is unusable: {exc}"
        ) from None
    raise GenerationError(
        f"column {column!r}: a validator must return a bool, (bool, messages) or a mapping"
        f" {{is_valid, messages, details}}, got {short_repr(result)}"
    )
