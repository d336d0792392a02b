"""Checks of a whole parsed document, before its fields are structured: nesting, size,
non-finite numbers and text UTF-8 cannot encode, wherever they are."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..errors import ConfigError
from ._issues import Issue, PathPart, describe, render_path
from ._validators import text_problem

__all__ = ["MAX_CONFIG_VALUES", "MAX_NESTING", "by_column", "document_issues", "reported"]

#: How deeply lists and mappings may nest in a config (its top-level mapping is level 1).
MAX_NESTING = 64
#: Integers of more bits (about 3,000 digits) are refused: they could not be written back.
_MAX_INT_BITS = 10_000
#: How many values (scalars, lists and mappings, each counted where it appears) a config may hold.
MAX_CONFIG_VALUES = 1_000_000


def _too_deep(data: Any, path: tuple[PathPart, ...]) -> ConfigError:
    issue = by_column(data, Issue("", path[:8]))
    field = render_path(issue.path) + ("..." if len(path) > 8 else "")
    return ConfigError(
        f"lists and mappings nest more than {MAX_NESTING} levels deep (or contain themselves)",
        column=issue.column,
        field=field or None,
    )


def document_issues(data: Any) -> list[Issue]:
    """What a parsed document holds that no config may: numbers that are not finite (NaN,
    infinity) and text UTF-8 cannot encode (lone surrogates), anywhere, free-form fields
    included, in the order they appear.

    Raises:
        ConfigError: lists and mappings nest more than :data:`MAX_NESTING` levels deep (a
            structure that contains itself always does), or the document holds more than
            :data:`MAX_CONFIG_VALUES` values; nothing else is checked then.
    """
    issues: list[Issue] = []
    stack: list[tuple[Any, tuple[PathPart, ...], int, str]] = [(data, (), 1, "")]
    seen = 0
    while stack:
        obj, path, depth, what = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError(f"the config holds more than {MAX_CONFIG_VALUES:,} values")
        if isinstance(obj, str):
            problem = text_problem(obj)
            if problem is not None:
                issues.append(Issue(f"{what}the text {problem}", path))
        elif isinstance(obj, float):
            if not math.isfinite(obj):
                issues.append(Issue(f"{what}expected a finite number, got {obj!r}", path))
        elif isinstance(obj, int) and obj.bit_length() > _MAX_INT_BITS:
            # Python refuses to write out integers of more than 4,300 digits by default.
            issues.append(Issue(f"{what}an integer of more than 3,000 digits", path))
        elif isinstance(obj, Mapping | list | tuple):
            if depth > MAX_NESTING:
                raise _too_deep(data, path)
            items = list(obj.items()) if isinstance(obj, Mapping) else list(enumerate(obj))
            for key, value in reversed(items):
                part: PathPart = key if isinstance(key, str | int) else str(key)
                stack.append((value, (*path, part), depth + 1, ""))
                if isinstance(obj, Mapping):
                    stack.append((key, path, depth, f"mapping key {describe(key)}: "))
    return issues


def by_column(data: Any, issue: Issue) -> Issue:
    """``issue`` (path from the root) named by its column, as the column hook names issues."""
    path = issue.path
    columns = data.get("columns") if isinstance(data, Mapping) else None
    if len(path) < 2 or path[0] != "columns" or not isinstance(path[1], int):
        return issue
    if not isinstance(columns, list | tuple) or not 0 <= path[1] < len(columns):
        return issue
    column = columns[path[1]]
    name = column.get("name") if isinstance(column, Mapping) else None
    if not isinstance(name, str) or not name:
        return issue
    return attrs.evolve(issue, column=name, path=path[2:])


def reported(issue: Issue, found: Sequence[Issue]) -> bool:
    """Whether one of ``found`` is at ``issue``'s field or inside it."""
    size = len(issue.path)
    return bool(size) and any(
        other.column == issue.column and other.path[:size] == issue.path for other in found
    )
