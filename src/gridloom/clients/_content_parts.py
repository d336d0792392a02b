"""A reply's ``message.content`` given as a list of parts (Mistral's reasoning models).

Magistral and other reasoning models on Mistral's API answer with
``content: [{"type": "thinking", "thinking": [{"type": "text", "text": ...}]},
{"type": "text", "text": ...}]``. The ``text`` parts, joined, are the answer; the
``thinking`` (or ``reasoning``) parts, whose value is text or a list of text parts, are the
reasoning; parts of other types (images, references, ...) are skipped. A list holds at most
:data:`MAX_CONTENT_PARTS` parts and a thinking part at most as many text parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import MalformedResponse

__all__ = ["MAX_CONTENT_PARTS", "split_content"]

#: The most parts a reply's content list (or a thinking part's list) may hold.
MAX_CONTENT_PARTS = 1024

_THINKING = ("thinking", "reasoning")
_WHERE = "choices[0].message.content"


def _texts(value: Any, where: str, malformed: Callable[[str], MalformedResponse]) -> list[str]:
    """The text of a thinking part's value: a string, or a list of ``text`` parts."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise malformed(f"'{where}' is neither text nor a list of parts")
    if len(value) > MAX_CONTENT_PARTS:
        raise malformed(f"'{where}' holds {len(value)} parts, more than {MAX_CONTENT_PARTS}")
    return [
        part["text"]
        for part in value
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]


def split_content(
    content: Any, malformed: Callable[[str], MalformedResponse]
) -> tuple[str, str | None]:
    """The answer text and the reasoning (``None`` when there is none) in a reply's
    ``content``: ``null``, a string, or a list of parts (see the module's docstring).

    Raises:
        MalformedResponse: (from ``malformed``) the content is of another type, a part is not
            an object, a part of a known type lacks its text, or a list is over
            :data:`MAX_CONTENT_PARTS` parts.
    """
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise malformed(f"'{_WHERE}' is neither a string nor a list of parts")
    if len(content) > MAX_CONTENT_PARTS:
        raise malformed(f"'{_WHERE}' holds {len(content)} parts, more than {MAX_CONTENT_PARTS}")
    texts: list[str] = []
    thoughts: list[str] = []
    for index, part in enumerate(content):
        where = f"{_WHERE}[{index}]"
        if not isinstance(part, dict):
            raise malformed(f"'{where}' is not an object")
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise malformed(f"'{where}' is a text part without a 'text' string")
            texts.append(part["text"])
        elif kind in _THINKING:
            value = part.get(kind, part.get("text"))
            thoughts.extend(_texts(value, f"{where}.{kind}", malformed))
    return "".join(texts), "".join(thoughts) or None
