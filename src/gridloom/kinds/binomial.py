"""``binomial``: the number of successes in a number of trials."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._kind import ColumnKind
from ..config._validators import int64, probability
from ..generators._distributions import binomial_sampler
from ..generators.sampling import NumericSampler

__all__ = ["KIND", "BinomialColumn", "BinomialSampler"]


@frozen(kw_only=True)
class BinomialColumn(ColumnConfig):
    """The number of successes in ``n`` trials of probability ``p``.

    Attributes:
        n: number of trials (0 to 2**63 - 1).
        p: probability of success in each.
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "binomial"
    n: int = attrs.field(validator=[int64, attrs.validators.ge(0)])
    p: float = attrs.field(validator=probability)
    convert_to: ConvertTo | None = None


class BinomialSampler(NumericSampler):
    """Binomial counts (exact for any ``n``)."""

    def __init__(self, config: BinomialColumn):
        super().__init__(config.name, config.convert_to, "int")
        self.config = config
        self._sample = binomial_sampler(config.n, config.p)

    def support(self) -> tuple[Any, Any] | None:
        """``[0, n]``, unless stored as text."""
        return None if self.config.convert_to == "string" else (0, self.config.n)

    def _draw(self, rng: random.Random) -> object:
        return self.convert(self._sample(rng))


KIND = ColumnKind(
    config=BinomialColumn, build=lambda column, _ctx: BinomialSampler(column), positional=("n", "p")
)
