"""Per-model behaviour: admission (capacity, token buckets), injected faults, latency.

Faults and latencies come from one ``random.Random`` per model, seeded from
``(config.seed, model)``; each admitted request draws the same three numbers in the same
order (fault, a number no longer used, lognormal), so a run with the same arrivals is
repeatable. Whether a structured answer is made invalid depends on the request itself
(:meth:`ModelBehaviour.invalid_output`), so it does not change with the order of arrivals.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
from collections.abc import Callable
from typing import Literal

from .._attrs import frozen
from ..config import SimulatedModel

__all__ = ["Draw", "Fault", "ModelBehaviour", "Quota", "Rejection", "TokenBucket"]


#: Absorbs binary rounding when a bucket's level is rounded down to whole units.
_TOLERANCE = 1e-9


class Fault(enum.Enum):
    """An injected failure, chosen per request."""

    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    HANG = "hang"
    DISCONNECT = "disconnect"
    MALFORMED = "malformed"


@frozen(kw_only=True)
class Draw:
    """What one admitted request will suffer: a fault (or none) and its lognormal latency
    component (seconds)."""

    fault: Fault | None
    lognormal: float


@frozen(kw_only=True)
class Rejection:
    """A 429: why, and after how many seconds to come back."""

    reason: str
    retry_after: float


@frozen(kw_only=True)
class Quota:
    """One rate-limit bucket as the quota headers report it.

    Attributes:
        kind: ``requests`` or ``tokens``.
        limit: the bucket's capacity (whole units, rounded down).
        remaining: whole units in the bucket now (rounded down).
        reset: seconds until the bucket is full again.
    """

    kind: Literal["requests", "tokens"]
    limit: int
    remaining: int
    reset: float


class TokenBucket:
    """A token bucket refilled continuously from ``clock``.

    Args:
        rate: tokens added per second.
        capacity: the most tokens it holds (it starts full).
        clock: current time in seconds.
    """

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self, cost: float) -> float:
        """Seconds until ``cost`` tokens (at most ``capacity``) are available; 0 if they are."""
        self._refill()
        missing = min(cost, self.capacity) - self._tokens
        # Binary noise is no shortage: a client that waited exactly the advertised time must
        # find its token (else the wait rounds to "Retry-After: 0" and repeats forever).
        return 0.0 if missing <= _TOLERANCE else missing / self.rate

    def take(self, cost: float) -> None:
        """Remove ``cost`` tokens (at most ``capacity``); the level may go negative."""
        self._refill()
        self._tokens -= min(cost, self.capacity)

    def level(self) -> float:
        """Tokens in the bucket now."""
        self._refill()
        return self._tokens

    def seconds_to_full(self) -> float:
        """Seconds until the bucket holds ``capacity`` again; 0 if it does."""
        self._refill()
        return max(0.0, (self.capacity - self._tokens) / self.rate)

    def quota(self, kind: Literal["requests", "tokens"]) -> Quota:
        """The bucket now, as quota headers report it."""
        return Quota(
            kind=kind,
            limit=math.floor(self.capacity + _TOLERANCE),
            remaining=max(0, math.floor(self.level() + _TOLERANCE)),
            reset=self.seconds_to_full(),
        )


class ModelBehaviour:
    """The mutable state of one simulated model: in-flight count, buckets, random stream.

    Args:
        name: the model name.
        settings: how the model behaves.
        seed: the simulation's seed.
        clock: current time in seconds (refills the buckets).
        epoch: the time ``capacity_schedule`` counts from (default: now).
    """

    def __init__(
        self,
        name: str,
        settings: SimulatedModel,
        seed: int,
        clock: Callable[[], float],
        *,
        epoch: float | None = None,
    ):
        self.name = name
        self.settings = settings
        self._clock = clock
        self._epoch = clock() if epoch is None else epoch
        digest = hashlib.sha256(f"{seed}\x00{name}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._key = digest
        self.in_flight = 0
        self._requests = (
            TokenBucket(settings.requests_per_second, max(1.0, settings.requests_per_second), clock)
            if settings.requests_per_second is not None
            else None
        )
        self._tokens = (
            TokenBucket(settings.tokens_per_minute / 60.0, settings.tokens_per_minute, clock)
            if settings.tokens_per_minute is not None
            else None
        )

    def capacity(self) -> int | None:
        """Requests served at once now (``None``: unlimited), per ``capacity_schedule``."""
        capacity = self.settings.capacity
        elapsed = self._clock() - self._epoch
        for step in self.settings.capacity_schedule:
            if step.at > elapsed:
                break
            capacity = step.capacity
        return capacity

    def admit(self, output_tokens: int) -> Rejection | None:
        """Admit a request (counting it in flight) or say why it gets a 429.

        A rejected request takes nothing from the buckets; an admitted one takes one request
        and ``output_tokens`` tokens. Call :meth:`release` when an admitted request ends.
        """
        settings = self.settings
        capacity = self.capacity()
        if capacity is not None and self.in_flight >= capacity:
            return Rejection(
                reason=f"model {self.name!r} is at capacity ({capacity} requests)",
                retry_after=settings.retry_after,
            )
        if self._requests is not None:
            wait = self._requests.wait_time(1)
            if wait > 0:
                return Rejection(
                    reason=f"model {self.name!r}: rate limit of "
                    f"{settings.requests_per_second:g} requests per second reached",
                    retry_after=wait,
                )
        if self._tokens is not None:
            wait = self._tokens.wait_time(output_tokens)
            if wait > 0:
                return Rejection(
                    reason=f"model {self.name!r}: rate limit of "
                    f"{settings.tokens_per_minute:g} tokens per minute reached",
                    retry_after=wait,
                )
        if self._requests is not None:
            self._requests.take(1)
        if self._tokens is not None:
            self._tokens.take(output_tokens)
        self.in_flight += 1
        return None

    def release(self) -> None:
        """An admitted request has ended."""
        self.in_flight -= 1

    def quotas(self) -> list[Quota]:
        """The model's buckets now (requests first), for quota headers; empty without any."""
        quotas = []
        if self._requests is not None:
            quotas.append(self._requests.quota("requests"))
        if self._tokens is not None:
            quotas.append(self._tokens.quota("tokens"))
        return quotas

    def draw(self) -> Draw:
        """The fate of an admitted request.

        The fault rates are stacked shares of one uniform draw, in the order 500, 503, hang,
        disconnect, malformed (if they add up to more than 1, the later ones get less).
        """
        settings = self.settings
        u_fault = self._rng.random()
        self._rng.random()  # was the invalid-output draw: kept so latencies stay as seeded
        z = self._rng.gauss(0.0, 1.0)
        fault: Fault | None = None
        edge = 0.0
        for rate, kind in (
            (settings.error_500_rate, Fault.ERROR_500),
            (settings.error_503_rate, Fault.ERROR_503),
            (settings.hang_rate, Fault.HANG),
            (settings.disconnect_rate, Fault.DISCONNECT),
            (settings.malformed_rate, Fault.MALFORMED),
        ):
            edge += rate
            if u_fault < edge:
                fault = kind
                break
        latency = settings.latency
        lognormal = latency.median * math.exp(latency.sigma * z) if latency.median > 0 else 0.0
        return Draw(
            fault=fault,
            lognormal=lognormal,
        )

    def invalid_output(self, request_digest: bytes) -> bool:
        """Whether the structured answer to the request with ``request_digest`` is made
        invalid: a uniform number from the seed, the model and the request, below
        ``invalid_output_rate`` (a correction is another request, with its own number)."""
        rate = self.settings.invalid_output_rate
        if rate <= 0.0:
            return False
        digest = hashlib.sha256(self._key + request_digest + b"invalid output").digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate

    def latency(self, draw: Draw, output_tokens: int) -> float:
        """Seconds to answer: fixed + lognormal + per_token * output tokens."""
        latency = self.settings.latency
        return latency.fixed + draw.lognormal + latency.per_token * output_tokens
