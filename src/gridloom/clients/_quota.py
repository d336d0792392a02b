"""Quota headers: what a provider says is left of its rate limits, read from a success.

OpenAI and most OpenAI-compatible servers send::

    x-ratelimit-limit-requests: 60         x-ratelimit-limit-tokens: 150000
    x-ratelimit-remaining-requests: 59     x-ratelimit-remaining-tokens: 149984
    x-ratelimit-reset-requests: 1s         x-ratelimit-reset-tokens: 6m0s

(resets are Go-style durations — ``20ms``, ``1h2m3.5s`` — or a bare number of seconds), and
Anthropic sends ``anthropic-ratelimit-requests-limit|remaining|reset`` and
``anthropic-ratelimit-tokens-limit|remaining|reset``, its resets as RFC 3339 timestamps. Both
become one :class:`~gridloom.clients.RateLimitState`, which the throttle uses to stop admitting
requests before the provider has to refuse them.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from typing import Any

import httpx

from ._errors import _delay_seconds
from ._types import RateLimitState

__all__ = ["parse_rate_limit_headers", "parse_reset_duration"]

_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,  # Go spells microseconds with the micro sign,
    "μs": 1e-6,  # or with the Greek letter mu
    "ns": 1e-9,
}
# One "<number><unit>" part of a Go duration; longer units first so "ms" is not read as "m".
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)", re.ASCII)
_COUNT = re.compile(r"\d+(?:\.0*)?", re.ASCII)

# RateLimitState field -> (OpenAI header, Anthropic header).
_HEADERS = {
    "limit_requests": ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
    "remaining_requests": (
        "x-ratelimit-remaining-requests",
        "anthropic-ratelimit-requests-remaining",
    ),
    "reset_requests": ("x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"),
    "limit_tokens": ("x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"),
    "remaining_tokens": ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"),
    "reset_tokens": ("x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset"),
}
_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def parse_reset_duration(value: str | None) -> float | None:
    """Seconds in an OpenAI-style reset value.

    Args:
        value: a Go-style duration (``"1s"``, ``"20ms"``, ``"6m0s"``, ``"1h2m3.5s"``) or a bare
            number of seconds (``"0.5"``).

    Returns:
        The duration in seconds, or ``None`` when the value is missing, negative, not finite or
        not understood.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _PART.match(text) is None:
        return _delay_seconds(text)
    total = 0.0
    position = 0
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            return None
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    return total if math.isfinite(total) else None


def _reset_timestamp(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` until an RFC 3339 timestamp (0 once it has passed), or ``None``."""
    if value is None:
        return None
    text = value.strip().upper()
    if not text or not text[0].isdigit():
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:  # RFC 3339 requires an offset; read a missing one as UTC.
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def _count(value: str | None) -> int | None:
    """A non-negative whole number (``"60"``, leniently ``"60.0"``), or ``None``."""
    if value is None:
        return None
    text = value.strip()
    if _COUNT.fullmatch(text) is None:
        return None
    return int(text.split(".", 1)[0])


def parse_rate_limit_headers(
    headers: httpx.Headers, *, now: float | None = None
) -> RateLimitState | None:
    """The quota a response's headers report, in OpenAI's or Anthropic's format.

    A value that is malformed (or a reset that is negative) is left ``None``; this never
    raises. Where a response carries both formats, the OpenAI header wins field by field.

    Args:
        headers: the response's headers.
        now: the wall-clock time (seconds since the epoch) Anthropic's reset timestamps are
            measured from; ``time.time()`` when ``None``.

    Returns:
        The state, or ``None`` when no quota header is present at all.
    """
    quota = {
        key: value
        for key, value in reversed(headers.multi_items())  # the first of repeated headers wins
        if key.startswith(_PREFIXES)
    }
    if not quota:
        return None
    present = False
    values: dict[str, Any] = {}
    for field, (openai, anthropic) in _HEADERS.items():
        openai_value, anthropic_value = quota.get(openai), quota.get(anthropic)
        present = present or openai_value is not None or anthropic_value is not None
        if field.startswith("reset_"):
            value: float | int | None = parse_reset_duration(openai_value)
            if value is None and anthropic_value is not None:
                value = _reset_timestamp(anthropic_value, time.time() if now is None else now)
        else:
            value = _count(openai_value)
            if value is None:
                value = _count(anthropic_value)
        values[field] = value
    if not present:
        return None
    return RateLimitState(**values)
