"""Transport retry: 502/503/504 and connection failures, with capped, fully jittered backoff.

Only failures of the path to the model are retried here. A 429 is never retried at this layer:
it is raised at once so the adaptive throttle above can learn from it. Other 5xx, 408, timeouts
and bad requests are raised at once as well; the fault policy above decides whether the task is
deferred or its row dropped. Waits use ``trio.sleep``, so they pass in virtual time under
``autojump_clock``. Behind a throttled client a wait gives the request's limiter slot back
(:data:`~gridloom.clients._span.CURRENT_SLOT`) and queues for one again afterwards.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import attrs
import httpx
import trio

from .._attrs import frozen
from ..errors import ModelError, ProviderUnavailable
from ._errors import error_from_exception, error_from_response
from ._exchange import Reply
from ._secret import Secret
from ._span import CURRENT_CALLER, CURRENT_SLOT

__all__ = ["RETRY_STATUSES", "RetryPolicy", "send_with_retry"]

#: What one attempt gives: an ``httpx.Response``, or a successful :class:`Reply` of the fast
#: exchange (an unsuccessful one arrives as an ``httpx.Response``).
R = TypeVar("R", httpx.Response, httpx.Response | Reply)

logger = logging.getLogger("gridloom.clients")

#: Response statuses retried by the transport layer.
RETRY_STATUSES = frozenset({502, 503, 504})

# Failures of the connection itself: refused, reset, dropped mid-answer. Timeouts are excluded.
_RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.RemoteProtocolError)


@frozen(kw_only=True)
class RetryPolicy:
    """How often, and after how long, a transport failure is tried again.

    The wait before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(cap, base * 2 ** (n - 1))]`` ("full jitter"); a ``Retry-After`` on the failed
    response raises it to at least that many seconds. A ``Retry-After`` longer than ``cap`` is
    not waited out here: the error is raised at once, carrying ``retry_after``, for the fault
    policy above to defer the task.

    Attributes:
        max_attempts: attempts in all, the first included; 1 disables retrying.
        base: ceiling of the first wait, in seconds.
        cap: largest ceiling of any wait, in seconds.
        rng: source of the jitter; seed it for reproducible waits.
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    base: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    cap: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    rng: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def backoff(self, retry: int) -> float:
        """A jittered wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** (retry - 1))
        return self.rng.uniform(0.0, ceiling)


async def send_with_retry(
    send: Callable[[], Awaitable[R]],
    *,
    policy: RetryPolicy,
    provider: str | None,
    model: str | None,
    secrets: Iterable[Secret] = (),
) -> R:
    """Call ``send`` until it gives a successful response, retrying transport failures.

    Args:
        send: makes one attempt; may raise ``httpx.HTTPError`` or a
            :class:`~gridloom.errors.ModelError` (the latter is never retried).
        policy: attempts and backoff.
        provider: the provider's name, for errors and logs.
        model: the model name, for errors and logs.
        secrets: values to redact from error messages.

    Returns:
        The first 2xx response.

    Raises:
        ModelError: the mapped error of a response or exception that is not retried here, or of
            the last attempt.
    """
    secrets = tuple(secrets)
    attempt = 1
    while True:
        # Errors are raised outside the except clauses, so that neither ``__cause__`` nor
        # ``__context__`` holds the httpx exception, whose request carries the headers.
        error: ModelError
        response: R | None = None
        try:
            response = await send()
        except httpx.HTTPError as exc:
            error = error_from_exception(exc, provider=provider, model=model, secrets=secrets)
            # A failure that cannot heal (a TLS handshake that is refused) is not tried again.
            retry = isinstance(exc, _RETRY_EXCEPTIONS) and error.retryable
        if response is not None:
            if response.is_success:
                return response
            assert isinstance(response, httpx.Response)  # a Reply is always a success
            error = error_from_response(response, provider=provider, model=model, secrets=secrets)
            retry = response.status_code in RETRY_STATUSES
        if not retry:
            raise error
        if attempt >= policy.max_attempts:
            raise error
        wait = policy.backoff(attempt)
        retry_after = error.retry_after if isinstance(error, ProviderUnavailable) else None
        if retry_after is not None:
            if retry_after > policy.cap:
                raise error
            wait = max(wait, retry_after)
        logger.debug(
            "%s/%s: attempt %d of %d failed (%s); retrying in %.3f s",
            provider,
            model,
            attempt,
            policy.max_attempts,
            error,
            wait,
        )
        caller = CURRENT_CALLER.get()
        if caller is not None:
            caller.transport_retry(type(error).__name__)
        slot = CURRENT_SLOT.get()
        if slot is None:
            await trio.sleep(wait)
        else:  # the wait does not hold a model slot another request could use
            await slot.sleep_outside(wait)
        attempt += 1
