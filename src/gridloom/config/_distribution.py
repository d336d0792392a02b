"""A ``scipy.stats`` distribution named in a config (:class:`ScipyDistribution`) and the field
validators the ``scipy`` and ``bernoulli_mixture`` kinds share.

Only the shape of the spec is checked here (a name, finite numeric parameters); whether the
name and parameters suit ``scipy.stats`` is checked when the column is built, where scipy (an
optional extra) is imported.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import attrs

from .._attrs import frozen
from ._validators import clip

__all__ = ["ScipyDistribution", "check_distribution_name", "check_params"]


def check_distribution_name(
    _instance: object, _attribute: attrs.Attribute[Any], value: Any
) -> None:
    """A distribution's name: a non-empty string (checked against scipy.stats when built)."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"distribution must be a scipy.stats distribution name, got {clip(value)}")


def check_params(_instance: object, _attribute: attrs.Attribute[Any], value: Any) -> None:
    """A distribution's parameters: a mapping of names to finite real numbers (not booleans)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"params must be a mapping of names to numbers, got {clip(value)}")
    for key, number in value.items():
        if not isinstance(key, str):
            raise TypeError(f"parameter names must be strings, got {clip(key)}")
        if isinstance(number, bool) or not isinstance(number, numbers.Real):
            raise TypeError(f"parameter {key!r} must be a number, got {clip(number)}")
        if not math.isfinite(float(number)):
            raise ValueError(f"parameter {key!r} must be a finite number, got {clip(number)}")


@frozen(kw_only=True)
class ScipyDistribution:
    """A ``scipy.stats`` distribution and its parameters.

    Attributes:
        distribution: the ``scipy.stats`` name (``lognorm``, ``gamma``, ``poisson``...).
        params: the distribution's parameters by name (shape parameters, ``loc``, ``scale``).
    """

    distribution: str = attrs.field(validator=check_distribution_name)
    params: dict[str, float] = attrs.field(factory=dict, validator=check_params)
