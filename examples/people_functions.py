"""Functions used by examples/people.yaml (importable because they sit next to the config)."""

from __future__ import annotations

from typing import Any


def loyalty_scores(columns: dict[str, list[Any]], ctx: Any) -> list[float]:
    """A made-up score per row from order count, membership and age, with a little noise.

    Batch mode: each upstream column arrives as a list over the row group's rows, and the
    function returns one value per row.
    """
    return [
        round(10.0 * orders + (25.0 if member else 0.0) + 0.2 * age + ctx.rng.uniform(-2, 2), 2)
        for orders, member, age in zip(
            columns["orders_last_year"], columns["is_member"], columns["age"], strict=True
        )
    ]
