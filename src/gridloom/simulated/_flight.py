"""The bookkeeping of one request the simulated endpoint admitted: its capacity slot and its
timeline entry, settled exactly once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._behaviour import ModelBehaviour
from ._requests import EmbeddingsRequest, GenerationRequest

__all__ = ["Flight", "sampling_of"]


class Flight:
    """One admitted request: settled once (capacity released, outcome recorded), which
    happens just before its final response is sent, or when it ends without one."""

    def __init__(
        self,
        finish: Callable[..., None],
        behaviour: ModelBehaviour,
        path: str,
        start: float,
        sampling: Mapping[str, Any],
    ):
        self._finish = finish
        self.behaviour = behaviour
        self.path = path
        self.start = start
        self.sampling = sampling
        self.outcome = "client_closed"
        self.settled = False

    def settle(
        self,
        status: int | None,
        outcome: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        if self.settled:
            return
        self.settled = True
        self.outcome = outcome
        self.behaviour.release()
        self._finish(
            self.behaviour.name,
            self.path,
            self.start,
            status,
            outcome,
            admitted=True,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            sampling=self.sampling,
        )


def sampling_of(request: GenerationRequest | EmbeddingsRequest) -> dict[str, Any]:
    """The sampling parameters a request carried, for its timeline entry."""
    if not isinstance(request, GenerationRequest):
        return {}
    return {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
    }
