"""Settings of the response cache and of cost accounting: ``cache`` and ``price``.

``cache`` (on a model, or on a model-calling column, which wins) decides whether answers are
looked up in and stored to the response cache (docs/cache.md):

- ``true``: looked up, and stored after a success;
- ``read_only``: looked up, never stored;
- ``false``: neither;
- ``null`` (default): as ``true`` for a *deterministic* request — an embedding request, or a
  chat request whose temperature is 0 or whose body holds a whole-number ``seed`` (in the
  column's or the provider's ``extra_body``) — and as ``false`` otherwise.

Neither changes what a run generates from its models' answers, so both are left out of the
config's hash (a run can be resumed with other cache or price settings).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from .._attrs import frozen

__all__ = [
    "CacheSetting",
    "PriceConfig",
    "as_price",
    "check_cache_setting",
]

#: ``true``, ``false``, ``read_only``, or ``null`` (the default rule).
CacheSetting = bool | Literal["read_only"] | None


def check_cache_setting(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    """A validator: ``true``, ``false``, ``read_only`` or ``null``."""
    if value is None or isinstance(value, bool) or value == "read_only":
        return
    raise ValueError(f"cache must be true, false, read_only or null, got {value!r}")


def _price(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _discount(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _price(inst, attribute, value)
    if value > 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@frozen(kw_only=True)
class PriceConfig:
    """What a model's tokens cost, for the estimated cost in the summary and metadata.

    For example ``price: {input: 2.5, output: 10}``: $2.50 per million input tokens and
    $10 per million output tokens, batch tokens at half that.

    Attributes:
        input: price per million input (prompt) tokens.
        output: price per million output (completion) tokens.
        batch_discount: the share of the price taken off tokens served by a provider batch
            job (0.5: they cost half). Answers served from the response cache cost nothing.
    """

    input: float = attrs.field(validator=_price)
    output: float = attrs.field(validator=_price)
    batch_discount: float = attrs.field(default=0.5, validator=_discount)

    def cost(self, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float:
        """The cost in the price's currency of that many tokens."""
        factor = (1.0 - self.batch_discount) if batch else 1.0
        return factor * (input_tokens * self.input + output_tokens * self.output) / 1_000_000


def as_price(value: Any) -> Any:
    """An attrs converter: a ``{input, output, batch_discount}`` mapping (from Python) as a
    :class:`PriceConfig`."""
    if isinstance(value, dict):
        return PriceConfig(**value)
    return value
