"""Seed dataset fields whose names no template can read (``true``, ``none``, ``not`` ...).

A generated column with such a name is refused when the config is built
(:data:`~gridloom.config._columns.TEMPLATE_RESERVED_NAMES`). A seed field's name comes from a
file, which the user may not be able to change (a Hugging Face dataset), and a field no
template tries to read does no harm: it is copied to the output like any other. So such a
field is refused only when a template of the pipeline writes its name (``{{ none }}`` with a
seed field ``none``: Jinja reads the literal, not the field, and the output would silently
hold ``None``); otherwise one warning says the field is kept but cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import jinja2

from ..config import PipelineConfig
from ..config._columns import TEMPLATE_RESERVED_NAMES
from ..errors import ConfigError
from ..generators._condition import condition_source
from ..generators._jinja import template_env
from ._skip import FIELD as SKIP_FIELD

__all__ = ["seed_name_problems"]

log = logging.getLogger("gridloom.engine")

#: The reserved names a template can write meaning something else (Jinja's literals); the
#: others (``not``, ``self``) are an operator or refused in every template anyway.
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})


def _sources(config: PipelineConfig) -> Iterator[tuple[str, str, str]]:
    """Every template of the pipeline's columns as (column, field, source)."""
    for column in config.columns:
        for field, source in column.templates().items():
            yield column.name, f"{column.kind}.{field}", source
        if column.skip_when is not None:
            yield column.name, SKIP_FIELD, condition_source(column.skip_when)
        for condition in column.conditional_params or {}:
            yield column.name, f"conditional_params[{condition!r}]", condition_source(condition)


def _words(source: str) -> set[str]:
    """The names (identifiers and keywords) written in a template's tags."""
    try:
        return {value for _, kind, value in template_env().lex(source) if kind == "name"}
    except jinja2.TemplateSyntaxError:  # reported by the reference checks
        return set()


def seed_name_problems(fields: Sequence[str], config: PipelineConfig) -> list[ConfigError]:
    """The seed fields a template writes the name of but cannot read (each a
    :class:`~gridloom.errors.ConfigError` naming the field and the template); the other
    unreadable fields are logged once as warnings."""
    reserved = [name for name in fields if name in TEMPLATE_RESERVED_NAMES]
    if not reserved:
        return []
    problems: list[ConfigError] = []
    written: dict[str, tuple[str, str]] = {}
    for column, field, source in _sources(config):
        for name in sorted(_words(source) & _LITERALS.intersection(reserved)):
            written.setdefault(name, (column, field))
    for name in reserved:
        why = TEMPLATE_RESERVED_NAMES[name]
        if name in written:
            column, field = written[name]
            alt = name.capitalize() if name.islower() else name.lower()
            problems.append(
                ConfigError(
                    f"seed dataset field {name!r} cannot be read by templates ({why}), but this"
                    f" template writes {name!r}: rename the field in the seed data or leave it"
                    f" out with seed_dataset.columns (for the literal itself write {alt!r})",
                    column=column,
                    field=field,
                )
            )
        else:
            log.warning(
                "seed dataset field %r is kept in the output but templates cannot read it (%s)",
                name,
                why,
            )
    return problems
