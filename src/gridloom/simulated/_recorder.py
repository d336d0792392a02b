"""What the simulated endpoint remembers: per-model counters and a bounded request timeline."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import attrs

from .._attrs import define, frozen

__all__ = [
    "TIMELINE_LIMIT",
    "ModelStatistics",
    "Recorder",
    "SimulationStatistics",
    "TimelineEntry",
]

#: The timeline keeps this many most recent requests.
TIMELINE_LIMIT = 100_000


@frozen(kw_only=True)
class TimelineEntry:
    """One finished request.

    Attributes:
        model: the model name (empty when the body named none).
        path: the request path.
        start: when the request arrived, on the app's clock.
        end: when it was answered or abandoned.
        status: the HTTP status sent, or ``None`` when nothing was sent (hang, dropped
            connection, client gone).
        outcome: what happened, in one word: ``ok``, ``rate_limited``, ``bad_request``,
            ``error_500``, ``error_503``, ``malformed``, ``invalid_output``, ``hang``,
            ``disconnect`` or ``client_closed``.
        temperature, top_p, max_tokens: the sampling parameters the request was sent with
            (``None``: not sent, or not a chat or messages request that parsed).
    """

    model: str
    path: str
    start: float
    end: float
    status: int | None
    outcome: str
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


@frozen(kw_only=True)
class ModelStatistics:
    """Counters of one model.

    Attributes:
        requests: requests received (all outcomes, including those still in flight).
        by_status: requests per HTTP status (``"200"``, ``"429"``…), plus ``"hang"``,
            ``"disconnect"`` and ``"client_closed"`` for requests that got no answer.
        in_flight: admitted requests not yet finished.
        peak_in_flight: the most admitted requests ever in flight at once.
        input_tokens: prompt tokens of answered (200) requests.
        output_tokens: output tokens of answered (200) requests.
    """

    requests: int = 0
    by_status: Mapping[str, int] = attrs.field(factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@frozen(kw_only=True)
class SimulationStatistics:
    """A snapshot of the endpoint's counters.

    Attributes:
        models: counters per model name.
    """

    models: Mapping[str, ModelStatistics]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``GET /stats`` returns)."""
        return {"models": {name: attrs.asdict(stats) for name, stats in self.models.items()}}


@define
class _Counters:
    requests: int = 0
    by_status: collections.Counter[str] = attrs.field(factory=collections.Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class Recorder:
    """Collects counters and the timeline (the last :data:`TIMELINE_LIMIT` requests)."""

    def __init__(self) -> None:
        self._models: dict[str, _Counters] = {}
        self._timeline: collections.deque[TimelineEntry] = collections.deque(maxlen=TIMELINE_LIMIT)

    def _counters(self, model: str) -> _Counters:
        counters = self._models.get(model)
        if counters is None:
            counters = self._models[model] = _Counters()
        return counters

    def arrived(self, model: str) -> None:
        """A request for ``model`` has arrived."""
        self._counters(model).requests += 1

    def admitted(self, model: str) -> None:
        """An arrived request of ``model`` was admitted and is now in flight."""
        counters = self._counters(model)
        counters.in_flight += 1
        counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)

    def finished(
        self,
        entry: TimelineEntry,
        *,
        admitted: bool,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """A request ended (``admitted``: it was counted by :meth:`admitted`)."""
        counters = self._counters(entry.model)
        counters.by_status[str(entry.status) if entry.status is not None else entry.outcome] += 1
        if admitted:
            counters.in_flight -= 1
        counters.input_tokens += input_tokens
        counters.output_tokens += output_tokens
        self._timeline.append(entry)

    def statistics(self) -> SimulationStatistics:
        """A frozen snapshot of the counters."""
        return SimulationStatistics(
            models={
                name: ModelStatistics(
                    requests=c.requests,
                    by_status=dict(sorted(c.by_status.items())),
                    in_flight=c.in_flight,
                    peak_in_flight=c.peak_in_flight,
                    input_tokens=c.input_tokens,
                    output_tokens=c.output_tokens,
                )
                for name, c in sorted(self._models.items())
            }
        )

    def timeline(self) -> list[TimelineEntry]:
        """The recorded requests, oldest first."""
        return list(self._timeline)
