"""Response bodies in each API's shape (OpenAI chat/embeddings/models, Anthropic Messages).

Bodies are deterministic: ids derive from the request digest and ``created`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._replies import Reply, embedding_vector
from ._requests import EmbeddingsRequest, GenerationRequest

__all__ = ["anthropic_message", "chat_completion", "embeddings", "model_list"]


def chat_completion(request: GenerationRequest, reply: Reply) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    usage: dict[str, Any] = {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }
    if reply.reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return {
        "id": f"chatcmpl-{request.digest().hex()[:24]}",
        "object": "chat.completion",
        "created": 0,
        "model": request.model,
        "system_fingerprint": "gridloom-simulated",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "length" if reply.truncated else "stop",
            }
        ],
        "usage": usage,
    }


def anthropic_message(request: GenerationRequest, reply: Reply) -> dict[str, Any]:
    """An Anthropic Messages ``message`` object (a ``thinking`` block first when reasoning)."""
    content: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        signature = request.digest().hex()[:32]
        content.append({"type": "thinking", "thinking": reply.reasoning, "signature": signature})
    content.append({"type": "text", "text": reply.text})
    return {
        "id": f"msg_{request.digest().hex()[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": "max_tokens" if reply.truncated else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def embeddings(request: EmbeddingsRequest, dimensions: int) -> dict[str, Any]:
    """An OpenAI embeddings ``list``."""
    tokens = request.input_tokens()
    return {
        "object": "list",
        "model": request.model,
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_vector(request.model, text, dimensions),
            }
            for index, text in enumerate(request.inputs)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_list(names: Iterable[str]) -> dict[str, Any]:
    """An OpenAI model ``list``."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "gridloom-simulated"}
            for name in names
        ],
    }
