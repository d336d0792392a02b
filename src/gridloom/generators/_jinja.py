"""The one Jinja environment gridloom renders user templates with: sandboxed, immutable,
strict about undefined names (a typo fails loudly instead of rendering an empty string)."""

from __future__ import annotations

import functools

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["template_env", "template_variables"]


@functools.cache
def template_env() -> ImmutableSandboxedEnvironment:
    """The shared sandboxed environment (autoescape off: outputs are data, not HTML)."""
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context, minus the environment's globals.

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse.
    """
    env = template_env()
    names = jinja2.meta.find_undeclared_variables(env.parse(source))
    return {name for name in names if name not in env.globals}
