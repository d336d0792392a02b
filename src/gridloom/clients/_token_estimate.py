"""What a reply costs a ``tokens_per_minute`` budget when it reports no usage.

A provider's ``usage`` block is what the budget is charged with. A server that sends none
(or a zero count for a side: prompt or answer) would otherwise cost nothing, and the budget
would never hold anything back. Such a side is charged an estimate instead — its characters
divided by :data:`CHARS_PER_TOKEN`, rounded up: the prompt's messages, tool arguments,
response schema and tools for the input; the answer's text, reasoning and tool calls for the
output (an embedding's output is none) — and a warning says, once per budget (a provider's
model), that the budget is enforced on estimates.
"""

from __future__ import annotations

import json
import logging
import math
import weakref
from typing import Any

from ..throttle import TokenBucket
from ._types import ChatRequest, ChatResponse, EmbeddingRequest, Usage

__all__ = ["CHARS_PER_TOKEN", "budget_cost", "input_chars", "output_chars"]

logger = logging.getLogger("gridloom.throttle")

#: Characters per token assumed when a reply reports no token counts (English text is about 4).
CHARS_PER_TOKEN = 4

#: The budgets already warned about (one warning each).
_WARNED: weakref.WeakSet[TokenBucket] = weakref.WeakSet()


def _json_len(value: Any) -> int:
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return 0


def input_chars(request: ChatRequest | EmbeddingRequest | None) -> int:
    """The characters of what ``request`` sends the model."""
    if isinstance(request, EmbeddingRequest):
        return sum(len(text) for text in request.inputs)
    if not isinstance(request, ChatRequest):
        return 0
    chars = 0
    for message in request.messages:
        chars += len(message.content or "")
        chars += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    if request.response_format is not None:
        chars += _json_len(dict(request.response_format.schema))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + _json_len(dict(tool.parameters))
    return chars


def output_chars(result: object) -> int:
    """The characters of the answer in ``result`` (none for an embedding)."""
    if not isinstance(result, ChatResponse):
        return 0
    chars = len(result.text or "") + len(result.reasoning or "")
    return chars + sum(len(call.name) + len(call.arguments) for call in result.tool_calls)


def _estimate(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def budget_cost(
    budget: TokenBucket, request: ChatRequest | EmbeddingRequest | None, result: object
) -> int:
    """The tokens ``result`` costs ``budget``: its usage, with a side it reports as 0 (or a
    missing usage) estimated from the characters sent or received. The first estimate charged
    to ``budget`` logs a warning naming the model."""
    usage = getattr(result, "usage", None)
    reported = usage if isinstance(usage, Usage) else Usage()
    input_tokens, output_tokens = reported.input_tokens, reported.output_tokens
    estimated = False
    if input_tokens <= 0 and (chars := input_chars(request)):
        input_tokens, estimated = _estimate(chars), True
    if output_tokens <= 0 and (chars := output_chars(result)):
        output_tokens, estimated = _estimate(chars), True
    if estimated and budget not in _WARNED:
        _WARNED.add(budget)
        model = request.model if request is not None else "?"
        logger.warning(
            "model %r: a reply reports no token usage; its tokens_per_minute budget is"
            " enforced on estimates (%d characters a token) for such replies",
            model,
            CHARS_PER_TOKEN,
        )
    return input_tokens + output_tokens
