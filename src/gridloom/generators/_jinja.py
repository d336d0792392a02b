"""The one Jinja environment gridloom renders user templates with: sandboxed, immutable,
strict about undefined names (a typo fails loudly instead of rendering an empty string), and
bounded.

A template is compiled once, by :func:`compile_template`: its syntax tree is checked for what
templates may not do (:func:`~._template_safety.template_problems`, refused as a
:class:`~gridloom.errors.TemplateError` naming the column and field), classified (*simple*
templates, without loops, macros or heavy operators, render inline on the event loop; the
others in a worker thread), instrumented (loops count their iterations, ``~`` and literals
check their size) and compiled. Compiling never runs the template's work: the operators and
filters that could be expensive are intercepted, and Jinja does not fold intercepted
operations or context filters into constants.

:meth:`CompiledTemplate.render` renders one row under a fresh
:class:`~._template_limits.RenderBudget` (the limits of :class:`~._template_limits.TemplateLimits`:
output size, loop iterations, integer size, CPU time); a violation raises
:class:`~gridloom.errors.TemplateLimitExceeded`, which fails the cell.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ConfigIssue, TemplateError, TemplateLimitExceeded
from ._template_filters import GUARDED_FILTERS, GUARDED_GLOBALS, bounded_concat
from ._template_limits import (
    METHOD_CHECKS,
    RenderBudget,
    TemplateLimits,
    bounded_join,
    check_binop,
    check_value,
    current_budget,
    set_budget,
)
from ._template_output import text_value
from ._template_safety import instrument, is_simple, template_problems

__all__ = [
    "CompiledTemplate",
    "TemplateLimits",
    "compile_template",
    "parse_template",
    "template_env",
    "template_names",
    "template_variables",
]


#: Objects whose methods return values they already hold (``d.get(k)``, ``d.items()``): their
#: results are not checked again.
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _format_refusal(name: str) -> Callable[..., Any]:
    """What ``x.format`` / ``x.format_map`` reads as: a function of that name that refuses
    to run (so ``{{ x.format_map }}`` is refused as a method, not printed)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SecurityError(
            f"str.{name} is not allowed in templates (its fields can read attributes); use the"
            " format filter ('%s'|format(x)) or ~"
        )

    refuse.__name__ = refuse.__qualname__ = name
    return refuse


_REFUSALS = {name: _format_refusal(name) for name in ("format", "format_map")}


def _plain_text(value: Any) -> str:
    """A bare ``{{ name }}``'s text, as Jinja's ``finalize`` then ``str`` make it."""
    return value if type(value) is str else str(text_value(value))


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every potentially expensive operation checked against the
    render's budget: ``+ * ** %`` (intercepted, hence never folded at compile time), calls
    (the clock; string methods that can build large results), the output of macros and
    blocks (``concat``), and the filters and globals of :mod:`._template_filters`."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=text_value,
        )
        self.filters.update(GUARDED_FILTERS)
        self.globals.update(GUARDED_GLOBALS)
        self.concat = bounded_concat  # type: ignore[method-assign]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current_budget()
        check_binop(operator, left, right, budget)
        result = self.binop_table[operator](left, right)
        check_value(result, budget)
        return result

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        owner = getattr(obj, "__self__", None)
        if isinstance(obj, types.BuiltinMethodType) and owner is not None:
            if isinstance(owner, _CONTAINERS):
                return super().call(context, obj, *args, **kwargs)
            if isinstance(owner, str | bytes | bytearray | int):
                if obj.__name__ == "join" and len(args) == 1 and not kwargs:
                    if not self.is_safe_callable(obj):  # pragma: no cover - str.join is safe
                        raise SecurityError(f"{obj!r} is not safely callable")
                    result = bounded_join(owner, iter(args[0]), budget)
                    check_value(result, budget)
                    return result
                check = METHOD_CHECKS.get(obj.__name__)
                if check is not None:
                    check(owner, args, kwargs, budget)
        result = super().call(context, obj, *args, **kwargs)
        check_value(result, budget, "a value a call returned")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if (
            isinstance(value, types.MethodType | types.BuiltinMethodType)
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return _REFUSALS[value.__name__]
        return None


@functools.cache
def template_env() -> ImmutableSandboxedEnvironment:
    """The shared sandboxed environment (autoescape off: outputs are data, not HTML)."""
    return _BoundedEnvironment()


def parse_template(source: str) -> jinja2.nodes.Template:
    """The syntax tree of a template.

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse (also when it is nested too
            deeply for the parser, or holds an integer literal too long to read).
    """
    try:
        return template_env().parse(source)
    except jinja2.TemplateSyntaxError:
        raise
    except (ValueError, RecursionError) as exc:
        raise jinja2.TemplateSyntaxError(str(exc) or type(exc).__name__, 1) from exc


class _NameTracker(CodeGenerator):
    """Runs Jinja's code generator for its symbol tables only (writes nothing) and keeps
    every name a frame resolves from the render context, environment globals included."""

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment, "<names>", "<names>")
        self.names: set[str] = set()

    def write(self, x: str) -> None:
        pass

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, name in frame.symbols.loads.values():
            if action == "resolve":
                self.names.add(name)


def template_names(source: str) -> set[str]:
    """Every name a template reads from its render context: the row's values, or, for the
    names the row lacks, the environment's globals (``range``, ``dict``, ``lipsum`` ...).

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse.
    """
    tracker = _NameTracker(template_env())
    tracker.visit(parse_template(source))
    return tracker.names


def template_variables(source: str, *, columns: Collection[str]) -> set[str]:
    """The columns a template reads: the names it reads from its context, except the
    environment's globals that are not among ``columns`` (a column named ``range`` is read
    as the column; without such a column ``range`` is Jinja's function).

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse.
    """
    env_globals = template_env().globals
    return {name for name in template_names(source) if name in columns or name not in env_globals}


class CompiledTemplate:
    """A checked, instrumented, compiled template of one field of one column.

    Attributes:
        simple: rendering it certainly takes only a moment (no loops, macros or calls beyond
            a few string methods, no ``*``, ``**``, ``%``): it may render on the event loop.
            Other templates render in a worker thread.
        limits: what one render may use.
    """

    __slots__ = ("_plain", "_prefix", "_template", "limits", "simple")

    def __init__(
        self,
        template: jinja2.Template,
        *,
        simple: bool,
        limits: TemplateLimits,
        prefix: str,
        plain: tuple[tuple[bool, str], ...] | None = None,
    ):
        self._template = template
        self.simple = simple
        self.limits = limits
        self._prefix = prefix
        self._plain = plain

    def render(self, row: Mapping[str, Any]) -> str:
        """The template rendered over ``row`` (not stripped).

        Raises:
            TemplateLimitExceeded: the render went past a limit (naming the column, the field
                and the limit).
            Exception: whatever the template raised (an undefined name, a refused attribute,
                a division by zero ...).
        """
        plain = self._plain
        if plain is not None:
            # Text and bare names only: what Jinja would do (str() of each value), without
            # building its context. A missing name takes Jinja's path for its exact error.
            try:
                text = "".join([_plain_text(row[part]) if name else part for name, part in plain])
            except KeyError:
                pass
            else:
                if len(text) <= self.limits.max_output_chars:
                    return text
        template = self._template
        budget = RenderBudget(self.limits, timed=not self.simple)
        previous = set_budget(budget)
        try:
            context = template.new_context(row if isinstance(row, dict) else dict(row))
            if self.simple:
                text = "".join(template.root_render_func(context))
                if len(text) > budget.max_chars:
                    budget.fits(len(text), "the rendered text")
            else:
                text = bounded_concat(template.root_render_func(context))
        except TemplateLimitExceeded as exc:
            raise TemplateLimitExceeded(f"{self._prefix}: {exc}") from None
        finally:
            set_budget(previous)
        return text


def _syntax_error(exc: jinja2.TemplateSyntaxError, column: str, field: str) -> TemplateError:
    return TemplateError(
        f"template does not parse: {exc.message} (line {exc.lineno})", column=column, field=field
    )


def compile_template(
    source: str, *, column: str, field: str, limits: TemplateLimits | None = None
) -> CompiledTemplate:
    """Check and compile the template in ``field`` of ``column``.

    Raises:
        TemplateError: the template does not parse, or uses what templates may not (every
            such use is listed, with its line).
    """
    env = template_env()
    try:
        tree = parse_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, column, field) from exc
    problems = template_problems(tree)
    if problems:
        first, *rest = problems
        raise TemplateError(
            first,
            column=column,
            field=field,
            more=[ConfigIssue(problem, column, field) for problem in rest],
        )
    simple = is_simple(tree)
    plain = plain_parts(tree)
    try:
        template = env.from_string(instrument(tree, env))
    except jinja2.TemplateSyntaxError as exc:  # an unknown filter or test
        raise _syntax_error(exc, column, field) from exc
    except RecursionError as exc:  # nested too deeply for the code generator
        raise TemplateError(
            "template does not parse: it is nested too deeply", column=column, field=field
        ) from exc
    return CompiledTemplate(
        template,
        simple=simple,
        limits=limits if limits is not None else TemplateLimits(),
        prefix=f"column {column!r}, field {field!r}",
        plain=plain,
    )


def plain_parts(tree: jinja2.nodes.Template) -> tuple[tuple[bool, str], ...] | None:
    """A template of text and bare ``{{ name }}`` substitutions as ``(is_name, text or name)``
    parts, or ``None`` for any other template (filters, attributes, tags, expressions)."""
    parts: list[tuple[bool, str]] = []
    for node in tree.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                parts.append((False, child.data))
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load":
                parts.append((True, child.name))
            else:
                return None
    return tuple(parts)
