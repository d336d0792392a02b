"""How an MCP tool's result becomes the text a model reads: text content as is, other kinds
of content (images, audio, resources) as one short line each — never their raw bytes —,
structured content as JSON when there is no text, all within a size bound."""

from __future__ import annotations

import json

import mcp_types

from ._base import MAX_TOOL_RESULT_CHARS

__all__ = ["MAX_RESULT_CHARS", "describe_content", "render_result"]

_SHORT = 200


def _short(text: str, limit: int = _SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_content(block: object) -> str:
    """One block of a result as text: a text block's text, one short line for the others
    (also for kinds of content newer than this code)."""
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        size = len(block.data) * 3 // 4  # base64
        return f"[{block.type}: {_short(block.mime_type, 60)}, about {size} bytes]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        mime = resource.mime_type or "unknown type"
        if isinstance(resource, mcp_types.TextResourceContents):
            length = f"{len(resource.text)} characters"
        else:
            length = f"about {len(resource.blob) * 3 // 4} bytes"
        return f"[resource {_short(str(resource.uri))}: {_short(mime, 60)}, {length}]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link {_short(str(block.uri))}: {_short(block.name, 80)}]"
    return f"[{_short(str(getattr(block, 'type', type(block).__name__)), 40)} content]"


def _joined(parts: list[str], limit: int) -> str:
    """``parts`` joined by newlines, cut at ``limit`` characters (saying so). The parts come
    from one message, itself bounded, so joining them first is bounded too."""
    text = "\n".join(parts)
    if len(text) > limit:
        text = text[:limit] + f"\n[cut: {len(text)} characters in all]"
    return text


#: The longest rendered result: the Toolbox's bound less room for the note saying it was
#: cut, so that the Toolbox passes it on as is.
MAX_RESULT_CHARS = MAX_TOOL_RESULT_CHARS - 64


def render_result(result: mcp_types.CallToolResult, limit: int = MAX_RESULT_CHARS) -> str:
    """The text of ``result`` (at most ``limit`` characters, plus a note when cut)."""
    parts = [describe_content(block) for block in result.content]
    has_text = any(isinstance(block, mcp_types.TextContent) for block in result.content)
    if not has_text and result.structured_content is not None:
        structured = json.dumps(result.structured_content, ensure_ascii=False, default=str)
        parts.insert(0, structured)
    return _joined(parts, limit)
