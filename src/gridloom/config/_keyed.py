"""Structure and unstructure hooks for families of one-key kinds (processors, tools)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError

from ._issues import ColumnIssues, collect, describe, suggest

__all__ = ["keyed_hooks"]


def keyed_hooks(
    converter: cattrs.Converter, what: str, kinds: Mapping[str, type[Any]]
) -> tuple[Callable[[Any, Any], Any], Callable[[Any], dict[str, Any]]]:
    """The structure and unstructure hooks of a family of one-key kinds (processors, tools):
    ``{<kind>: value}`` ↔ the kind's class, whose ``kind`` and ``shorthand`` class variables
    say the key and the field the key may hold directly."""
    base = next(iter(kinds.values())).__mro__[1]

    def structure(obj: Any, _: Any) -> Any:
        if isinstance(obj, base):
            return obj
        if not isinstance(obj, Mapping) or len(obj) != 1:
            raise TypeError(
                f"a {what} is a mapping with one key, its kind"
                f" ({', '.join(kinds)}), got {describe(obj)}"
            )
        ((kind, value),) = obj.items()
        cls = kinds.get(kind) if isinstance(kind, str) else None
        if cls is None:
            guess = suggest(kind, kinds)
            hint = f"; did you mean {guess!r}?" if guess else f" (kinds: {', '.join(kinds)})"
            raise ValueError(f"unknown {what} kind {kind!r}{hint}")
        shorthand = cls.shorthand
        # The key holds the shorthand field's value (always, or only when it is not a
        # mapping of parameters: ``{python: "m:f"}`` or ``{python: {function: "m:f", ...}}``).
        wrapped = shorthand is not None and (cls.shorthand_only or not isinstance(value, Mapping))
        params = {shorthand: value} if wrapped else value
        if not isinstance(params, Mapping):
            raise TypeError(f"{kind}: expected a mapping of parameters, got {describe(params)}")
        try:
            return converter.structure(params, cls)
        except ClassValidationError as exc:
            # Paths from the kind's key: a shorthand's one field is hidden.
            issues = [
                attrs.evolve(
                    issue,
                    path=(kind, *issue.path[1:])
                    if wrapped and issue.path[:1] == (shorthand,)
                    else (kind, *issue.path),
                )
                for issue in collect(exc)
            ]
            raise ColumnIssues(None, issues) from None

    def unstructure(config: Any) -> dict[str, Any]:
        flat: dict[str, Any] = converter.unstructure(config, unstructure_as=type(config))
        shorthand = config.shorthand
        others = [value for key, value in flat.items() if key != shorthand]
        if shorthand is not None and all(value is None for value in others):
            return {config.kind: flat[shorthand]}
        return {config.kind: flat}

    return structure, unstructure
