"""``gaussian``: a number drawn from a normal distribution."""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._kind import ColumnKind
from ..config._validators import finite, int64, is_finite, positive
from ..generators.sampling import NumericSampler

__all__ = ["GAUSS_REACH", "KIND", "GaussianColumn", "GaussianSampler"]

#: ``random.gauss`` never strays further than this many standard deviations from the mean (its
#: Box-Muller draw is bounded by sqrt(-2 ln 2**-53) ≈ 8.6).
GAUSS_REACH = 9.0


@frozen(kw_only=True)
class GaussianColumn(ColumnConfig):
    """A number drawn from a normal distribution.

    Attributes:
        mean, stddev: the distribution's parameters (finite, ``stddev > 0``); draws stay within
            9 standard deviations of the mean, so ``abs(mean) + 9 * stddev`` must be a finite number
            (and below 2**63 with ``convert_to: int``).
        convert_to: store the value as ``int`` (rounded), ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "gaussian"
    mean: float = attrs.field(default=0.0, validator=finite)
    stddev: float = attrs.field(default=1.0, validator=positive)
    convert_to: ConvertTo | None = attrs.field(default=None)
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(int64))

    def _reach(self) -> float | None:
        """How far from zero a draw can go, ``|mean| + 9 stddev`` (``None``: invalid bounds)."""
        if not (is_finite(self.mean) and is_finite(self.stddev)):
            return None
        return abs(float(self.mean)) + GAUSS_REACH * float(self.stddev)

    @stddev.validator
    def _check_reach(self, _attribute: attrs.Attribute[Any], _value: float) -> None:
        reach = self._reach()
        if reach is not None and not math.isfinite(reach):
            raise ValueError(
                f"|mean| + {GAUSS_REACH:g} * stddev must be a finite number (draws would overflow)"
            )

    @convert_to.validator
    def _check_convert_to(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        reach = self._reach()
        if value == "int" and reach is not None and reach >= 2.0**63:
            raise ValueError(
                f"with convert_to: int, |mean| + {GAUSS_REACH:g} * stddev must be below 2**63"
                " (draws must fit in a 64-bit integer)"
            )


class GaussianSampler(NumericSampler):
    """Normal draws; ``convert_to: int`` rounds to the nearest integer."""

    def __init__(self, config: GaussianColumn):
        super().__init__(config.name, config.convert_to, "float", config.decimals)
        self.config = config

    def _draw(self, rng: random.Random) -> Any:
        return self.convert(rng.gauss(self.config.mean, self.config.stddev))


def _build(column: GaussianColumn, _ctx: object) -> GaussianSampler:
    return GaussianSampler(column)


KIND = ColumnKind(config=GaussianColumn, build=_build, positional=("mean", "stddev"))
