"""A column's variants: the column with the parameters one of its ``conditional_params``
entries gives in place of its own."""

from __future__ import annotations

from typing import Any

import attrs
from cattrs.errors import ClassValidationError

from ._columns import ColumnConfig
from ._converter import converter
from ._issues import collect, to_config_error

__all__ = ["conditional_variant"]


def conditional_variant(column: ColumnConfig, condition: str) -> ColumnConfig:
    """``column`` with the parameters its ``conditional_params[condition]`` gives in place of
    its own (and no conditional parameters of its own).

    Raises:
        ConfigError: the parameters are not valid for the column's kind, naming
            ``conditional_params[<condition>].<field>``.
    """
    overrides = (column.conditional_params or {})[condition]
    # Without its conditions first: unstructuring them all for each one is quadratic.
    plain = attrs.evolve(column, conditional_params=None, skip_when=None, depends_on=(), drop=False)
    flat: dict[str, Any] = converter.unstructure(plain, unstructure_as=type(column))
    flat.update(overrides)
    try:
        variant: ColumnConfig = converter.structure(flat, type(column))
    except ClassValidationError as exc:
        issues = [
            attrs.evolve(issue, path=(f"conditional_params[{condition!r}]", *issue.path))
            for issue in collect(exc)
        ]
        raise to_config_error(
            [attrs.evolve(issue, column=column.name) for issue in issues]
        ) from None
    return variant
