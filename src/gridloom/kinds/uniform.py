"""``uniform``: a number drawn uniformly from a range."""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig, ConvertTo
from ..config._kind import ColumnKind
from ..config._validators import INT64_MAX, INT64_MIN, finite, int64, is_finite
from ..errors import ConfigError
from ..generators.sampling import NumericSampler

__all__ = ["KIND", "UniformColumn", "UniformSampler"]


@frozen(kw_only=True)
class UniformColumn(ColumnConfig):
    """A number drawn uniformly from ``[low, high]``.

    Attributes:
        low, high: the bounds (finite numbers, ``high - low`` too); with ``convert_to: int``
            a whole number in the bounds, which must then lie in the 64-bit integer range.
        convert_to: store the value as ``int``, ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "uniform"
    low: float = attrs.field(validator=finite)
    high: float = attrs.field(validator=finite)
    convert_to: ConvertTo | None = attrs.field(default=None)
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(int64))

    @high.validator
    def _check_high(self, _attribute: attrs.Attribute[Any], value: float) -> None:
        if value < self.low:
            raise ValueError(f"high ({value}) must be >= low ({self.low})")
        if not (is_finite(self.low) and is_finite(value)):
            return  # their own validators say what is wrong
        if not math.isfinite(float(value) - float(self.low)):
            raise ValueError(
                f"high - low must be a finite number; [{self.low}, {value}] is too wide"
            )

    @convert_to.validator
    def _check_convert_to(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value != "int" or not all(map(is_finite, (self.low, self.high))):
            return
        if math.ceil(self.low) < INT64_MIN or math.floor(self.high) > INT64_MAX:
            raise ValueError(
                "with convert_to: int, low and high must lie within the 64-bit integer range"
                f" ({INT64_MIN} to {INT64_MAX})"
            )


class UniformSampler(NumericSampler):
    """Uniform numbers in ``[low, high]``; with ``convert_to: int``, uniform integers in
    ``[ceil(low), floor(high)]``; ``decimals`` rounds floats."""

    def __init__(self, config: UniformColumn):
        super().__init__(config.name, config.convert_to, "float", config.decimals)
        self.config = config
        self._int_range: tuple[int, int] | None = None
        if config.convert_to == "int":
            low, high = math.ceil(config.low), math.floor(config.high)
            if low > high:
                raise ConfigError(
                    f"no integer lies in [{config.low}, {config.high}]",
                    column=config.name,
                    field="convert_to",
                )
            self._int_range = (low, high)

    def support(self) -> tuple[Any, Any] | None:
        """``[low, high]`` (whole numbers within them with ``convert_to: int``)."""
        if self.config.convert_to == "string":
            return None
        if self._int_range is not None:
            return self._int_range
        return (self.config.low, self.config.high)

    def _draw(self, rng: random.Random) -> Any:
        if self._int_range is not None:
            return rng.randint(*self._int_range)
        return self.convert(rng.uniform(self.config.low, self.config.high))


def _build(column: UniformColumn, _ctx: object) -> UniformSampler:
    return UniformSampler(column)


KIND = ColumnKind(config=UniformColumn, build=_build, positional=("low", "high"))
