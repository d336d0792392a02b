"""From cattrs' error trees to one readable :class:`~gridloom.errors.ConfigError`.

Structuring a pipeline can fail in many places at once; cattrs reports that as a tree of
exception groups whose leaves carry notes saying which attribute or index they came from.
:func:`collect` flattens such a tree into :class:`Issue` values with a path from the root of the
pipeline, and :func:`to_config_error` turns them into the one error the user sees, which lists
every problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import attrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    CattrsError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

from .._attrs import frozen
from ..errors import ConfigError, ConfigIssue
from ._columns import ColumnConfig
from ._validators import describe

__all__ = [
    "ColumnIssues",
    "Issue",
    "PathPart",
    "collect",
    "describe",
    "find_invalid_field",
    "misplaced_key_message",
    "render_path",
    "suggest",
    "to_config_error",
    "unknown_key_message",
]

#: One step of a path: an attribute or mapping key (``str``) or a list index (``int``).
PathPart = str | int

_COMMON_FIELDS = frozenset(a.name for a in attrs.fields(ColumnConfig))


@frozen
class Issue:
    """One problem found while structuring.

    Attributes:
        message: what is wrong, without the location.
        path: where, from the pipeline root; relative to the column when ``column`` is set.
        column: the name of the column at fault, when it has one.
        unknown_key: the issue is an unknown key, likely a typo that explains other issues
            (a misspelt key is also a missing one), so it is reported first.
    """

    message: str
    path: tuple[PathPart, ...] = ()
    column: str | None = None
    unknown_key: bool = False


class ColumnIssues(Exception):
    """Raised by the column hook: the problems of one column, with paths relative to it."""

    def __init__(self, column: str | None, issues: Sequence[Issue]) -> None:
        super().__init__(column, issues)
        self.column = column
        self.issues = tuple(issues)


#: A mapping key shown after a dot in a field path; any other key is shown in ``[...]``.
_PLAIN_KEY = re.compile(r"[\w$@*/:+-]+")


def render_path(path: Iterable[PathPart]) -> str:
    """``("models", 1, "timeout")`` → ``"models[1].timeout"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and not _PLAIN_KEY.fullmatch(str(part)):
            out += f"[{str(part)!r}]"  # a key with spaces or operators: a condition
        else:
            out += f".{part}" if out else str(part)
    return out


def suggest(word: object, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, if any is close enough to be a likely typo."""
    if not isinstance(word, str):
        return None
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: object, known: Sequence[str]) -> str:
    """``unknown key 'hihg'; did you mean 'high'?`` or a list of the allowed keys."""
    guess = suggest(key, known)
    if guess is not None:
        return f"unknown key {key!r}; did you mean {guess!r}?"
    allowed = ", ".join(known) if known else "none"
    return f"unknown key {key!r} (allowed: {allowed})"


def misplaced_key_message(
    key: object, known: Sequence[str], elsewhere: Iterable[str], where: str
) -> str:
    """:func:`unknown_key_message` for a mapping whose neighbour (a column beside its kind's
    parameters) takes other keys: a key that is, or is a typo of, one of ``elsewhere`` and
    of none of ``known`` is said to belong ``where``."""
    others = [name for name in elsewhere if name not in known]
    if key in others:
        return f"{key!r} belongs {where}"
    guess = suggest(key, [*known, *others])  # the closest of both
    if guess in others:
        return f"unknown key {key!r}; did you mean {guess!r}? (it belongs {where})"
    return unknown_key_message(key, known)


def _extra_key_message(key: object, cls: Any) -> str:
    """The message of a key that is no field of ``cls``."""
    known = _known_fields(cls)
    if isinstance(cls, type) and issubclass(cls, ColumnConfig):
        kind = getattr(cls, "kind", None)
        beside = f", beside {kind!r}" if isinstance(kind, str) else ""
        where = f"at the column level{beside}, not inside it"
        return misplaced_key_message(key, known, _COMMON_FIELDS, where)
    return unknown_key_message(key, known)


def _note_part(exc: BaseException) -> tuple[PathPart, ...]:
    for note in reversed(getattr(exc, "__notes__", ())):
        if isinstance(note, AttributeValidationNote):
            return (note.name,)
        if isinstance(note, IterableValidationNote):
            return (note.index,)
    return ()


def _is_missing_key(exc: BaseException) -> bool:
    if not isinstance(exc, KeyError):
        return False
    part = _note_part(exc)
    return bool(part) and exc.args == part


def _known_fields(cls: Any) -> list[str]:
    if not (isinstance(cls, type) and attrs.has(cls)):
        return []
    names = [a.name for a in attrs.fields(cls)]
    if issubclass(cls, ColumnConfig):
        names = [n for n in names if n not in _COMMON_FIELDS]
    return names


def collect(exc: BaseException, path: tuple[PathPart, ...] = ()) -> list[Issue]:
    """Flatten an exception raised while structuring into issues, in the order found.

    Raises:
        BaseException: a leaf that is not a configuration problem (a bug) is re-raised.
    """
    if isinstance(exc, ColumnIssues):
        if exc.column is not None:
            return [attrs.evolve(issue, column=exc.column) for issue in exc.issues]
        return [attrs.evolve(issue, path=path + issue.path) for issue in exc.issues]
    if isinstance(exc, BaseValidationError):
        issues: list[Issue] = []
        for sub in exc.exceptions:
            issues.extend(collect(sub, path + _note_part(sub)))
        return issues
    if isinstance(exc, ForbiddenExtraKeysError):
        return [
            Issue(_extra_key_message(key, exc.cl), (*path, str(key)), unknown_key=True)
            for key in sorted(exc.extra_fields, key=str)
        ]
    if isinstance(exc, ConfigError):
        return [
            Issue(issue.message, (*path, issue.field) if issue.field else path, issue.column)
            for issue in exc.issues
        ]
    if _is_missing_key(exc):
        return [Issue("required field is missing", path)]
    if isinstance(exc, ValueError | TypeError | CattrsError):
        return [Issue(str(exc) or type(exc).__name__, path)]
    raise exc


def to_config_error(issues: Sequence[Issue]) -> ConfigError:
    """One error listing every issue (``ConfigError.issues``), the first one in its message.

    Unknown keys come first: a misspelt key also shows up as a missing one, and the typo is
    what the user needs to see.
    """
    ordered = sorted(issues, key=lambda issue: not issue.unknown_key)
    return ConfigError.from_issues(
        ConfigIssue(issue.message, issue.column, render_path(issue.path) or None)
        for issue in ordered
    )


def _convert(field: attrs.Attribute[Any], inst: Any, value: Any) -> Any:
    """``value`` through ``field``'s converter, as ``__init__`` calls it."""
    convert: Any = field.converter
    if isinstance(convert, attrs.Converter):  # called as (value, instance, field) whatever it takes
        call: Callable[[Any, Any, Any], Any] = cast(Any, convert).__call__
        return call(value, inst, field)
    return convert(value)


def find_invalid_field(cls: type[Any], values: Mapping[str, Any]) -> str | None:
    """The field whose converter or validator rejects ``values``, for errors raised by
    ``cls(**values)``.

    attrs validators raise a plain ``ValueError``/``TypeError`` that does not say which field
    failed; this rebuilds the instance without running ``__init__``, converting the values and
    running the validators one by one. ``None`` when no single field is to blame (for example
    a post-init check).

    Args:
        cls: an attrs class.
        values: the already structured keyword arguments that made ``cls(**values)`` fail.
    """
    try:
        inst = object.__new__(cls)
        fields = attrs.fields(cls)
        for field in fields:
            if field.name in values:
                value = values[field.name]
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                factory = field.default.factory
                value = factory(inst) if field.default.takes_self else factory()
            else:
                value = field.default
            if field.converter is not None and field.name in values:
                try:
                    value = _convert(field, inst, value)
                except (ValueError, TypeError):
                    converted: str = field.name
                    return converted
            object.__setattr__(inst, field.name, value)
        for field in fields:
            if field.validator is None:
                continue
            try:
                field.validator(inst, field, getattr(inst, field.name))
            except (ValueError, TypeError):
                invalid: str = field.name
                return invalid
    except Exception:  # the values were odd enough to defeat the reconstruction
        return None
    return None
