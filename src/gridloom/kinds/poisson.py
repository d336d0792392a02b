"""``poisson``: a count drawn from a Poisson distribution."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._kind import ColumnKind
from ..config._validators import positive
from ..generators._distributions import poisson_sampler
from ..generators.sampling import NumericSampler

__all__ = ["KIND", "POISSON_MEAN_MAX", "PoissonColumn", "PoissonSampler"]

#: The largest Poisson mean: counts near it are still exact in floating point (below 2**53).
POISSON_MEAN_MAX = 1e15


@frozen(kw_only=True)
class PoissonColumn(ColumnConfig):
    """A count drawn from a Poisson distribution with the given mean.

    Attributes:
        mean: the expected count (> 0, at most 1e15).
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "poisson"
    mean: float = attrs.field(validator=[positive, attrs.validators.le(POISSON_MEAN_MAX)])
    convert_to: ConvertTo | None = None


class PoissonSampler(NumericSampler):
    """Poisson counts (exact for any mean)."""

    def __init__(self, config: PoissonColumn):
        super().__init__(config.name, config.convert_to, "int")
        self.config = config
        self._sample = poisson_sampler(config.mean)

    def support(self) -> tuple[Any, Any] | None:
        """``[0, +inf)``, unless stored as text."""
        return None if self.config.convert_to == "string" else (0, None)

    def _draw(self, rng: random.Random) -> object:
        return self.convert(self._sample(rng))


KIND = ColumnKind(
    config=PoissonColumn, build=lambda column, _ctx: PoissonSampler(column), positional=("mean",)
)
