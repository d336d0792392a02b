"""Anthropic's extended thinking on the simulated endpoint: the ``thinking`` field of a Messages
request, checked as the real API checks it, and what it does to the answer.

``{"type": "enabled", "budget_tokens": N}`` makes any model think: the answer starts with a
``thinking`` block, as a model configured with ``reasoning: true`` always does, of at most
``N`` tokens (words, as :func:`._requests.count_tokens` counts them). ``{"type": "adaptive"}``
turns it on with no budget of its own (``max_tokens`` bounds it). ``{"type": "disabled"}``
turns it off, also for a ``reasoning: true`` model. Without the field the model's own
``reasoning`` setting decides, as before.

With thinking on, ``max_tokens`` covers the thinking and the answer together: a text answer
is cut to what the thinking leaves of it (``stop_reason: max_tokens``).

The checks (each a 400 naming the field): ``thinking`` is an object whose ``type`` is
``enabled``, ``disabled`` or ``adaptive``; ``enabled`` needs an integer ``budget_tokens`` of
at least :data:`MIN_BUDGET_TOKENS` and below ``max_tokens``; and while thinking is on,
``temperature`` may only be 1, ``top_k`` may not be set, and ``top_p`` must lie from
:data:`MIN_TOP_P` to 1. Each check reads a few scalars: no work grows with the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .._attrs import frozen
from ..config import SimulatedModel
from ..config._thinking import MIN_BUDGET_TOKENS, MIN_TOP_P, THINKING_TYPES, shown
from ._errors import RequestError

if TYPE_CHECKING:
    from ._replies import Reply

__all__ = [
    "MIN_BUDGET_TOKENS",
    "MIN_TOP_P",
    "Thinking",
    "fit_to_max_tokens",
    "parse_thinking",
    "reasoning_length",
]


@frozen(kw_only=True)
class Thinking:
    """The ``thinking`` a Messages request asked for.

    Attributes:
        type: ``enabled``, ``disabled`` or ``adaptive``.
        budget_tokens: the most tokens of thinking (``enabled`` only).
    """

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None

    @property
    def on(self) -> bool:
        """Whether the model thinks."""
        return self.type != "disabled"


def parse_thinking(
    body: Mapping[str, Any],
    *,
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
) -> Thinking | None:
    """The ``thinking`` of a Messages ``body`` (``None`` when absent), checked against the
    request's ``max_tokens`` and sampling parameters.

    Raises:
        RequestError: the field is malformed, or the request combines thinking with what the
            API refuses with it.
    """
    raw = body.get("thinking")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RequestError(
            f"thinking: must be an object such as {{'type': 'enabled', 'budget_tokens': 2048}},"
            f" got {shown(raw)}",
            param="thinking",
        )
    kind = raw.get("type")
    if kind not in THINKING_TYPES:
        raise RequestError(
            f"thinking.type: must be 'enabled', 'disabled' or 'adaptive', got {shown(kind)}",
            param="thinking.type",
        )
    budget: int | None = None
    if kind == "enabled":
        budget = _budget(raw.get("budget_tokens", ...), max_tokens)
    thinking = Thinking(type=kind, budget_tokens=budget)
    if thinking.on:
        _check_sampling(body, temperature, top_p)
    return thinking


def _budget(value: Any, max_tokens: int) -> int:
    param = "thinking.budget_tokens"
    if value is ...:
        raise RequestError(f"{param}: Field required when thinking is enabled", param=param)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{param}: must be an integer, got {shown(value)}", param=param)
    if value < MIN_BUDGET_TOKENS:
        raise RequestError(
            f"{param}: must be at least {MIN_BUDGET_TOKENS}, got {shown(value)}", param=param
        )
    if value >= max_tokens:
        raise RequestError(
            f"{param}: must be less than max_tokens ({max_tokens}), got {shown(value)}; max_tokens"
            " covers the thinking and the answer",
            param=param,
        )
    return value


def _check_sampling(
    body: Mapping[str, Any], temperature: float | None, top_p: float | None
) -> None:
    if temperature is not None and temperature != 1:
        raise RequestError(
            f"temperature: may only be set to 1 when thinking is enabled, got {temperature:g}",
            param="temperature",
        )
    if body.get("top_k") is not None:
        raise RequestError("top_k: may not be set when thinking is enabled", param="top_k")
    if top_p is not None and not MIN_TOP_P <= top_p <= 1:
        raise RequestError(
            f"top_p: must be from {MIN_TOP_P} to 1 when thinking is enabled, got {top_p:g}",
            param="top_p",
        )


def reasoning_length(
    thinking: Thinking | None, model: SimulatedModel, max_tokens: int | None = None
) -> int | None:
    """The length the reasoning text is built for (its words are about half of it, see
    ``_replies._reasoning``), or ``None`` for no reasoning: the model's ``output_tokens``,
    when it reasons, and, when thinking is requested, no more than twice its bound, so the
    thinking stays within it: an ``enabled`` budget, or for ``adaptive`` half of
    ``max_tokens`` (the thinking then leaves about half of ``max_tokens`` to the answer)."""
    if thinking is None:
        return model.output_tokens if model.reasoning else None
    if not thinking.on:
        return None
    if thinking.budget_tokens is not None:
        return min(model.output_tokens, 2 * thinking.budget_tokens)
    if max_tokens is None:
        return model.output_tokens
    return min(model.output_tokens, max_tokens)


def fit_to_max_tokens(reply: Reply, thinking: Thinking | None, max_tokens: int | None) -> Reply:
    """``reply`` within ``max_tokens`` when thinking was requested and is on: its thinking cut
    to ``max_tokens`` (only a tiny ``max_tokens`` with ``adaptive`` thinking needs it), then
    a text answer cut to the tokens the thinking leaves (structured answers and tool calls
    are left whole, as ``max_tokens`` never cuts them on the simulated endpoint). Words are
    counted as :func:`._requests.count_tokens` counts them."""
    if thinking is None or not thinking.on or max_tokens is None:
        return reply
    if reply.reasoning is not None and reply.reasoning_tokens > max_tokens:
        reasoning = " ".join(reply.reasoning.split()[:max_tokens])
        cut = reply.reasoning_tokens - max_tokens
        reply = attrs.evolve(
            reply,
            reasoning=reasoning,
            reasoning_tokens=max_tokens,
            output_tokens=reply.output_tokens - cut,
        )
    if reply.kind != "text" or reply.tool_calls or reply.output_tokens <= max_tokens:
        return reply
    keep = max(0, max_tokens - reply.reasoning_tokens)
    text = " ".join(reply.text.split()[:keep])
    return attrs.evolve(
        reply, text=text, truncated=True, output_tokens=keep + reply.reasoning_tokens
    )
