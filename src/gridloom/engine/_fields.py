"""Compile-time checks of the fields templates read from structured columns.

The value of an ``llm_structured`` or ``llm_judge`` column is a parsed JSON object whose shape
its JSON Schema declares (a judge's is :func:`~gridloom.generators.llm.judge_schema`). A
template reading ``{{ answer.replyy }}`` when the schema only has ``reply`` fails on every row
at run time; :func:`field_problems` finds such reads in the template's syntax tree
(``x.a``, ``x["a"]``, ``x.a[0].b``) and reports them before anything runs.

Only what is certainly wrong is reported. A read is followed through the schema while each
step is a constant name or index into an object with declared ``properties`` or an array with
``items``; it stops, silently, at a dynamic step (``x[key]``), a name the template binds itself
(``{% set %}``, a loop variable, a macro argument), a dict method (``x.items()``), a schema
with combinators (``anyOf``, ``oneOf``, ``allOf``, ``not``, ``if``), pattern properties, a
``$ref`` that does not point inside the schema, or an object whose ``additionalProperties``
lets other fields in. An object schema that does not mention ``additionalProperties`` is read
as closed: the model is asked for the declared fields, and a name outside them is a typo far
more often than a field the model invents (``additionalProperties: true`` opens it). The last
step of a read guarded by ``| default(...)`` or ``is defined`` may be missing, and so may the
same field wherever else the template reads it (``{% if x.a is defined %}{{ x.a }}``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from jinja2 import nodes

from .._attrs import frozen
from ..config import ColumnConfig
from ..generators._jinja import parse_template

__all__ = ["FieldProblem", "Read", "field_problems", "reads", "value_schema"]

#: One step of a read: ``("attr", name)`` for ``x.name``, ``("item", key)`` for ``x[key]``
#: with a constant key, ``None`` for a key computed at run time.
Step = tuple[Literal["attr", "item"], str | int] | None

#: Keywords after which a schema's properties are not the whole story.
_OPEN_KEYWORDS = frozenset(
    {
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
        "$dynamicRef",
        "$recursiveRef",
    }
)
#: Keywords that may sit beside ``$ref`` without changing what it points at.
_ANNOTATIONS = frozenset(
    {"$ref", "$defs", "definitions", "$schema", "$comment", "description", "title", "examples"}
)
#: Names Jinja finds on a dict before it looks for a key of that name (``x.items``).
_DICT_ATTRIBUTES = frozenset(dir(dict))
#: Filters and tests that make a missing last step harmless.
_GUARD_FILTERS = frozenset({"default", "d"})
_GUARD_TESTS = frozenset({"defined", "undefined"})
#: Names Jinja itself binds in some scopes.
_SPECIAL_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
#: How many ``$ref`` hops are followed before giving up (a loop of references).
_MAX_REF_HOPS = 32


def value_schema(column: ColumnConfig) -> Mapping[str, Any] | None:
    """The JSON Schema of a column's value, for the kinds that declare one
    (:meth:`ColumnConfig.value_schema`)."""
    return column.value_schema()


@frozen
class Read:
    """A read of a column's value by a template: ``root`` then ``steps``.

    Attributes:
        root: the column read.
        steps: the attribute and item accesses, outermost last.
        guarded: the last step may be missing (``| default``, ``is defined``).
    """

    root: str
    steps: tuple[Step, ...]
    guarded: bool = False


def _bound_names(tree: nodes.Template) -> set[str]:
    """Names the template binds itself anywhere (assignments, loop targets, macro arguments,
    macros, imports): a column of that name is not what those reads see."""
    bound = {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}
    bound |= {macro.name for macro in tree.find_all(nodes.Macro)}
    bound |= {imp.target for imp in tree.find_all(nodes.Import)}
    for imp in tree.find_all(nodes.FromImport):
        bound |= {name if isinstance(name, str) else name[1] for name in imp.names}
    return bound


def _walk(node: nodes.Node, guarded: bool = False) -> Iterator[Read]:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        steps: list[Step] = []
        inner: nodes.Node = node
        while isinstance(inner, nodes.Getattr | nodes.Getitem):
            if isinstance(inner, nodes.Getattr):
                steps.append(("attr", inner.attr))
            else:
                arg = inner.arg
                value = arg.value if isinstance(arg, nodes.Const) else None
                if isinstance(value, str) or (
                    isinstance(value, int) and not isinstance(value, bool)
                ):
                    steps.append(("item", value))
                else:
                    steps.append(None)
                    yield from _walk(arg)
            inner = inner.node
        if isinstance(inner, nodes.Name) and inner.ctx == "load":
            yield Read(inner.name, tuple(reversed(steps)), guarded)
        else:
            yield from _walk(inner)
        return
    if isinstance(node, nodes.Filter | nodes.Test) and node.node is not None:
        guards = _GUARD_FILTERS if isinstance(node, nodes.Filter) else _GUARD_TESTS
        yield from _walk(node.node, node.name in guards)
        for child in node.iter_child_nodes(exclude=("node",)):
            yield from _walk(child)
        return
    for child in node.iter_child_nodes():
        yield from _walk(child)


def reads(source: str, roots: set[str]) -> list[Read]:
    """The reads of the columns ``roots`` in a template, in template order; reads of names the
    template binds itself are left out.

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse.
    """
    tree = parse_template(source)
    roots = roots - _bound_names(tree) - _SPECIAL_NAMES
    return [read for read in _walk(tree) if read.root in roots and read.steps]


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``schema`` with local ``$ref`` s followed; ``None`` when one cannot be."""
    for _ in range(_MAX_REF_HOPS):
        if not isinstance(schema, Mapping):
            return None
        ref = schema.get("$ref")
        if ref is None:
            return schema
        if not isinstance(ref, str) or not ref.startswith("#") or set(schema) - _ANNOTATIONS:
            return None
        target: Any = root
        for part in (p for p in ref[1:].split("/") if p):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return None
        schema = target
    return None


def _only(schema: Mapping[str, Any], kind: str) -> bool:
    """The schema admits values of JSON type ``kind`` (or null) and no other."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared == kind
    return isinstance(declared, list) and set(declared) - {"null"} == {kind}


@frozen
class FieldProblem:
    """A read of a field that the column's schema rules out.

    Attributes:
        read: the read at fault.
        at: how many of its steps lead to the object lacking the field.
        field: the missing field.
        known: the fields the object's schema declares, in schema order.
        closed_by_default: the object's schema does not mention ``additionalProperties``.
    """

    read: Read
    at: int
    field: str
    known: tuple[str, ...]
    closed_by_default: bool

    def message(self) -> str:
        """``'answer' has no field 'replyy' (its schema has: reply, confidence); did you mean
        'reply'?``"""
        where = self.read.root
        for step in self.read.steps[: self.at]:
            assert step is not None
            value = step[1]
            where += f"[{value}]" if isinstance(value, int) else f".{value}"
        listed = ", ".join(self.known) if self.known else "no fields"
        text = f"{where!r} has no field {self.field!r} (its schema has: {listed})"
        close = difflib.get_close_matches(self.field, self.known, n=1)
        if close:
            text += f"; did you mean {close[0]!r}?"
        if self.closed_by_default:
            text += " (if other fields may appear, set additionalProperties: true in its schema)"
        return text


def _check(read: Read, schema: Mapping[str, Any], tolerated: int) -> FieldProblem | None:
    """The first step of ``read`` that ``schema`` rules out, unless it comes at or after step
    ``tolerated`` (a guarded field)."""
    node: Mapping[str, Any] | None = schema
    for index, step in enumerate(read.steps):
        node = _resolve(node, schema)
        if node is None or step is None or _OPEN_KEYWORDS & set(node):
            return None
        how, key = step
        if isinstance(key, int):
            if not _only(node, "array"):
                return None
            node = node.get("items")
            continue
        properties = node.get("properties")
        additional = node.get("additionalProperties", False)
        if not _only(node, "object") or not isinstance(properties, Mapping) or additional:
            return None
        if how == "item" and key in properties:
            node = properties[key]
        elif key in _DICT_ATTRIBUTES:
            return None  # a dict method (x.items), not a field
        elif key in properties:
            node = properties[key]
        elif index >= tolerated:
            return None
        else:
            return FieldProblem(
                read,
                index,
                key,
                tuple(str(name) for name in properties),
                "additionalProperties" not in node,
            )
    return None


def field_problems(source: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[FieldProblem]:
    """Reads in the template ``source`` of fields that the schemas of the columns read rule
    out, in template order.

    Args:
        source: the template.
        schemas: column name → JSON Schema of its value, for the columns to check.

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse.
    """
    found = reads(source, set(schemas))
    guards = [read for read in found if read.guarded]
    problems: list[FieldProblem] = []
    for read in found:
        tolerated = min(
            (
                len(guard.steps) - 1
                for guard in guards
                if guard.root == read.root and read.steps[: len(guard.steps)] == guard.steps
            ),
            default=len(read.steps),
        )
        problem = _check(read, schemas[read.root], tolerated)
        if problem is not None:
            problems.append(problem)
    return problems
