"""``subcategory``: a value drawn from the list that belongs to the row's parent category."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._kind import ColumnKind
from ..config._validators import check_scalars, scalar_lists, scalar_problem
from ..errors import ConfigError, GenerationError
from ..generators._dtypes import normalize_values, short_repr
from ..generators._factory import BuildContext
from ..generators.base import BatchContext, RowFailure
from ..generators.sampling import Sampler
from .category import CategoryColumn

__all__ = ["KIND", "SubcategoryColumn", "SubcategorySampler"]


@frozen(kw_only=True)
class SubcategoryColumn(ColumnConfig):
    """A value drawn from the list that belongs to the row's ``parent`` category value.

    Attributes:
        parent: the category column this one is conditioned on.
        values: for each value of the parent, the values this column may take (keys and
            values follow the rules of ``category`` values).
    """

    kind: ClassVar[str] = "subcategory"
    parent: str
    values: dict[Any, tuple[Any, ...]] = attrs.field(converter=scalar_lists)

    @values.validator
    def _check_values(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError("values must map each parent value to a non-empty list")
        for key, options in value.items():
            problem = scalar_problem(key)
            if problem is not None:
                raise ValueError(f"values: key {problem}")
            if not options:
                raise ValueError(f"values[{key!r}] is empty")
            check_scalars(f"values[{key!r}]", options)

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        return {**super().direct_references(), "parent": (self.parent,)}


class SubcategorySampler(Sampler):
    """Draws from the list that a :class:`SubcategoryColumn` maps the row's parent value to;
    reads the parent column from ``ctx.columns``."""

    def __init__(self, config: SubcategoryColumn):
        keys = list(config.values)
        flat = [option for key in keys for option in config.values[key]]
        kind, normalized = normalize_values(flat)
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self.options: dict[Hashable, tuple[Any, ...]] = {}
        start = 0
        for key in keys:
            stop = start + len(config.values[key])
            self.options[key] = normalized[start:stop]
            start = stop

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One draw per row from the options of that row's parent value."""
        parent = self.config.parent
        try:
            parents = ctx.columns[parent]
        except KeyError:
            raise GenerationError(
                f"column {self.name!r}: parent column {parent!r} is not in the batch"
            ) from None
        # One uniform draw per row of the row group, mapped onto that row's options: a row's
        # value depends on its position only, never on which other rows are live.
        count = len(ctx.group_row_ids) if ctx.group_row_ids is not None else len(ctx.row_ids)
        rng = ctx.rng
        draws = [rng.random() for _ in range(count)]
        positions = ctx.positions() or range(len(ctx.row_ids))
        out: list[Any] = []
        for value, position in zip(parents, positions, strict=True):
            try:
                options = self.options[value]
            except (KeyError, TypeError):
                out.append(
                    RowFailure(
                        GenerationError(
                            f"column {self.name!r}: parent {parent!r} value {short_repr(value)}"
                            " has no entry in values (known: "
                            f"{', '.join(map(short_repr, self.options))})"
                        )
                    )
                )
                continue
            out.append(options[min(int(draws[position] * len(options)), len(options) - 1)])
        return out


def _build(column: SubcategoryColumn, ctx: BuildContext) -> SubcategorySampler:
    parent = ctx.columns.get(column.parent)
    if not isinstance(parent, CategoryColumn):
        what = "no column" if parent is None else f"a {type(parent).__name__}"
        raise ConfigError(
            f"parent {column.parent!r} must be a category column, but it is {what}",
            column=column.name,
            field="parent",
        )
    _kind, parent_values = normalize_values(parent.values)
    missing = [value for value in parent_values if value not in column.values]
    if missing:
        raise ConfigError(
            f"values has no entry for parent {column.parent!r} value(s)"
            f" {', '.join(map(short_repr, missing))}",
            column=column.name,
            field="values",
        )
    return SubcategorySampler(column)


KIND = ColumnKind(config=SubcategoryColumn, build=_build, positional=("parent", "values"))
