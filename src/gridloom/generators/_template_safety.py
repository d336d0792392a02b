"""What a template may do, read from its syntax tree before it is compiled.

Three passes over the tree :func:`jinja2.Environment.parse` returns:

* :func:`template_problems` — the reads the sandbox would refuse at run time, on every row,
  refused once at compile time instead (a :class:`~gridloom.errors.TemplateError` naming the
  column and field): attributes starting with ``_`` (``x.__class__``, ``x._private``), the
  internals of functions, frames and generators (``mro``, ``__globals__``, ``gi_frame`` ...),
  dunder keys (``x['__class__']``), ``|attr`` with such a name, calls of ``str.format`` /
  ``format_map`` (their ``{0.__class__}`` fields reach attributes), ``self``, and
  ``include`` / ``import`` / ``extends`` (a template is one string: there is nothing to load).
* :func:`is_simple` — whether a render is certainly short: no loop, macro or call (beyond a
  few string and dict methods), no ``*``, ``**`` or ``%``, only filters whose work is linear
  in their input. Such templates render inline on the event loop (a few microseconds); the
  others render in a worker thread, under the CPU time budget.
* :func:`instrument` — rewrites the tree so the render can be bounded: every ``for`` loop
  iterates through a counting filter, every ``~`` concatenation and every list, tuple or dict
  literal built from run-time values goes through a checking filter (see
  :mod:`._template_limits`). The filters' names hold a dot, which no template can write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import jinja2
from jinja2 import nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
)
from jinja2.visitor import NodeTransformer

__all__ = [
    "CONCAT_FILTER",
    "LOOP_FILTER",
    "VALUE_FILTER",
    "instrument",
    "is_simple",
    "template_problems",
]

#: Internal filters the instrumented tree calls (a dot cannot appear in a filter's name in
#: template source, so no template can call them itself).
LOOP_FILTER = "gridloom.loop"
CONCAT_FILTER = "gridloom.concat"
VALUE_FILTER = "gridloom.value"

#: Attribute names that reach Python internals (besides every name starting with ``_``):
#: a type's ``mro``, and the frames and code of generators, coroutines and tracebacks.
_INTERNAL_ATTRIBUTES = frozenset(
    {
        "mro",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        *UNSAFE_GENERATOR_ATTRIBUTES,
        *UNSAFE_COROUTINE_ATTRIBUTES,
        *UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    }
)
#: String methods whose replacement fields (``{0.__class__}``) read attributes.
_FORMAT_METHODS = frozenset({"format", "format_map"})
_DUNDER = re.compile(r"^__.*__$")

#: Filters whose work is linear in their input and whose output is bounded by the limits:
#: a template using only these (and no loop, macro or call) renders inline.
_SIMPLE_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "float",
        "forceescape",
        "format",
        "int",
        "items",
        "join",
        "last",
        "length",
        "lower",
        "replace",
        "round",
        "safe",
        "string",
        "striptags",
        "title",
        "tojson",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
        CONCAT_FILTER,
        VALUE_FILTER,
    }
)
#: Methods a simple template may call (all linear in their object).
_SIMPLE_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "get",
        "isalnum",
        "isalpha",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "items",
        "keys",
        "lower",
        "lstrip",
        "rfind",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "values",
    }
)
#: Larger templates render in a thread even without loops.
_SIMPLE_MAX_NODES = 1000


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    """``node`` and every node below it, children first (``a.b.c`` yields ``a.b`` before
    ``a.b.c``: problems come in reading order)."""
    for child in node.iter_child_nodes():
        yield from _walk(child)
    yield node


def _attribute_problem(name: str, *, data_key: bool = True) -> str | None:
    if name.startswith("_"):
        hint = f" (for a key of that name write x[{name!r}])" if data_key else ""
        if _DUNDER.match(name):
            hint = ""
        return (
            f"attribute {name!r} is private: templates may not read names starting with '_'{hint}"
        )
    if name in _INTERNAL_ATTRIBUTES:
        return (
            f"attribute {name!r} reaches Python internals and is not allowed in templates"
            f" (for a key of that name write x[{name!r}])"
        )
    return None


def template_problems(tree: nodes.Template) -> list[str]:
    """What the template may not do, one message per problem (with its line), in order."""
    problems: list[str] = []
    for node in _walk(tree):
        problem: str | None = None
        if isinstance(node, nodes.Getattr):
            problem = _attribute_problem(node.attr)
        elif isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str) and _DUNDER.match(key):
                problem = f"key {key!r} is private: templates may not read dunder names"
        elif isinstance(node, nodes.Filter | nodes.Test) and node.name == "attr":
            name = (
                node.args[0].value if node.args and isinstance(node.args[0], nodes.Const) else None
            )
            if isinstance(name, str):
                problem = _attribute_problem(name, data_key=False)
        elif isinstance(node, nodes.Call):
            target = node.node
            if isinstance(target, nodes.Getattr) and target.attr in _FORMAT_METHODS:
                problem = (
                    f"{target.attr}() is not allowed in templates (its fields can read"
                    " attributes); use the format filter ('%s'|format(x)) or ~"
                )
        elif isinstance(node, nodes.Name) and node.name == "self" and node.ctx == "load":
            problem = "'self' (the template's own internals) is not allowed in templates"
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            kind = type(node).__name__.lower().replace("fromimport", "from ... import")
            problem = (
                f"{{% {kind} %}} is not available: a template is one string, with nothing to load"
            )
        if problem is not None:
            problems.append(f"{problem} (line {node.lineno})")
    return problems


def is_simple(tree: nodes.Template) -> bool:
    """Whether rendering the template certainly takes only a moment: no loops, macros,
    recursion or calls beyond a few linear string and dict methods, no ``*``, ``**`` or
    ``%``, only linear filters, and not too many nodes."""
    for count, node in enumerate(_walk(tree), 1):
        if count > _SIMPLE_MAX_NODES:
            return False
        if isinstance(
            node,
            nodes.For | nodes.Macro | nodes.CallBlock | nodes.Mul | nodes.Pow | nodes.Mod,
        ):
            return False
        if isinstance(node, nodes.Filter) and node.name not in _SIMPLE_FILTERS:
            return False
        if isinstance(node, nodes.Call):
            target = node.node
            if not (isinstance(target, nodes.Getattr) and target.attr in _SIMPLE_METHODS):
                return False
    return True


def _filter(name: str, value: nodes.Node, like: nodes.Node) -> nodes.Filter:
    return nodes.Filter(value, name, [], [], None, None, lineno=like.lineno)


def _constant(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Pair):
        return _constant(node.key) and _constant(node.value)
    return isinstance(node, nodes.Const)


class _Instrument(NodeTransformer):
    """Wraps loops, concatenations and non-constant literals in the internal filters."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(LOOP_FILTER, node.iter, node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(CONCAT_FILTER, nodes.List(list(node.nodes), lineno=node.lineno), node)

    def _literal(self, node: nodes.List | nodes.Tuple | nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        if all(_constant(item) for item in node.items):
            return node
        return _filter(VALUE_FILTER, node, node)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._literal(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._literal(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":  # an assignment or loop target, not a value
            return node
        return self._literal(node)


def instrument(tree: nodes.Template, environment: jinja2.Environment) -> nodes.Template:
    """The tree with loops, concatenations and literals routed through the checking filters
    (modified in place and returned)."""
    result = _Instrument().visit(tree)
    assert isinstance(result, nodes.Template)
    result.set_environment(environment)
    return result
