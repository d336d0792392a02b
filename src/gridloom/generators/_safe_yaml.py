"""Loading a model's YAML answer safely: plain data only, bounded, no alias bombs.

:func:`load_yaml` reads one YAML document into JSON-like data (dicts with string keys, lists,
strings, whole and finite decimal numbers, booleans, ``None``) and refuses everything else:

- **aliases** (``*name``): every one is refused, so an answer cannot expand a few lines into
  billions of nodes ("billion laughs"); anchors alone are harmless and ignored;
- **tags** other than the core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
  ``!!seq``, ``!!map``): no ``!!python/...``, ``!!binary``, ``!!set``, ``!!timestamp``;
- more than :data:`MAX_NODES` nodes or nesting deeper than :data:`MAX_DEPTH`;
- more than one document, non-finite numbers, mapping keys that are not scalars;
- a key given twice in one mapping (``a: 1`` then ``a: 2``): a reader would keep the last
  value and drop the first without a word, so the answer is ambiguous. Keys compare as they
  load (``1`` and ``0x1`` are the same key). ``<<`` is a plain key, as in YAML 1.2 (no
  merges, which need aliases anyway).

Plain scalars resolve like YAML 1.2's core schema, not YAML 1.1's: only ``true``/``false``
are booleans (``yes``, ``no``, ``on``, ``off`` stay strings) and dates stay strings. A scalar
key that is not a string (``200: ok``) becomes its JSON text (``"200"``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

__all__ = ["MAX_DEPTH", "MAX_NODES", "load_yaml"]

#: Most nodes (scalars, sequences, mappings) one answer may hold.
MAX_NODES = 200_000
#: Deepest nesting of sequences and mappings in one answer.
MAX_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map")
)


class _CoreResolver(Resolver):
    """YAML 1.2 core schema resolution of plain scalars (no timestamps, no ``yes``/``no``)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's registry


_CoreResolver.add_implicit_resolver(
    _CORE + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    _CORE + "int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    _CORE + "float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreResolver.add_implicit_resolver(
    _CORE + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _CoreConstructor(SafeConstructor):
    """Safe construction, with YAML 1.2 integers (``0o17``, no ``0b``, no sexagesimal)."""

    def construct_yaml_int(self, node: Any) -> int:
        text = str(self.construct_scalar(node))
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits)


_CoreConstructor.add_constructor(  # type: ignore[type-var]
    _CORE + "int", _CoreConstructor.construct_yaml_int
)


def _check_unique_keys(constructor: SafeConstructor, node: MappingNode) -> None:
    """Refuse a key given twice in the mapping ``node``."""
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = constructor.construct_object(key_node, deep=True)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.YAMLError(
                f"the key {key!r} is given twice in one mapping (again at line {line});"
                " give each key once"
            )
        seen.add(key)


class _BoundedLoader(Reader, Scanner, Parser, Composer, _CoreConstructor, _CoreResolver):
    """A safe loader that refuses aliases and tags beyond the core ones, and counts nodes."""

    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreConstructor.__init__(self)
        _CoreResolver.__init__(self)
        self._nodes = 0
        self._depth = 0

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            _check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not accepted")
        if isinstance(event, ScalarEvent | SequenceStartEvent | MappingStartEvent):
            tag = event.tag
            if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
                raise yaml.YAMLError(f"the tag {tag!r} is not accepted (plain data only)")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES} nodes")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` with scalar keys as strings; refuses non-finite numbers."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if key is not None and not isinstance(key, bool | int | float):
                    raise ValueError("the answer has a mapping key that is not a scalar")
                key = json.dumps(key)
            out[key] = _plain(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the answer holds {value}, not a finite number")
    return value


def load_yaml(text: str) -> Any:
    """The one YAML document in ``text``, as JSON-like data.

    Raises:
        ValueError: with a short, model-readable reason (the text is not one YAML document of
            plain data within the limits).
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        value = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        where = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        raise ValueError(f"the answer is not valid YAML: {exc.problem or exc}{where}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the answer is not usable YAML: {first}") from None
    except (TypeError, RecursionError) as exc:  # e.g. an unhashable (complex) mapping key
        raise ValueError(f"the answer is not usable YAML: {type(exc).__name__}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise ValueError(f"the answer is not usable YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return _plain(value)
