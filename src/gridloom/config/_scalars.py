"""Strict structuring of scalars: ``"5"`` is not an integer, ``"yes"`` is not a boolean.

The hooks the converter (:mod:`._converter`) registers for ``str``, ``int``, ``float``,
``bool``, datetimes, import paths and ``Literal`` choices.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, get_args

from ._issues import describe, suggest
from ._validators import INT64_MAX, INT64_MIN, float_or_none, text_problem

__all__ = [
    "literal_hook",
    "structure_bool",
    "structure_datetime",
    "structure_float",
    "structure_function",
    "structure_int",
    "structure_int_or_str",
    "structure_str",
]


def structure_int_or_str(obj: Any, _: Any) -> int | str:
    if isinstance(obj, bool) or not isinstance(obj, int | str):
        raise TypeError(f"expected a whole number or a string, got {describe(obj)}")
    return structure_str(obj, str) if isinstance(obj, str) else structure_int(obj, int)


def structure_str(obj: Any, _: Any) -> str:
    if not isinstance(obj, str):
        raise TypeError(f"expected a string, got {describe(obj)}")
    problem = text_problem(obj)
    if problem is not None:
        raise ValueError(f"the text {problem}")
    return obj


def structure_int(obj: Any, _: Any) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise TypeError(f"expected an integer, got {describe(obj)}")
    if not INT64_MIN <= obj <= INT64_MAX:
        raise ValueError(
            f"expected an integer that fits in 64 bits (at most {INT64_MAX}), got {describe(obj)}"
        )
    return obj


def structure_float(obj: Any, _: Any) -> float:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        raise TypeError(f"expected a number, got {describe(obj)}")
    number = float_or_none(obj)
    if number is None or not math.isfinite(number):
        shown = describe(obj) if number is None else repr(number)
        raise ValueError(f"expected a finite number, got {shown}")
    return number


def structure_bool(obj: Any, _: Any) -> bool:
    if not isinstance(obj, bool):
        raise TypeError(f"expected true or false, got {describe(obj)}")
    return obj


def structure_datetime(obj: Any, _: Any) -> dt.datetime:
    if isinstance(obj, dt.datetime):
        return obj
    if isinstance(obj, dt.date):  # YAML reads an unquoted 2024-01-31 as a date
        return dt.datetime.combine(obj, dt.time())
    if isinstance(obj, str):
        try:
            return dt.datetime.fromisoformat(obj)
        except ValueError:
            pass
        raise ValueError(
            f"expected an ISO 8601 datetime such as '2024-01-31T12:00:00', got {obj!r}"
        )
    raise TypeError(f"expected an ISO 8601 datetime string, got {describe(obj)}")


def structure_function(obj: Any, _: Any) -> str | Callable[..., Any]:
    if isinstance(obj, str) or callable(obj):
        return obj  # type: ignore[no-any-return]
    raise TypeError(f"expected an import path 'package.module:function', got {describe(obj)}")


#: Words YAML 1.1 (PyYAML) reads as booleans when unquoted: ``progress: off`` loads as False.
_YAML_BOOL_WORDS: dict[bool, tuple[str, ...]] = {
    True: ("on", "yes", "true", "y"),
    False: ("off", "no", "false", "n"),
}


def literal_hook(tp: Any) -> Callable[[Any, Any], Any]:
    choices = get_args(tp)
    # A choice spelt like a YAML boolean word stands for that boolean too, so the unquoted
    # word that YAML turned into true/false is still accepted (choices never contain bools).
    words = {
        flag: next((c for c in choices if isinstance(c, str) and c.lower() in spelt), None)
        for flag, spelt in _YAML_BOOL_WORDS.items()
    }

    def structure_literal(obj: Any, _: Any) -> Any:
        for choice in choices:
            if obj == choice and type(obj) is type(choice):
                return choice
        if isinstance(obj, bool) and words[obj] is not None:
            return words[obj]
        listed = ", ".join(repr(c) for c in choices)
        guess = suggest(obj, [c for c in choices if isinstance(c, str)])
        hint = f"; did you mean {guess!r}?" if guess else ""
        if isinstance(obj, bool):
            hint += " (YAML reads unquoted on/off/yes/no as true/false: quote the word)"
        return_msg = f"must be one of {listed}, got {obj!r}{hint}"
        raise ValueError(return_msg)

    return structure_literal
