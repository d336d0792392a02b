"""What a template may turn into text: data, never a Python object's internals.

``{{ topic.upper }}`` (the method, not its result), ``{{ range }}`` in a pipeline without a
``range`` column, ``{{ cycler(1, 2) }}`` render in Python as ``<built-in method upper of str
object at 0x7f...>``: a memory address, different on every run, written into the dataset or
sent in a prompt as if it were a value. :func:`text_value` refuses such a value (a function,
method, class, module, or an object with no text of its own) with an error that says what
it is; it is the environment's ``finalize`` (every ``{{ }}`` output), and ``~``, ``join``
and ``string`` pass their operands through it too. Lists, tuples, dicts and sets are
searched (up to :data:`MAX_DEPTH` levels): ``{{ [topic.upper] }}`` is refused the same way.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import jinja2

__all__ = ["MAX_DEPTH", "NotDataError", "text_value"]

#: How deep :func:`text_value` looks into nested containers (the output limit bounds their
#: size; deeper levels print as data or as Python would).
MAX_DEPTH = 32

#: Values that are their own text: most outputs, checked in one lookup.
_TEXT_TYPES = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = (list, tuple, dict, set, frozenset)
_MODULE = types.ModuleType


def _default_text(cls: type, method: str) -> bool:
    """Whether ``cls`` prints through ``object``'s own method (its name and address)."""
    return bool(getattr(cls, method) is getattr(object, method))


class NotDataError(TypeError):
    """A template rendered a function, method, class, module or object as text."""


def _what(value: Any) -> str | None:
    """What ``value`` is when it is not data (for the message), else ``None``."""
    if isinstance(value, jinja2.Undefined):  # raises its own error when printed
        return None
    if isinstance(value, type):
        return f"the class {value.__name__!r}"
    if isinstance(value, _MODULE):
        return f"the module {value.__name__!r}"
    if callable(value):
        name = getattr(value, "__name__", None)
        kind = "method" if getattr(value, "__self__", None) is not None else "function"
        if isinstance(name, str):
            return f"the {kind} {name!r}"
        return f"a callable {type(value).__name__!r} object"
    cls = type(value)
    if _default_text(cls, "__str__") and _default_text(cls, "__repr__"):
        return f"a {cls.__name__!r} object, which has no text of its own"
    return None


def _find(value: Any, depth: int) -> str | None:
    if isinstance(value, _CONTAINERS) and depth < MAX_DEPTH:
        if isinstance(value, dict):
            return _first(value.keys(), depth) or _first(value.values(), depth)
        return _first(value, depth)
    return _what(value)


def _first(items: Iterable[Any], depth: int) -> str | None:
    """What the first item of ``items`` that is not data is (see :func:`_what`)."""
    text_types = _TEXT_TYPES
    for item in items:
        if type(item) not in text_types:
            found = _find(item, depth + 1)
            if found is not None:
                return found
    return None


def text_value(value: Any) -> Any:
    """``value`` unchanged when it is data (or holds only data).

    Raises:
        NotDataError: it is, or holds, a function, method, class, module or an object that
            prints as its memory address.
    """
    if type(value) in _TEXT_TYPES:
        return value
    found = _find(value, 0)
    if found is not None:
        raise NotDataError(
            f"the template outputs {found}, not a value: a function, method, class or"
            " module is never data (call it, as in x.upper(), or output a column)"
        )
    return value
