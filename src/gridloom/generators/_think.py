"""A reasoning block written in the answer's text (``<think>…</think>``).

Reasoning models served without a reasoning parser (vLLM, SGLang, llama.cpp, Ollama) put
their thoughts at the start of the answer, between ``<think>`` and ``</think>`` (or
``<thinking>`` tags). :func:`split_think` takes such a leading block off: the rest is the
answer, the block's inner text the reasoning. A block elsewhere in the text, or one that is
never closed, is left where it is.
"""

from __future__ import annotations

import re

__all__ = ["split_think"]

_THINK = re.compile(r"\A\s*<(think|thinking)>(.*?)</\1>\s*", re.DOTALL | re.IGNORECASE)


def split_think(text: str) -> tuple[str, str | None]:
    """The answer ``text`` without a leading ``<think>`` (or ``<thinking>``) block, and the
    block's inner text stripped (``None`` when there is no such block)."""
    match = _THINK.match(text)
    if match is None:
        return text, None
    return text[match.end() :], match.group(2).strip()
