"""``bernoulli_mixture``: zero, or with probability ``p`` a draw from a ``scipy.stats``
distribution (a zero-inflated distribution: spend that is mostly nothing, else log-normal)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._distribution import ScipyDistribution
from ..config._kind import ColumnKind
from ..config._validators import int64, probability
from ..generators.base import BatchContext
from ..generators.sampling import NumericSampler
from .scipy_dist import (
    frozen_distribution,
    group_generator,
    live_values,
    narrowed_support,
    to_int64_range,
)

__all__ = ["KIND", "BernoulliMixtureColumn", "BernoulliMixtureSampler"]


@frozen(kw_only=True)
class BernoulliMixtureColumn(ColumnConfig):
    """With probability ``p`` a draw from a ``scipy.stats`` distribution, else 0.

    Needs the ``scipy`` extra (``pip install 'gridloom[scipy]'``); ``dist`` is checked like a
    ``scipy`` column's distribution when the pipeline is validated. The value is an integer
    for a discrete distribution, else a float.

    For example:

        - name: spend
          bernoulli_mixture:
            p: 0.3
            dist: {distribution: lognorm, params: {s: 1.0, scale: 50}}

    Attributes:
        p: the probability of drawing from ``dist`` (``0 <= p <= 1``).
        dist: the distribution drawn from: ``{distribution: name, params: {...}}``.
        convert_to: store the value as ``int`` (rounded; draws beyond the 64-bit range are
            clamped to it), ``float`` or ``string``.
        decimals: round floats to this many decimal places.
    """

    kind: ClassVar[str] = "bernoulli_mixture"
    p: float = attrs.field(validator=probability)
    dist: ScipyDistribution
    convert_to: ConvertTo | None = None
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(int64))


class BernoulliMixtureSampler(NumericSampler):
    """Per row of the group, a uniform draw picks between 0 and a draw from the distribution.

    Runs in a worker thread, under a lock, like :class:`~gridloom.kinds.scipy_dist.ScipySampler`.
    """

    inline = False

    def __init__(self, config: BernoulliMixtureColumn):
        self.frozen, self.natural = frozen_distribution(
            config.name,
            "bernoulli_mixture.dist",
            config.dist.distribution,
            config.dist.params,
        )
        super().__init__(config.name, config.convert_to, self.natural, config.decimals)
        self.config = config
        self.lock = threading.Lock()

    def support(self) -> tuple[Any, Any] | None:
        """The distribution's support, widened to hold 0."""
        if self.config.convert_to == "string":
            return None
        low, high = narrowed_support(self.frozen, None, None)
        return (None if low is None else min(low, 0), None if high is None else max(high, 0))

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One choice and one draw per row of the group; the live rows' values, converted."""
        import numpy as np

        generator, count = group_generator(ctx)
        chosen = generator.random(count) < self.config.p
        with self.lock:
            drawn = np.atleast_1d(self.frozen.rvs(size=count, random_state=generator))
        values = np.where(chosen, drawn, np.zeros_like(drawn))
        if self.natural == "float" and self.config.convert_to == "int":
            values = to_int64_range(values)
        return [self.convert(v) for v in live_values(ctx, values)]


def _build(column: BernoulliMixtureColumn, _ctx: object) -> BernoulliMixtureSampler:
    return BernoulliMixtureSampler(column)


KIND = ColumnKind(config=BernoulliMixtureColumn, build=_build, positional=("p", "dist"))
