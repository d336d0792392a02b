"""Adaptive concurrency: a pure AIMD controller per (provider, model, domain) and its trio
actuator, a ``CapacityLimiter`` whose size follows the controller."""

from ._bucket import TokenBucket
from ._controller import (
    MAX_SERVER_HOLD_SECONDS,
    AIMDController,
    ControllerStatistics,
    Ticket,
    Transition,
)
from ._limiter import AdaptiveLimiter
from ._registry import Domain, ThrottleRegistry

__all__ = [
    "MAX_SERVER_HOLD_SECONDS",
    "AIMDController",
    "AdaptiveLimiter",
    "ControllerStatistics",
    "Domain",
    "ThrottleRegistry",
    "Ticket",
    "TokenBucket",
    "Transition",
]
