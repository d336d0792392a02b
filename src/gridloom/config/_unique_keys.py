"""Finding a key given twice in one mapping of a config file.

A YAML or JSON reader keeps the last of two equal keys and drops the first without a word:
``columns:`` written twice loses every column of the first list. A config file is refused
instead, naming the key, the mapping that holds it (as a field path) and both lines.

YAML keys are compared as they load (``1`` and ``1.0``, ``true`` and ``yes`` are the same
key), and a key a merge (``<<: *defaults``) brings in may be set again: that is what a merge
is for. JSON keys are compared as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import yaml

from .._attrs import frozen
from ._issues import PathPart, render_path

__all__ = [
    "DuplicateKey",
    "DuplicateKeyFound",
    "check_json_pairs",
    "json_duplicate",
    "yaml_duplicate",
]

_MERGE = "tag:yaml.org,2002:merge"


@frozen(kw_only=True)
class DuplicateKey:
    """A key given twice in one mapping.

    Attributes:
        key: the key (as loaded).
        path: where the mapping holding it is, from the document's top (empty: the top).
        line: the line (from 1) of its second appearance; ``None`` when not known.
        column: the column (from 1) of its second appearance; ``None`` when not known.
        first_line: the line of its first appearance; ``None`` when not known.
    """

    key: Any
    path: tuple[PathPart, ...] = ()
    line: int | None = None
    column: int | None = None
    first_line: int | None = None

    @property
    def field(self) -> str:
        """The field path of the key (``columns[0].uniform``)."""
        key = self.key if isinstance(self.key, str) else repr(self.key)
        return render_path((*self.path, key))

    def describe(self) -> str:
        """The problem in words, with its place."""
        where = f"in {render_path(self.path)}" if self.path else "at the top level"
        lines = ""
        if self.line is not None and self.first_line is not None:
            column = f", column {self.column}" if self.column is not None else ""
            lines = f" (first at line {self.first_line}, again at line {self.line}{column})"
        return (
            f"the key {self.key!r} is given twice {where}{lines}; a mapping holds each key"
            " once, and the later value would silently replace the earlier one"
        )


# --------------------------------------------------------------------------- YAML


def yaml_duplicate(root: yaml.Node, key_of: Callable[[yaml.Node], Any]) -> DuplicateKey | None:
    """The first key given twice in a mapping of the composed YAML document ``root``.

    Args:
        root: the document's node.
        key_of: builds the value of a scalar key node (the loader's constructor, so keys
            compare as they load).
    """
    seen: set[int] = set()  # nodes already walked (an alias repeats a node)
    todo: list[tuple[yaml.Node, tuple[PathPart, ...]]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(
                (item, (*path, index)) for index, item in reversed(list(enumerate(node.value)))
            )
        elif isinstance(node, yaml.MappingNode):
            found = _mapping_duplicate(node, path, key_of, todo)
            if found is not None:
                return found
    return None


def _mapping_duplicate(
    node: yaml.MappingNode,
    path: tuple[PathPart, ...],
    key_of: Callable[[yaml.Node], Any],
    todo: list[tuple[yaml.Node, tuple[PathPart, ...]]],
) -> DuplicateKey | None:
    keys: dict[Hashable, yaml.Node] = {}
    children: list[tuple[yaml.Node, tuple[PathPart, ...]]] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            children.append((value_node, path))
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a list or mapping as a key: the loader refuses it
        key = key_of(key_node)
        try:
            first = keys.get(key)
        except TypeError:  # pragma: no cover - scalars are hashable
            continue
        if first is not None:
            return DuplicateKey(
                key=key,
                path=path,
                line=key_node.start_mark.line + 1,
                column=key_node.start_mark.column + 1,
                first_line=first.start_mark.line + 1,
            )
        keys[key] = key_node
        children.append((value_node, (*path, key if isinstance(key, str | int) else str(key))))
    todo.extend(reversed(children))
    return None


# --------------------------------------------------------------------------- JSON


class DuplicateKeyFound(ValueError):
    """Raised by :func:`check_json_pairs` for a JSON object that names a key twice."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def check_json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: the object, unless a key is given twice.

    Raises:
        DuplicateKeyFound: a key is given twice.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyFound(key)
            seen.add(key)
    return obj


#: A JSON string, or one of the characters that shape a document.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]', re.DOTALL)


@attrs.define
class _Frame:
    """An object or array being scanned."""

    is_object: bool
    keys: dict[str, int] = attrs.Factory(dict)  # key -> line
    key: str | None = None
    expect_key: bool = True
    index: int = 0

    def part(self) -> PathPart:
        return (self.key or "") if self.is_object else self.index


def json_duplicate(text: str) -> DuplicateKey | None:
    """The first key given twice in an object of the JSON document ``text``, with its place.

    Meant for a document :func:`check_json_pairs` refused: the text up to that object is
    valid JSON, which this scan relies on.
    """
    stack: list[_Frame] = []
    line, last = 1, 0
    for match in _JSON_TOKEN.finditer(text):
        token, start = match.group(), match.start()
        line += text.count("\n", last, start)
        last = start
        top = stack[-1] if stack else None
        if token in "{[":
            stack.append(_Frame(is_object=token == "{"))
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == ",":
            if top is not None and top.is_object:
                top.expect_key = True
            elif top is not None:
                top.index += 1
        elif token == ":":
            if top is not None:
                top.expect_key = False
        elif top is not None and top.is_object and top.expect_key:
            key = json.loads(token)
            first = top.keys.get(key)
            if first is not None:
                column = start - (text.rfind("\n", 0, start) + 1) + 1
                path = tuple(frame.part() for frame in stack[:-1])
                return DuplicateKey(key=key, path=path, line=line, column=column, first_line=first)
            top.keys[key] = line
            top.key = key
    return None
