"""Configuration of gridloom's built-in simulated endpoint (providers of type ``simulated``).

```yaml
providers:
  - name: sim
    type: simulated
    simulation:
      default: {latency: {median: 0.5, sigma: 0.3}}
      models:
        judge-70b: {capacity: 8, latency: {fixed: 0.2, per_token: 0.004}}
```
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .._attrs import frozen
from ._validators import finite, int64, schema_keywords, to_tuple

__all__ = [
    "BatchSimulation",
    "CapacityStep",
    "LatencyConfig",
    "SimulatedModel",
    "SimulationConfig",
]


@schema_keywords(minimum=0, maximum=1)
def _rate(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


_non_negative = attrs.validators.ge(0.0)


@frozen(kw_only=True)
class LatencyConfig:
    """How long the simulated model takes to answer: ``fixed + lognormal + per_token * tokens``.

    Attributes:
        fixed: seconds added to every request.
        median: median of a lognormal component, in seconds (0 for none).
        sigma: shape of the lognormal component (0 makes it exactly ``median``).
        per_token: seconds per output token.
    """

    fixed: float = attrs.field(default=0.0, validator=_non_negative)
    median: float = attrs.field(default=0.0, validator=_non_negative)
    sigma: float = attrs.field(default=0.0, validator=_non_negative)
    per_token: float = attrs.field(default=0.0, validator=_non_negative)


@frozen(kw_only=True)
class CapacityStep:
    """From ``at`` seconds after the endpoint's first request on, the model serves ``capacity``
    requests at once (to replay a provider whose capacity changes during a run).

    Attributes:
        at: seconds after the first request the endpoint received (from any model).
        capacity: requests served at once from then on.
    """

    at: float = attrs.field(validator=_non_negative)
    capacity: int = attrs.field(validator=attrs.validators.ge(1))


def _ordered(_inst: Any, attribute: attrs.Attribute[Any], value: tuple[CapacityStep, ...]) -> None:
    times = [step.at for step in value]
    if times != sorted(times) or len(set(times)) != len(times):
        raise ValueError(f"{attribute.name} must be in increasing order of 'at', got {times}")


@frozen(kw_only=True)
class SimulatedModel:
    """Behaviour of one simulated model.

    Attributes:
        latency: how long answers take.
        capacity: requests served at once; a request beyond it is answered 429 at once.
        capacity_schedule: later capacities, each from its time on (e.g. ``[{at: 60,
            capacity: 16}, {at: 120, capacity: 4}]``); ``capacity`` holds before the first.
        retry_after: seconds sent in ``Retry-After`` with a 429.
        requests_per_second: a token bucket of requests; when empty, 429.
        tokens_per_minute: a token bucket of output tokens; when empty, 429.
        rate_limit_headers: every 200 answer reports each bucket in quota headers
            (``x-ratelimit-*`` on OpenAI paths, ``anthropic-ratelimit-*`` on ``/v1/messages``).
        error_500_rate: share of requests answered 500.
        error_503_rate: share of requests answered 503 (with ``Retry-After``).
        hang_rate: share of requests never answered (the client's timeout ends them).
        malformed_rate: share of answers whose body is not valid JSON.
        disconnect_rate: share of requests whose connection is dropped without an answer.
        invalid_output_rate: share of structured answers (JSON, YAML or XML text; not tool
            calls) that are invalid: half of them do not parse, half break their schema when
            it allows. Which ones is decided from ``seed`` and the request itself, so a run
            gets the same ones whatever the order of arrivals; a correction is a new request.
        output_tokens: typical length of a text answer, in tokens.
        reasoning: also return reasoning text, separately from the answer. On
            ``/v1/messages`` a request's own ``thinking`` wins: ``enabled`` (within its
            ``budget_tokens``) or ``adaptive`` makes any model think, ``disabled`` makes
            this one stop.
        embedding_dimensions: length of embedding vectors.
        tool_turns: with tools offered and ``tool_choice`` ``auto``, the model calls tools
            while the conversation holds fewer rounds of tool results than this (counted since
            its last user message: a run of ``tool`` messages, or a user message of
            ``tool_result`` blocks, is one round), then answers in text; 0 never calls on
            its own. A forced choice (``required``/``any``, a named tool) always calls.
        tool_calls_per_turn: calls in one answer that calls tools (each of an offered tool
            picked from the request's seeded stream, or of the named one; distinct ids,
            arguments valid for the tool's schema), to exercise parallel tool calls.
    """

    latency: LatencyConfig = attrs.field(
        factory=LatencyConfig, validator=attrs.validators.instance_of(LatencyConfig)
    )
    capacity: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    capacity_schedule: tuple[CapacityStep, ...] = attrs.field(
        default=(), converter=to_tuple, validator=_ordered
    )
    retry_after: float = attrs.field(default=1.0, validator=_non_negative)
    requests_per_second: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    tokens_per_minute: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    rate_limit_headers: bool = False
    error_500_rate: float = attrs.field(default=0.0, validator=_rate)
    error_503_rate: float = attrs.field(default=0.0, validator=_rate)
    hang_rate: float = attrs.field(default=0.0, validator=_rate)
    malformed_rate: float = attrs.field(default=0.0, validator=_rate)
    disconnect_rate: float = attrs.field(default=0.0, validator=_rate)
    invalid_output_rate: float = attrs.field(default=0.0, validator=_rate)
    output_tokens: int = attrs.field(default=48, validator=attrs.validators.ge(1))
    reasoning: bool = False
    embedding_dimensions: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    tool_turns: int = attrs.field(default=1, validator=[int64, attrs.validators.ge(0)])
    tool_calls_per_turn: int = attrs.field(
        default=1, validator=[int64, attrs.validators.ge(1), attrs.validators.le(16)]
    )


@frozen(kw_only=True)
class BatchSimulation:
    """How the simulated batch APIs behave (OpenAI files + ``/v1/batches``, Anthropic
    ``/v1/messages/batches``).

    A job is in progress for ``completion_delay`` seconds of the endpoint's clock after it is
    created, then ended: its items answered as the online endpoint answers the same requests.
    Which items fail, expire, go missing or come twice is drawn from ``seed``, the job's id and
    the item's ``custom_id``, so it is the same on every run.

    Attributes:
        completion_delay: seconds from creation until a job has ended.
        job_expiry: a job that would take longer than this ends expired, every item unanswered
            (OpenAI: status ``expired`` and ``batch_expired`` errors; Anthropic: ``expired``
            results); ``None`` never expires.
        error_rate: share of items answered with an error (500 ``server_error`` / ``api_error``).
        expired_rate: share of items that expire unanswered.
        missing_rate: share of items left out of the results altogether.
        duplicate_rate: share of items written twice to the results.
        max_items: most requests in one job.
        max_file_bytes: largest uploaded file (OpenAI) or request body (Anthropic).
        max_jobs: most jobs (and files) held; beyond, creating one more is refused (400).
    """

    completion_delay: float = attrs.field(default=0.0, validator=[finite, _non_negative])
    job_expiry: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    error_rate: float = attrs.field(default=0.0, validator=_rate)
    expired_rate: float = attrs.field(default=0.0, validator=_rate)
    missing_rate: float = attrs.field(default=0.0, validator=_rate)
    duplicate_rate: float = attrs.field(default=0.0, validator=_rate)
    max_items: int = attrs.field(
        default=50_000, validator=[int64, attrs.validators.ge(1), attrs.validators.le(1_000_000)]
    )
    max_file_bytes: int = attrs.field(
        default=64 * 1024 * 1024, validator=[int64, attrs.validators.ge(1)]
    )
    max_jobs: int = attrs.field(default=1_000, validator=[int64, attrs.validators.ge(1)])


@frozen(kw_only=True)
class SimulationConfig:
    """The simulated endpoint of one provider.

    Attributes:
        seed: seeds latencies and injected faults (answers depend only on the request).
        default: behaviour of every model not listed in ``models``.
        models: behaviour per model name.
        transport: ``socket`` serves the endpoint over HTTP on 127.0.0.1 (started and stopped
            with the run); ``asgi`` mounts it in-process, for runs on a virtual clock.
        batch: how its batch APIs behave (delays, partial failures, limits).
    """

    seed: int = 0
    default: SimulatedModel = attrs.field(
        factory=SimulatedModel, validator=attrs.validators.instance_of(SimulatedModel)
    )
    models: dict[str, SimulatedModel] = attrs.field(
        factory=dict,
        validator=attrs.validators.deep_mapping(
            key_validator=attrs.validators.instance_of(str),
            value_validator=attrs.validators.instance_of(SimulatedModel),
        ),
    )
    transport: Literal["socket", "asgi"] = "socket"
    batch: BatchSimulation = attrs.field(
        factory=BatchSimulation, validator=attrs.validators.instance_of(BatchSimulation)
    )

    def for_model(self, name: str) -> SimulatedModel:
        """The behaviour of model ``name``."""
        return self.models.get(name, self.default)
