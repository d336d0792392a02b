"""A ``Retry-After`` HTTP date is measured from the response's own ``Date`` header (the
server's clock), so a skewed clock on either side never changes the wait asked for."""

from __future__ import annotations

import email.utils

import httpx
from hypothesis import given
from hypothesis import strategies as st

from gridloom.clients import error_from_response, parse_retry_after
from gridloom.errors import RateLimited

#: The local clock in these tests (whole seconds: HTTP dates have no fractions).
NOW = 1_700_000_000
REQUEST = httpx.Request("POST", "https://api.example.test/v1/chat/completions")

skews = st.integers(min_value=-48 * 3600, max_value=48 * 3600)
waits = st.integers(min_value=0, max_value=6 * 3600)


def _date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


@given(skew=skews, wait=waits)
def test_wait_is_the_asked_one_whatever_the_skew(skew: int, wait: int) -> None:
    """Server clock ``skew`` seconds off ours, asking for ``wait`` s: the wait is ``wait``."""
    server_now = NOW + skew
    seconds = parse_retry_after(_date(server_now + wait), now=NOW, date=_date(server_now))
    assert seconds == wait


@given(skew=skews, wait=waits)
def test_rate_limited_reply_carries_the_asked_wait(skew: int, wait: int) -> None:
    """A 429 with ``Date`` and a ``Retry-After`` date maps to ``RateLimited(retry_after=wait)``."""
    server_now = NOW + skew
    headers = {"date": _date(server_now), "retry-after": _date(server_now + wait)}
    response = httpx.Response(429, json={"error": {}}, headers=headers, request=REQUEST)
    error = error_from_response(response, provider="p", model="m", now=NOW)
    assert isinstance(error, RateLimited)
    assert error.retry_after == wait


@given(skew=skews, wait=waits)
def test_past_date_by_the_server_clock_is_no_wait(skew: int, wait: int) -> None:
    """A ``Retry-After`` date already past by the server's clock asks for no wait."""
    server_now = NOW + skew
    assert parse_retry_after(_date(server_now - wait), now=NOW, date=_date(server_now)) == 0.0


@given(date=st.one_of(st.none(), st.sampled_from(["", "  ", "yesterday", "Thu, 99 Foo 2023"])))
def test_without_a_usable_date_the_local_clock_is_used(date: str | None) -> None:
    """No ``Date``, or one that is not an HTTP date: the wait is measured from ``now``."""
    assert parse_retry_after(_date(NOW + 30), now=NOW, date=date) == 30.0


def test_delay_seconds_ignore_the_date() -> None:
    """Delay-seconds are a duration: the ``Date`` header plays no part."""
    assert parse_retry_after("7", now=NOW, date=_date(NOW + 300)) == 7.0


def test_reviewer_skew_scenario() -> None:
    """Server 5 min ahead asking for 2 s (was a 302 s wait, capped at 60)."""
    headers = {"Date": _date(NOW + 300), "Retry-After": _date(NOW + 302)}
    response = httpx.Response(429, headers=headers, request=REQUEST)
    error = error_from_response(response, provider="p", model="m", now=NOW)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.0
