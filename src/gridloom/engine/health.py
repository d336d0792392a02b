"""Why a run stops early: the reason its monitors give, and the settings they share.

Two monitors watch a run and stop it when something keeps failing: the model monitor
(:class:`~gridloom.run.HealthMonitor`, over each model's requests; the run layer owns it, as it
owns the models) and the column monitor (:class:`~gridloom.engine.GeneratorHealth`, over each
column's cells, fed by the scheduler). Both give a :class:`ShutdownReason`.
"""

from __future__ import annotations

from typing import Any

import attrs

from .._attrs import frozen

__all__ = ["EXAMPLE_CHARS", "ShutdownReason", "check_window", "quote_example"]

#: The longest example message a :class:`ShutdownReason` quotes.
EXAMPLE_CHARS = 300


def quote_example(text: str) -> str:
    """An error message as a stop reason quotes it: on one line (whitespace runs made single
    spaces), at most :data:`EXAMPLE_CHARS` characters. Model errors come redacted from their
    client (no API key, no request header), as the drop reasons do."""
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


@frozen(kw_only=True)
class ShutdownReason:
    """Why the run was stopped early: a failing model, or a column failing the same way row
    after row (:class:`~gridloom.engine.GeneratorHealth`).

    Attributes:
        alias: the model alias that was failing (``None`` when a column was).
        model: the provider's model name behind it (``None`` when a column was failing).
        failed: failed requests (or cells) among the recent outcomes judged.
        total: recent outcomes judged.
        window_seconds: how far back outcomes counted (``None``: by count only).
        top_error: the most common error class among the failures (``None`` if none named).
        message: one line for people: the model or column, the counts, the error, and what
            happens next.
        column: the column that was failing, when it was a column.
        example: one failure's message, quoted (:func:`quote_example`): for a failing
            column, that of ``row_id``; for a failing model, its latest failure of
            ``top_error`` (or its latest refusal).
        row_id: the row of a failing column's example.
    """

    alias: str | None
    model: str | None
    failed: int
    total: int
    window_seconds: float | None
    top_error: str | None
    message: str
    column: str | None = None
    example: str | None = None
    row_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (for the run summary)."""
        return attrs.asdict(self)


def check_window(error_rate: float | None, window: int, min_outcomes: int) -> None:
    """Check a failure-rate rule's settings (shared by the model and column monitors).

    Raises:
        ValueError: a value out of range.
    """
    if error_rate is not None and not 0.0 < error_rate <= 1.0:
        raise ValueError(f"error_rate must be in (0, 1] or None, got {error_rate!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if min_outcomes < 1:
        raise ValueError(f"min_outcomes must be >= 1, got {min_outcomes}")
