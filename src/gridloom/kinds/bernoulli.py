"""``bernoulli``: 1 with a given probability, else 0."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._kind import ColumnKind
from ..config._validators import probability
from ..generators.sampling import NumericSampler

__all__ = ["KIND", "BernoulliColumn", "BernoulliSampler"]


@frozen(kw_only=True)
class BernoulliColumn(ColumnConfig):
    """1 with probability ``p``, else 0.

    Attributes:
        p: probability of 1.
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "bernoulli"
    p: float = attrs.field(validator=probability)
    convert_to: ConvertTo | None = None


class BernoulliSampler(NumericSampler):
    """1 with probability ``p``, else 0."""

    def __init__(self, config: BernoulliColumn):
        super().__init__(config.name, config.convert_to, "int")
        self.config = config
        self.p = config.p

    def support(self) -> tuple[Any, Any] | None:
        """``[0, 1]``, unless stored as text."""
        return None if self.config.convert_to == "string" else (0, 1)

    def _draw(self, rng: random.Random) -> object:
        return self.convert(1 if rng.random() < self.p else 0)


KIND = ColumnKind(
    config=BernoulliColumn, build=lambda column, _ctx: BernoulliSampler(column), positional=("p",)
)
