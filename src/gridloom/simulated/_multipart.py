"""Reading a ``multipart/form-data`` body (an OpenAI file upload): its fields, bounded."""

from __future__ import annotations

__all__ = ["MultipartError", "boundary_of", "parse_form"]

#: Most parts one form may have (an upload has two: ``purpose`` and ``file``).
MAX_PARTS = 16
#: Longest part head (its headers), in bytes.
MAX_PART_HEAD = 4_096


class MultipartError(ValueError):
    """The body is not a well-formed ``multipart/form-data`` form."""


def boundary_of(content_type: str) -> bytes:
    """The boundary a ``multipart/form-data`` content type names.

    Raises:
        MultipartError: it is another type, or names no boundary.
    """
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {kind.strip()[:64]!r}")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            value = value.strip('"')
            if 0 < len(value) <= 200:
                return value.encode("latin-1", "replace")
    raise MultipartError("the multipart content type names no boundary")


def _disposition(head: bytes) -> tuple[str, str | None]:
    """The field name and file name of a part's ``Content-Disposition`` header."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"content-disposition":
            continue
        field: str | None = None
        filename: str | None = None
        for param in value.decode("utf-8", "replace").split(";")[1:]:
            key, _, raw = param.strip().partition("=")
            text = raw.strip().strip('"')
            if key.lower() == "name":
                field = text
            elif key.lower() == "filename":
                filename = text
        if field is not None:
            return field, filename
    raise MultipartError("a part has no Content-Disposition with a name")


def parse_form(body: bytes, boundary: bytes) -> dict[str, tuple[bytes, str | None]]:
    """The form's fields: name → (value, file name or ``None``); a repeated name keeps the
    first.

    Raises:
        MultipartError: the body is not a form with that boundary, or beyond the limits.
    """
    delimiter = b"--" + boundary
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise MultipartError("the multipart body is not closed by its boundary")
    if len(pieces) - 2 > MAX_PARTS:
        raise MultipartError(f"a form may have at most {MAX_PARTS} parts")
    fields: dict[str, tuple[bytes, str | None]] = {}
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n") or not piece.endswith(b"\r\n"):
            raise MultipartError("a part is not framed by CRLF")
        head, sep, value = piece[2:-2].partition(b"\r\n\r\n")
        if not sep or len(head) > MAX_PART_HEAD:
            raise MultipartError("a part has no head, or one too long")
        name, filename = _disposition(head)
        fields.setdefault(name, (value, filename))
    return fields
