"""The inference parameters a model-calling column sends, and the ones it draws per cell.

A column's ``temperature``, ``top_p`` and ``max_tokens`` are its own when it sets them, else
its model's; each is a number (sent as is), a distribution (drawn per cell) or unset (left to
the provider). :class:`InferencePlan` resolves them once, when the generator is built;
:meth:`InferencePlan.draw` gives a cell's values from a random stream of (run seed, column,
``"inference"``, row id) alone, so they never depend on concurrency or timing, and a cell's
retries and correction turns (which draw again) are sent with the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..config import LLMColumn, ModelConfig
from ..config._inference import InferenceDistribution
from ..config._llm import INFERENCE_PARAMS
from ..trace import CURRENT_SPAN
from .base import derive_rng

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["INTEGER_PARAMS", "InferencePlan", "Params", "trace_drawn"]

#: Drawn (or fixed) values by parameter name.
Params = Mapping[str, float | int]

#: The parameters that take whole numbers.
INTEGER_PARAMS = frozenset({"max_tokens"})


class InferencePlan:
    """What one column sends as each inference parameter.

    Args:
        column: the column (its settings win).
        model: its model alias's configuration (the defaults).

    Attributes:
        fixed: per parameter, the number sent with every request, or ``None`` (unset, or
            drawn per cell).
        distributions: the parameters drawn per cell and their distributions, in
            :data:`~gridloom.config._llm.INFERENCE_PARAMS` order (the column's, else the
            model's).
        column: the column's name.
    """

    def __init__(self, column: LLMColumn, model: ModelConfig):
        self.column = column.name
        self.fixed: dict[str, float | int | None] = {}
        self.distributions: dict[str, InferenceDistribution] = {}
        for name in INFERENCE_PARAMS:
            own = getattr(column, name)
            value = own if own is not None else getattr(model, name)
            if isinstance(value, InferenceDistribution):
                self.distributions[name] = value
                self.fixed[name] = None
            else:
                self.fixed[name] = value

    def arrow_type(self) -> pa.StructType:
        """The type of the ``<name>__inference`` column: a struct of the drawn parameters
        (``double``, ``int64`` for ``max_tokens``)."""
        import pyarrow as pa

        return pa.struct(
            [
                pa.field(name, pa.int64() if name in INTEGER_PARAMS else pa.float64())
                for name in self.distributions
            ]
        )

    def draw(self, seed: int, row_id: int) -> dict[str, float | int]:
        """The values of the drawn parameters for row ``row_id`` (empty when none is drawn)."""
        if not self.distributions:
            return {}
        rng = derive_rng(seed, self.column, "inference", row_id)
        return {
            name: distribution.draw(rng, integer=name in INTEGER_PARAMS)
            for name, distribution in self.distributions.items()
        }

    def value(self, name: str, drawn: Params) -> float | int | None:
        """What a request sends as ``name``: the cell's drawn value, else the fixed one.

        Raises:
            ValueError: ``name`` is drawn per cell but ``drawn`` lacks it.
        """
        if name in self.distributions:
            if name not in drawn:
                raise ValueError(
                    f"column {self.column!r}: {name} is drawn per cell; pass the cell's drawn"
                    " values (ModelColumnGenerator.draw_inference(ctx))"
                )
            return drawn[name]
        return self.fixed[name]


def trace_drawn(drawn: Params) -> None:
    """Put a cell's drawn values on its task span, when a trace is being recorded."""
    span = CURRENT_SPAN.get()
    if span is not None and drawn:
        span.inference_drawn(json.dumps(dict(drawn), sort_keys=True))
