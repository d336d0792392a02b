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


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every occurrence of each secret's value replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret.reveal(), _MASK)
    return text
