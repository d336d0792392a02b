"""``scipy``: a number drawn from any ``scipy.stats`` distribution, named with its parameters.

scipy is an optional extra (``pip install 'gridloom[scipy]'``), imported only when a column of
this kind (or a ``bernoulli_mixture``) is built. The distribution and its parameters are checked
when the pipeline is validated: an unknown name (with a did-you-mean), an unknown or missing
parameter and parameters outside the distribution's domain each fail with a ConfigError.

Draws are vectorised per row group: a numpy generator seeded from the row group's stream
draws one value per row of the group (dropped rows included), so a row's value depends only
on the run seed, the column and its place in the group.
"""

from __future__ import annotations

import importlib
import math
import numbers
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._distribution import check_distribution_name, check_params
from ..config._issues import suggest
from ..config._kind import ColumnKind
from ..config._validators import clip, int64
from ..errors import ConfigError
from ..generators.base import BatchContext
from ..generators.sampling import NumericSampler

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "KIND",
    "ScipyColumn",
    "ScipySampler",
    "frozen_distribution",
    "group_generator",
    "live_values",
    "narrowed_support",
    "numpy_generator",
    "to_int64_range",
]

#: The largest float below 2**63: continuous draws stored as ``int`` are clamped to this.
_FLOAT_BELOW_2_63 = 2.0**63 - 1024.0


def _optional_finite(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{attribute.name} must be a number, got {clip(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{attribute.name} must be a finite number, got {clip(value)}")


def _stats(column: str, field: str) -> Any:
    """``scipy.stats``, or a ConfigError naming the extra that installs it."""
    try:
        return importlib.import_module("scipy.stats")
    except ImportError:
        raise ConfigError(
            "this column needs scipy, which is not installed: pip install 'gridloom[scipy]'",
            column=column,
            field=field,
        ) from None


def _distribution_names(stats: Any) -> list[str]:
    kinds = (stats.rv_continuous, stats.rv_discrete)
    return sorted(n for n in dir(stats) if isinstance(getattr(stats, n, None), kinds))


def frozen_distribution(
    column: str, field: str, name: str, params: Mapping[str, float]
) -> tuple[Any, Literal["int", "float"]]:
    """The frozen ``scipy.stats`` distribution ``name(**params)`` and what it draws (``int``
    for a discrete distribution), checked by one trial draw.

    Raises:
        ConfigError: on ``field.distribution`` (unknown name, scipy missing) or
            ``field.params`` (unknown, missing or out-of-domain parameters).
    """
    stats = _stats(column, f"{field}.distribution")
    names = _distribution_names(stats)
    if name not in names:
        guess = suggest(name, names)
        hint = f"; did you mean {guess!r}?" if guess else " (see scipy.stats for the names)"
        raise ConfigError(
            f"unknown scipy.stats distribution {name!r}{hint}",
            column=column,
            field=f"{field}.distribution",
        )
    dist = getattr(stats, name)
    shapes = [s.strip() for s in (dist.shapes or "").split(",") if s.strip()]
    allowed = [*shapes, "loc", "scale"]

    def problem(message: str) -> ConfigError:
        return ConfigError(message, column=column, field=f"{field}.params")

    for key in params:
        if key not in allowed:
            guess = suggest(key, allowed)
            hint = f"did you mean {guess!r}?" if guess else f"it takes {', '.join(allowed)}"
            raise problem(f"{name} has no parameter {key!r}; {hint}")
    missing = [s for s in shapes if s not in params]
    if missing:
        raise problem(f"{name} needs the parameter(s) {', '.join(missing)}")
    # Config files give every parameter as a float; whole ones are passed as integers, which
    # some parameters must be (binom's n).
    try:
        frozen = dist(**{key: _number(value) for key, value in params.items()})
        low, high = frozen.support()
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise problem(f"{name} refuses these parameters: {exc}") from None
    if math.isnan(low) or math.isnan(high):
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "the defaults"
        raise problem(f"{shown}: outside the domain of {name} (see scipy.stats.{name})")
    try:
        frozen.rvs(size=1, random_state=numpy_generator(0))
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise problem(f"{name} cannot draw with these parameters: {exc}") from None
    natural: Literal["int", "float"] = "int" if isinstance(dist, stats.rv_discrete) else "float"
    return frozen, natural


def _number(value: float) -> float | int:
    """``value`` as an int when it is a whole number a float holds exactly, else a float."""
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2.0**53 else number


def numpy_generator(seed: int) -> np.random.Generator:
    """A numpy ``Generator`` (PCG64) seeded with ``seed``."""
    import numpy as np

    return np.random.default_rng(seed)


def to_int64_range(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Float ``values`` clamped to what a 64-bit integer holds (NaN stays NaN)."""
    import numpy as np

    clamped: npt.NDArray[Any] = np.clip(values, -(2.0**63), _FLOAT_BELOW_2_63)
    return clamped


def group_generator(ctx: BatchContext) -> tuple[np.random.Generator, int]:
    """A numpy generator seeded from the row group's stream, and how many values to draw
    (one per row of the group, dropped rows included)."""
    count = len(ctx.group_row_ids) if ctx.group_row_ids is not None else len(ctx.row_ids)
    return numpy_generator(ctx.rng.getrandbits(128)), count


def narrowed_support(
    frozen: Any, low: float | None, high: float | None
) -> tuple[float | None, float | None]:
    """A frozen distribution's support, narrowed to ``[low, high]`` (``None``: unbounded)."""
    lower, upper = (float(v) for v in frozen.support())
    if low is not None:
        lower = max(lower, low)
    if high is not None:
        upper = min(upper, high)
    return (
        lower if math.isfinite(lower) else None,
        upper if math.isfinite(upper) else None,
    )


def live_values(ctx: BatchContext, values: npt.NDArray[Any]) -> list[Any]:
    """The values of the live rows of ``ctx`` (``values`` has one per row of the group)."""
    positions = ctx.positions()
    if positions is not None:
        values = values[list(positions)]
    return list(values.tolist())


@frozen(kw_only=True)
class ScipyColumn(ColumnConfig):
    """A number drawn from a ``scipy.stats`` distribution (continuous or discrete) by name.

    Needs the ``scipy`` extra (``pip install 'gridloom[scipy]'``). The parameters are the
    distribution's own (its shape parameters, plus ``loc`` and ``scale``), as ``scipy.stats``
    documents them; they are checked when the pipeline is validated. Discrete distributions
    give integers, continuous ones floats.

    For example:

        - {name: g, scipy: {distribution: gamma, params: {a: 2.0, scale: 3.0}}}
        - {name: visits, scipy: {distribution: nbinom, params: {n: 5, p: 0.4}, high: 50}}

    Attributes:
        distribution: the ``scipy.stats`` name (``gamma``, ``lognorm``, ``beta``, ``poisson``...).
        params: the distribution's parameters by name (finite numbers).
        low, high: clip draws to ``[low, high]`` (either may be left out).
        convert_to: store the value as ``int`` (rounded; draws beyond the 64-bit range are
            clamped to it), ``float`` or ``string``.
        decimals: round floats to this many decimal places.
    """

    kind: ClassVar[str] = "scipy"
    distribution: str = attrs.field(validator=check_distribution_name)
    params: dict[str, float] = attrs.field(factory=dict, validator=check_params)
    low: float | None = attrs.field(default=None, validator=_optional_finite)
    high: float | None = attrs.field(default=None, validator=_optional_finite)
    convert_to: ConvertTo | None = None
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(int64))

    @high.validator
    def _check_high(self, _attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and self.low is not None and value < self.low:
            raise ValueError(f"high ({value}) must be >= low ({self.low})")


class ScipySampler(NumericSampler):
    """Draws from a frozen ``scipy.stats`` distribution, one numpy batch per row group.

    Always in a worker thread (some distributions draw by numerical inversion, which can take
    a while); a lock keeps concurrent row groups off the shared frozen distribution.
    """

    inline = False

    def __init__(self, config: ScipyColumn):
        self.frozen, self.natural = frozen_distribution(
            config.name, "scipy", config.distribution, config.params
        )
        super().__init__(config.name, config.convert_to, self.natural, config.decimals)
        self.config = config
        self.lock = threading.Lock()
        self.bounds: tuple[float | None, float | None] = (config.low, config.high)
        if self.natural == "int":  # whole bounds keep integer draws integers
            low = None if config.low is None else math.ceil(config.low)
            high = None if config.high is None else math.floor(config.high)
            if low is not None and high is not None and low > high:
                raise ConfigError(
                    f"no integer lies in [{config.low}, {config.high}]",
                    column=config.name,
                    field="scipy.high",
                )
            self.bounds = (low, high)

    def support(self) -> tuple[Any, Any] | None:
        """The distribution's support, narrowed by ``low``/``high``."""
        if self.config.convert_to == "string":
            return None
        return narrowed_support(self.frozen, *self.bounds)

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One draw per row of the group; the live rows' values, clipped and converted."""
        import numpy as np

        generator, count = group_generator(ctx)
        with self.lock:
            values = np.atleast_1d(self.frozen.rvs(size=count, random_state=generator))
        if self.bounds != (None, None):
            values = np.clip(values, *self.bounds)
        if self.natural == "float" and self.config.convert_to == "int":
            values = to_int64_range(values)
        return [self.convert(v) for v in live_values(ctx, values)]


def _build(column: ScipyColumn, _ctx: object) -> ScipySampler:
    return ScipySampler(column)


KIND = ColumnKind(config=ScipyColumn, build=_build, positional=("distribution", "params"))
