"""Streamed answers (``stream: true``) as server-sent events.

OpenAI: ``chat.completion.chunk`` objects in ``data:`` lines — per choice, a first chunk with
the role, deltas of ``reasoning_content``, then of ``content`` or of tool calls (per call, a
chunk with its ``index``, id and name, then deltas of its ``arguments``), a last chunk with
the ``finish_reason`` — then, with ``stream_options.include_usage``, a chunk with the
``usage`` and no choices, and ``data: [DONE]``. Choices follow one another.

Anthropic: ``message_start``; per content block (``thinking``, then ``text`` or
``tool_use``) ``content_block_start``, its deltas (``thinking_delta`` and a
``signature_delta``, ``text_delta``, ``input_json_delta``) and ``content_block_stop``;
``message_delta`` with the ``stop_reason`` and the usage; ``message_stop``.

Texts are cut at word boundaries into at most :data:`MAX_PIECES` deltas each, so the
concatenated deltas are the same text as the answer without streaming. Each event carries the
words (tokens) it delivers: the per-token latency is spent between events, the rest of the
latency before the first byte, so a streamed answer ends when the same answer unstreamed
would.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._attrs import frozen
from ._asgi import Send, dump_json
from ._formats import (
    OWNER,
    anthropic_message,
    anthropic_stop_reason,
    chat_usage,
    finish_reason,
    openai_tool_call,
)
from ._replies import Reply
from ._requests import GenerationRequest, count_tokens

__all__ = ["MAX_PIECES", "Piece", "anthropic_events", "openai_events", "send_stream", "split"]

#: Most deltas one text (answer, reasoning, tool arguments) is cut into.
MAX_PIECES = 32
_BOUNDARY = re.compile(r"(?<=\S)(?=\s)")
_HEAD = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


@frozen
class Piece:
    """One event, and the output tokens it delivers."""

    tokens: int
    data: bytes


def split(text: str, limit: int = MAX_PIECES) -> list[str]:
    """``text`` cut before whitespace that follows a word, into at most ``limit`` parts of
    whole words (joined, they are ``text``)."""
    if not text:
        return []
    words = _BOUNDARY.split(text)
    size = max(1, math.ceil(len(words) / limit))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def openai_events(request: GenerationRequest, replies: Sequence[Reply]) -> list[Piece]:
    """The events of a streamed chat completion with one choice per reply."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{request.digest().hex()[:24]}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": request.model,
        "system_fingerprint": OWNER,
    }
    tail: dict[str, Any] = {"usage": None} if request.include_usage else {}

    def chunk(
        index: int, delta: dict[str, Any], part: str = "", finish: str | None = None
    ) -> Piece:
        """A chunk of choice ``index`` delivering ``part`` (its words are its tokens)."""
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = b"data: " + dump_json(base | {"choices": [choice]} | tail) + b"\n\n"
        return Piece(count_tokens(part), data)

    pieces: list[Piece] = []
    for index, reply in enumerate(replies):
        first: dict[str, Any] = {"role": "assistant", "content": None if reply.tool_calls else ""}
        pieces.append(chunk(index, first))
        for part in split(reply.reasoning or ""):
            pieces.append(chunk(index, {"reasoning_content": part}, part))
        for number, call in enumerate(reply.tool_calls):
            head = openai_tool_call(call)
            head["function"] = head["function"] | {"arguments": ""}
            pieces.append(chunk(index, {"tool_calls": [{"index": number} | head]}))
            for part in split(call.arguments_json()):
                delta = {"tool_calls": [{"index": number, "function": {"arguments": part}}]}
                pieces.append(chunk(index, delta, part))
        if not reply.tool_calls:
            pieces.extend(chunk(index, {"content": part}, part) for part in split(reply.text))
        pieces.append(chunk(index, {}, finish=finish_reason(reply)))
    if request.include_usage:
        usage = base | {"choices": [], "usage": chat_usage(replies)}
        pieces.append(Piece(0, b"data: " + dump_json(usage) + b"\n\n"))
    pieces.append(Piece(0, b"data: [DONE]\n\n"))
    return pieces


def _event(kind: str, value: dict[str, Any], tokens: int = 0) -> Piece:
    data = b"event: " + kind.encode() + b"\ndata: " + dump_json({"type": kind} | value) + b"\n\n"
    return Piece(tokens, data)


def anthropic_events(request: GenerationRequest, reply: Reply) -> list[Piece]:
    """The events of a streamed Anthropic message."""
    whole = anthropic_message(request, reply)
    start = whole | {"content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 0}
    pieces = [_event("message_start", {"message": start})]
    for index, block in enumerate(whole["content"]):
        kind = block["type"]
        if kind == "thinking":
            empty: dict[str, Any] = {"type": "thinking", "thinking": ""}
            deltas = [("thinking_delta", "thinking", part) for part in split(block["thinking"])]
            deltas.append(("signature_delta", "signature", block["signature"]))
        elif kind == "tool_use":
            empty = block | {"input": {}}
            text = json.dumps(block["input"], ensure_ascii=False)
            deltas = [("input_json_delta", "partial_json", part) for part in split(text)]
        else:
            empty = {"type": "text", "text": ""}
            deltas = [("text_delta", "text", part) for part in split(block["text"])]
        pieces.append(_event("content_block_start", {"index": index, "content_block": empty}))
        for delta_type, field, part in deltas:
            tokens = 0 if delta_type == "signature_delta" else count_tokens(part)
            delta = {"type": delta_type, field: part}
            pieces.append(_event("content_block_delta", {"index": index, "delta": delta}, tokens))
        pieces.append(_event("content_block_stop", {"index": index}))
    stop = {"stop_reason": anthropic_stop_reason(reply), "stop_sequence": None}
    usage = {"output_tokens": reply.output_tokens}
    pieces.append(_event("message_delta", {"delta": stop, "usage": usage}))
    pieces.append(_event("message_stop", {}))
    return pieces


async def send_stream(
    send: Send,
    pieces: Sequence[Piece],
    *,
    per_token: float,
    headers: list[tuple[bytes, bytes]] | None,
    before_last: Callable[[], None],
) -> None:
    """Send a ``text/event-stream`` response: each piece after its tokens' share of the
    per-token latency (pieces with nothing to wait for go out together), ``before_last()``
    called just before the last bytes go out. Without per-token latency the whole stream is
    one write."""
    head = [*_HEAD, *(headers or [])]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    pending = bytearray()
    for piece in pieces:
        delay = per_token * piece.tokens
        if delay > 0:
            if pending:
                await send(
                    {"type": "http.response.body", "body": bytes(pending), "more_body": True}
                )
                pending.clear()
            await trio.sleep(delay)
        pending += piece.data
    before_last()
    await send({"type": "http.response.body", "body": bytes(pending), "more_body": False})
