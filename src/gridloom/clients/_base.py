"""What the provider adapters share: construction, a safe repr, sending, shape checks."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import httpx

from ..config import ProviderConfig
from ..config._urls import redact_url
from ..errors import EmptyAnswer, IncompleteAnswer, MalformedResponse
from ._errors import _error_detail, _excerpt
from ._http import direct_route
from ._post import post_json
from ._quota import parse_rate_limit_headers
from ._retry import RetryPolicy
from ._secret import Secret
from ._types import CONTEXT_FULL_REASONS, RateLimitState, Usage

__all__ = ["MAX_REPORTED_TOKENS", "REFUSAL_CHARS", "AdapterBase", "as_tokens", "optional_str"]

logger = logging.getLogger("gridloom.clients")

#: Longest excerpt of a model's refusal kept in an error message.
REFUSAL_CHARS = 200


class AdapterBase:
    """Common part of :class:`OpenAIClient` and :class:`AnthropicClient`.

    Args:
        http: the provider's shared client (see :func:`build_http_client`); its base URL ends
            with the API version, e.g. ``https://api.openai.com/v1``.
        provider: the provider's config; its ``extra_body`` is merged into every request body.
        api_key: the API key, or ``None`` for servers without authentication.
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.
    """

    __slots__ = ("_api_key", "_cut_told", "_http", "_provider", "_retry", "_secrets")

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        provider: ProviderConfig,
        api_key: Secret | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._provider = provider
        self._api_key = api_key
        self._retry = RetryPolicy() if retry is None else retry
        self._cut_told: set[str] = set()
        # Redacted from every error message: the key and every configured header value
        # (headers_env's read from the environment).
        self._secrets = tuple(
            [*([] if api_key is None else [api_key])]
            + [Secret(value) for value in provider.headers.values() if value]
            + [
                Secret(value)
                for name in provider.headers_env.values()
                if (value := os.environ.get(name, "").strip())
            ]
        )

    @property
    def provider(self) -> ProviderConfig:
        """The provider's config."""
        return self._provider

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self._provider.name!r},"
            f" base_url={redact_url(str(self._endpoint()))!r})"
        )

    def _endpoint(self) -> httpx.URL:
        route = direct_route(self._http)
        return route.base_url if route is not None else self._http.base_url

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with the provider's then the request's extra fields merged over it."""
        return {**base, **self._provider.extra_body, **extra}

    async def _post(
        self, path: str, body: Mapping[str, Any], *, model: str, time_limit: float | None
    ) -> tuple[Any, RateLimitState | None]:
        """POST ``body``; the decoded reply and the quota its headers report (if any)."""
        data, headers = await post_json(
            self._http,
            path,
            body,
            headers=self._auth_headers(),
            time_limit=time_limit,
            retry=self._retry,
            provider=self._provider.name,
            model=model,
            secrets=self._secrets,
        )
        return data, parse_rate_limit_headers(headers)

    def _checked_answer(
        self,
        model: str,
        text: str,
        *,
        has_calls: bool,
        cut: str | None,
        filtered: bool = False,
        gave_up: str | None = None,
        refusal: str | None = None,
        reasoning: str | None = None,
        max_tokens: int | None = None,
        usage: Usage | None = None,
    ) -> None:
        """Refuse an answer without content (only whitespace) and without tool calls, saying
        why (:class:`~gridloom.errors.EmptyAnswer`): ``cut`` (the finish reason of an answer
        cut short, one of :data:`~gridloom.clients._types.CUT_FINISH_REASONS`), ``filtered``
        (a content filter), a ``refusal``, else nothing reported. An answer with content that
        was ``cut`` is kept, and the first per model is logged as a warning (its column
        counts it and applies its ``on_truncated``). One with content that was ``filtered``,
        that the server ``gave_up`` (``abort``, ``error``), or that ends in a ``refusal``
        (Anthropic's streaming classifiers stop a reply mid-way with ``stop_reason:
        refusal``) is partial: :class:`~gridloom.errors.IncompleteAnswer`. The reply's
        ``usage`` goes with the error: it was served and billed."""
        where: dict[str, Any] = {"provider": self._provider.name, "model": model}
        if usage is not None:
            where.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
        refused = refusal.strip() if refusal is not None else ""
        if text.strip() and not has_calls and (gave_up is not None or filtered or refused):
            if refused:
                raise IncompleteAnswer(
                    f"the answer is partial: the model refused after {len(text)} characters"
                    f" ({_quoted_refusal(refused)}); the text before it is not an answer",
                    reason="refusal",
                    **where,
                )
            if filtered:
                raise IncompleteAnswer(
                    f"the answer is partial: the provider's content filter cut it after"
                    f" {len(text)} characters (finish_reason: content_filter); reword the"
                    " prompt",
                    reason="content_filter",
                    **where,
                )
            raise IncompleteAnswer(
                f"the answer is partial: the server stopped generating after {len(text)}"
                f" characters (finish_reason: {gave_up}): it gave up mid-answer",
                reason=gave_up or "abort",
                **where,
            )
        if has_calls or text.strip():
            if cut and not has_calls and model not in self._cut_told:
                self._cut_told.add(model)
                logger.warning(
                    "%s/%s: an answer was cut short (finish_reason: %s); its column keeps it"
                    " truncated unless its on_truncated says drop or retry; %s if whole"
                    " answers matter (told once per model)",
                    self._provider.name,
                    model,
                    cut,
                    _cut_advice(cut, max_tokens),
                )
            return
        if refused:
            raise EmptyAnswer(
                f"no answer: the model refused: {_quoted_refusal(refused)}",
                reason="refusal",
                **where,
            )
        if cut is not None:
            spent = f", spent on {len(reasoning)} characters of reasoning" if reasoning else ""
            raise EmptyAnswer(
                f"no answer: the model was cut short (finish_reason: {cut}) before any"
                f" content{spent}; {_cut_advice(cut, max_tokens)}",
                reason="length",
                **where,
            )
        if filtered:
            raise EmptyAnswer(
                "no answer: the provider's content filter withheld it"
                " (finish_reason: content_filter)",
                reason="content_filter",
                **where,
            )
        raise EmptyAnswer(
            "no answer: the reply has empty content and no tool calls", reason="empty", **where
        )

    def _malformed(self, model: str, what: str, data: Any = None) -> MalformedResponse:
        """The error for a reply that lacks ``what``; when its body (``data``) is an error
        object (``{"error": {"message": ...}}``, as some proxies send with a 200), the
        provider's message is quoted, redacted and cut as an error status's is."""
        detail = _error_detail(data)
        if detail is not None:
            what += f"; the body is an error: {_excerpt(detail, self._secrets)}"
        return MalformedResponse(
            f"reply is not the API's documented shape: {what}",
            provider=self._provider.name,
            model=model,
        )


#: The largest token count a reply's usage may report; a larger one is not believed.
MAX_REPORTED_TOKENS = 100_000_000
_TOLD_ABSURD: list[bool] = []


def _quoted_refusal(refusal: str) -> str:
    """A model's refusal text on one line, bounded, quoted."""
    quoted = " ".join(refusal.split())
    if len(quoted) > REFUSAL_CHARS:
        quoted = quoted[: REFUSAL_CHARS - 1] + "…"
    return repr(quoted)


def _cut_advice(reason: str, max_tokens: int | None) -> str:
    """What to change for whole answers, by the finish reason that cut one short."""
    if reason in CONTEXT_FULL_REASONS:
        return "shorten the prompt or pick a model with a longer context window"
    now = "" if max_tokens is None else f" (now {max_tokens})"
    return f"raise max_tokens{now} on the model or column"


def as_tokens(value: Any) -> int:
    """A token count from a usage block; 0 (unknown) when absent, not a whole number,
    negative, or beyond :data:`MAX_REPORTED_TOKENS` — the last said once per process in a
    warning, so one absurd reply can neither stall a token budget nor fill the summary with
    10^30 tokens."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value <= MAX_REPORTED_TOKENS:
            return value
        if not _TOLD_ABSURD:
            _TOLD_ABSURD.append(True)
            logger.warning(
                "a reply's usage reports %.3g tokens, more than %d: counted as unknown (0);"
                " told once",
                float(value),
                MAX_REPORTED_TOKENS,
            )
    return 0


def optional_str(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None
