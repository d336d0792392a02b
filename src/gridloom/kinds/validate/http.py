"""The ``http`` validator: POST each value to a validation service, which answers a verdict.

The request body is ``{"value": ..., "column": <target>, "row_id": ...}`` (JSON); the answer
is ``{"is_valid": bool, "messages": [...], "details": ...}``. Requests run on the trio loop
through an ``httpx.AsyncClient``, each with a timeout, admitted by the same adaptive limiter
models have (:class:`gridloom.throttle.AdaptiveLimiter`: at most ``max_parallel`` at once; a
429 halves the limit and holds admission for its ``Retry-After``; successes raise it again).
A 429, a 5xx or a connection failure is tried again (``max_attempts`` in all) after a jittered
backoff (:class:`gridloom.clients.RetryPolicy`) spent outside the limiter, honouring a
``Retry-After`` up to its cap. An answer larger than ``max_response_bytes`` is refused without
being read further. Any other failure fails the cell, with the reason recorded.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import attrs
import httpx
import trio

from ..._attrs import frozen
from ...clients._errors import parse_retry_after
from ...clients._retry import RetryPolicy
from ...config import ThrottleConfig
from ...config._validator import ValidatorConfig
from ...errors import ConfigError, GenerationError
from ...generators._factory import BuildContext
from ...generators.base import CellContext, Context
from ...throttle import AdaptiveLimiter, AIMDController
from ._base import Checker, ValidatorKind
from ._column import ValidateColumn

__all__ = ["VALIDATOR", "HttpCheck", "HttpChecker"]


def _check_url(_inst: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"url is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"url must be an http:// or https:// URL with a host, got {value!r}")


@frozen(kw_only=True)
class HttpCheck(ValidatorConfig):
    """A remote validation service: each value is POSTed as JSON `{value, column, row_id}`;
    the service answers `{is_valid, messages, details?}`.

    Attributes:
        url: the service's URL (http or https).
        api_key_env: an environment variable holding a key, sent as `Authorization: Bearer`.
        timeout: longest one request may take, in seconds.
        max_attempts: attempts per value, the first included; a 429, a 5xx or a connection
            failure is tried again after a jittered backoff.
        max_parallel: most requests in flight at once for this column: the ceiling of its
            adaptive limiter (a 429 lowers the limit, successes raise it back).
        max_response_bytes: largest answer accepted.
    """

    kind: ClassVar[str] = "http"
    url: str = attrs.field(validator=_check_url)
    api_key_env: str | None = None
    timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    max_parallel: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    max_response_bytes: int = attrs.field(default=1_048_576, validator=attrs.validators.ge(64))


class _Retry(Exception):
    """Internal: an attempt that may be tried again; ``retry_after`` from the answer."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, rate_limited: bool = False
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited  #: a 429: the service asks for fewer requests


class HttpChecker(Checker):
    """POSTs each value to the service (on the trio loop)."""

    is_async = True

    def __init__(self, check: HttpCheck, *, column: ValidateColumn, api_key: str | None):
        self.config = check
        self.column = column
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.lane = (f"validate:{check.url}", check.max_parallel)
        self.policy = RetryPolicy(max_attempts=check.max_attempts)
        self._limiter: AdaptiveLimiter | None = None

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The service's adaptive limiter, made on first use (inside the run: its clock is
        the run's)."""
        if self._limiter is None:
            controller = AIMDController(
                cap=self.config.max_parallel,
                # No slow start: nothing drives its doublings here, and a validation
                # service is the user's own (it opens at max_parallel, as before).
                config=ThrottleConfig(slow_start_seconds=0.0),
                clock=trio.current_time,
                name=f"validate {self.column.name}: {self.config.url}",
            )
            self._limiter = AdaptiveLimiter(controller)
        return self._limiter

    async def acheck(self, value: Any, ctx: Context) -> Any:
        row_id = ctx.row_id if isinstance(ctx, CellContext) else None
        body = json.dumps(
            {"value": value, "column": self.column.target, "row_id": row_id},
            ensure_ascii=False,
            default=str,
        ).encode()
        limiter = self.limiter
        attempt = 1
        while True:
            ticket = await limiter.acquire()
            try:
                verdict = await self._attempt(body)
            except _Retry as exc:
                if exc.rate_limited:
                    limiter.rate_limited(ticket, exc.retry_after)
                else:
                    limiter.released(ticket)
                if attempt >= self.config.max_attempts:
                    raise GenerationError(
                        f"column {self.column.name!r}: the validation service failed"
                        f" {attempt} times; last: {exc}"
                    ) from None
                wait = self.policy.backoff(attempt)
                if exc.retry_after is not None:
                    wait = max(wait, min(exc.retry_after, self.policy.cap))
                await trio.sleep(wait)  # outside the limiter: the slot serves others
                attempt += 1
            except BaseException:
                limiter.released(ticket)
                raise
            else:
                limiter.succeeded(ticket)
                return verdict

    async def _attempt(self, body: bytes) -> Any:
        headers = {**self.headers, "Content-Type": "application/json"}
        limit = self.config.max_response_bytes
        try:
            async with (
                httpx.AsyncClient(timeout=self.config.timeout) as client,
                client.stream("POST", self.config.url, content=body, headers=headers) as answer,
            ):
                status = answer.status_code
                if status == 429 or status >= 500:
                    # Seconds or an HTTP date (measured from the reply's Date), as the
                    # model clients read it.
                    wait = parse_retry_after(
                        answer.headers.get("retry-after"), date=answer.headers.get("date")
                    )
                    raise _Retry(f"HTTP {status}", wait, rate_limited=status == 429)
                declared = answer.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise self._too_large()
                data = bytearray()
                async for chunk in answer.aiter_raw():
                    data += chunk
                    if len(data) > limit:
                        raise self._too_large()
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        if status != 200:
            raise GenerationError(
                f"column {self.column.name!r}: the validation service answered HTTP {status}"
            )
        try:
            return json.loads(data)
        except ValueError as exc:
            raise GenerationError(
                f"column {self.column.name!r}: the validation service's answer is not JSON: {exc}"
            ) from None

    def _too_large(self) -> GenerationError:
        return GenerationError(
            f"column {self.column.name!r}: the validation service's answer is larger than"
            f" max_response_bytes ({self.config.max_response_bytes})"
        )


def _build(check: HttpCheck, column: ValidateColumn, ctx: BuildContext) -> HttpChecker:
    key = None
    if check.api_key_env is not None:
        key = os.environ.get(check.api_key_env)
        if not key:
            raise ConfigError(
                f"the environment variable {check.api_key_env!r} is not set",
                column=column.name,
                field="validate.api_key_env",
            )
    return HttpChecker(check, column=column, api_key=key)


VALIDATOR = ValidatorKind(config=HttpCheck, build=_build)
