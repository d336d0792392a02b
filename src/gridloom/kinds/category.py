"""``category``: a value drawn from a list of values, optionally weighted."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._kind import ColumnKind
from ..config._validators import as_finite, check_scalars, scalars, to_tuple
from ..generators._dtypes import arrow_type, normalize_dtype
from ..generators.base import DeferredOutputs
from ..generators.sampling import Sampler

__all__ = ["KIND", "CategoryColumn", "CategorySampler"]


@frozen(kw_only=True)
class CategoryColumn(ColumnConfig):
    """A value drawn from ``values``, optionally weighted.

    Attributes:
        values: the possible values: text, numbers (finite; integers within 64 bits), booleans
            or null; the column's type follows them. A date YAML reads from an unquoted
            ``2024-01-31`` is kept as its text.
        weights: relative weights, one per value (finite, >= 0, not all zero); uniform when
            omitted.
    """

    kind: ClassVar[str] = "category"
    values: tuple[Any, ...] = attrs.field(converter=scalars, validator=attrs.validators.min_len(1))
    weights: tuple[float, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(to_tuple)
    )

    @values.validator
    def _check_values(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        check_scalars("values", value)

    @weights.validator
    def _check_weights(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if len(value) != len(self.values):
            raise ValueError(f"weights has {len(value)} entries but values has {len(self.values)}")
        weights = [as_finite(f"weights[{i}]", w) for i, w in enumerate(value)]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
        if not math.isfinite(sum(weights)):
            raise ValueError("weights are too large: their sum is not a finite number")


class CategorySampler(Sampler):
    """Draws from a :class:`CategoryColumn`'s values, optionally weighted.

    The output type is inferred from the values (see :func:`infer_dtype`).
    """

    def __init__(self, config: CategoryColumn):
        kind, self.values = normalize_dtype(config.values)
        name = config.name
        super().__init__(
            name=name, outputs=DeferredOutputs((name,), lambda: {name: arrow_type(kind)})
        )
        self.config = config
        self._cum_weights = (
            list(itertools.accumulate(config.weights)) if config.weights is not None else None
        )

    def support(self) -> tuple[Any, Any] | None:
        """The smallest and largest value, when every value is a number."""
        numbers = [v for v in self.values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) != len(self.values):
            return None
        return (min(numbers), max(numbers))

    def _draw_many(self, rng: random.Random, count: int) -> list[Any]:
        return rng.choices(self.values, cum_weights=self._cum_weights, k=count)


def _build(column: CategoryColumn, _ctx: object) -> CategorySampler:
    return CategorySampler(column)


KIND = ColumnKind(config=CategoryColumn, build=_build, positional=("values",))
