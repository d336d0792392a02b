"""One adaptive limiter per (provider, model, domain), for a run."""

from __future__ import annotations

from typing import Literal

import trio

from ..config import ThrottleConfig
from ._bucket import TokenBucket
from ._controller import AIMDController
from ._limiter import AdaptiveLimiter

__all__ = ["Domain", "ThrottleRegistry"]

#: Request kinds that adapt independently beneath a (provider, model)'s cap.
Domain = Literal["chat", "embedding"]


class ThrottleRegistry:
    """One adaptive limiter per (provider, model, domain), created on first use.

    Args:
        config: the AIMD settings.
    """

    def __init__(self, config: ThrottleConfig):
        self.config = config
        self._limiters: dict[tuple[str, str, Domain], AdaptiveLimiter] = {}
        self._budgets: dict[tuple[str, str, str], TokenBucket] = {}

    def limiter(self, provider: str, model: str, domain: Domain, cap: int) -> AdaptiveLimiter:
        """The limiter of ``(provider, model, domain)``; ``cap`` lowers its cap if smaller."""
        key = (provider, model, domain)
        limiter = self._limiters.get(key)
        if limiter is None:
            controller = AIMDController(
                cap=cap,
                config=self.config,
                clock=trio.current_time,
                name=f"{provider}/{model} [{domain}]",
            )
            limiter = AdaptiveLimiter(controller, rampup_seconds=self.config.rampup_seconds)
            self._limiters[key] = limiter
        elif cap < limiter.controller.cap:
            limiter.set_cap(cap)
        return limiter

    def budget(
        self, provider: str, model: str, kind: str, per_minute: float | None
    ) -> TokenBucket | None:
        """The shared per-minute budget of ``kind`` (requests, tokens) for (provider, model),
        created on first use with ``per_minute``; ``None`` when there is no budget."""
        if per_minute is None:
            return None
        key = (provider, model, kind)
        bucket = self._budgets.get(key)
        if bucket is None:
            bucket = TokenBucket.per_minute(per_minute, trio.current_time)
            self._budgets[key] = bucket
        return bucket

    def limiters(self) -> dict[tuple[str, str, Domain], AdaptiveLimiter]:
        """Every limiter created so far."""
        return dict(self._limiters)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the start-up ramps and slow starts of the limiters that have one (a service
        for the run's nursery; returns when every one is over — a limiter never used stays
        in its slow start, so cancel the service when the run ends)."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            for limiter in self._limiters.values():
                nursery.start_soon(limiter.run_ramp)
                nursery.start_soon(limiter.run_slow_start)

    @property
    def drives(self) -> bool:
        """Whether :meth:`run` has work: the configuration has a ramp or a slow start."""
        return self.config.rampup_seconds > 0 or self.config.slow_start_seconds > 0
