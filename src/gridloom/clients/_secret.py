"""A wrapper that keeps an API key out of reprs, strings, logs and error messages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Secret", "redact"]

_MASK = "***"


class Secret:
    """A secret string (an API key) that never shows itself.

    ``repr()`` and ``str()`` give ``Secret('***')``; only :meth:`reveal` returns the value, and
    the adapters call it only to build a request header.

    Args:
        value: the secret; must not be empty.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a Secret cannot be empty")
        self._value = value

    def reveal(self) -> str:
        """The secret value itself: for request headers only, never for messages."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    __str__ = __repr__


#: A run of this many characters of a secret, found anywhere in a text, is masked too: a
#: server that echoes the request may cut a key short, and what is left of it still leaks.
FRAGMENT_CHARS = 8


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every occurrence of each secret's value replaced by ``***``, and every
    run of at least :data:`FRAGMENT_CHARS` characters of a secret (a cut or partial echo of
    it) masked likewise."""
    values = sorted({secret.reveal() for secret in secrets}, key=len, reverse=True)
    for value in values:
        text = text.replace(value, _MASK)
    size = FRAGMENT_CHARS
    grams = {v[i : i + size] for v in values for i in range(len(v) - size + 1)}
    if not grams or len(text) < size:
        return text
    covered = [False] * len(text)
    for i in range(len(text) - size + 1):
        if text[i : i + size] in grams:
            covered[i : i + size] = [True] * size
    if not any(covered):
        return text
    out: list[str] = []
    masking = False
    for char, hidden in zip(text, covered, strict=True):
        if hidden:
            if not masking:
                out.append(_MASK)
            masking = True
        else:
            out.append(char)
            masking = False
    return "".join(out)
