"""Response bodies in each API's shape (OpenAI chat/embeddings/models, Anthropic Messages).

Bodies are deterministic: ids derive from the request digest and ``created`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._replies import Reply, ToolCall, embedding_vector
from ._requests import EmbeddingsRequest, GenerationRequest

__all__ = [
    "OWNER",
    "anthropic_message",
    "anthropic_stop_reason",
    "chat_completion",
    "chat_usage",
    "embeddings",
    "finish_reason",
    "model_list",
    "model_object",
    "openai_tool_call",
]

#: The ``owned_by`` of every listed model.
OWNER = "gridloom-simulated"


def finish_reason(reply: Reply) -> str:
    """OpenAI's ``finish_reason`` for ``reply``."""
    if reply.tool_calls:
        return "tool_calls"
    return "length" if reply.truncated else "stop"


def anthropic_stop_reason(reply: Reply) -> str:
    """Anthropic's ``stop_reason`` for ``reply``."""
    if reply.tool_calls:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def openai_tool_call(call: ToolCall) -> dict[str, Any]:
    """The ``tool_calls`` entry of a call."""
    return {
        "id": f"call_{call.key}",
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json()},
    }


def chat_usage(replies: Sequence[Reply]) -> dict[str, Any]:
    """The ``usage`` of a chat completion with these choices (the prompt counted once)."""
    first = replies[0]
    prompt, completion, reasoning = first.input_tokens, first.output_tokens, first.reasoning
    for reply in replies[1:]:
        completion += reply.output_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning is not None:  # the same model: all choices reason, or none does
        reasoning_tokens = sum(reply.reasoning_tokens for reply in replies)
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


def chat_completion(request: GenerationRequest, replies: Sequence[Reply]) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object, one choice per reply."""
    choices = []
    for index, reply in enumerate(replies):
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["content"] = None
            message["tool_calls"] = [openai_tool_call(call) for call in reply.tool_calls]
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reply),
            }
        )
    return {
        "id": f"chatcmpl-{request.digest().hex()[:24]}",
        "object": "chat.completion",
        "created": 0,
        "model": request.model,
        "system_fingerprint": OWNER,
        "choices": choices,
        "usage": chat_usage(replies),
    }


def anthropic_message(request: GenerationRequest, reply: Reply) -> dict[str, Any]:
    """An Anthropic Messages ``message`` object (a ``thinking`` block first when reasoning;
    then a ``text`` block, or a ``tool_use`` block per tool call)."""
    content: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        signature = request.digest().hex()[:32]
        content.append({"type": "thinking", "thinking": reply.reasoning, "signature": signature})
    for call in reply.tool_calls:
        block = {"type": "tool_use", "id": f"toolu_{call.key}", "name": call.name}
        content.append(block | {"input": call.arguments})
    if not reply.tool_calls:
        content.append({"type": "text", "text": reply.text})
    return {
        "id": f"msg_{request.digest().hex()[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": anthropic_stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def embeddings(
    request: EmbeddingsRequest, dimensions: int, *, vectors: Sequence[list[float]] | None = None
) -> dict[str, Any]:
    """An OpenAI embeddings ``list`` (of ``vectors``, one per input, when already computed)."""
    tokens = request.input_tokens()
    if vectors is None:
        vectors = [embedding_vector(request.model, text, dimensions) for text in request.inputs]
    return {
        "object": "list",
        "model": request.model,
        "data": [
            {"object": "embedding", "index": index, "embedding": vector}
            for index, vector in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_object(name: str) -> dict[str, Any]:
    """A ``model`` object in both APIs' shapes at once: OpenAI's (``object``, ``created``,
    ``owned_by``) and Anthropic's (``type``, ``display_name``, ``created_at``); each SDK reads
    its own fields and ignores the others'."""
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": OWNER,
        "type": "model",
        "display_name": name,
        "created_at": "1970-01-01T00:00:00Z",
    }


def model_list(names: Iterable[str]) -> dict[str, Any]:
    """A model ``list`` in both APIs' shapes (Anthropic's adds the page's ``has_more``,
    ``first_id`` and ``last_id``: one page holds every model)."""
    data = [model_object(name) for name in names]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
