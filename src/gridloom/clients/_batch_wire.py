"""The provider side of batch mode: submit a job, poll it, read its results.

OpenAI (and compatible servers, the simulated endpoint included): the items go up as a JSONL
file (``POST files``, ``purpose=batch``), then ``POST batches`` names it; ``GET batches/{id}``
reports the status, and once it is ``completed``, ``failed``, ``expired`` or ``cancelled``
the output and error files (``GET files/{id}/content``) hold one line per item, by
``custom_id``. Anthropic: ``POST messages/batches`` carries the items; once
``processing_status`` is ``ended``, ``GET messages/batches/{id}/results`` holds one line per
item.

Every reply is read within a size cap; a result line that is not the documented shape is
skipped (its item then counts as missing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import trio

from .._attrs import frozen
from ..errors import BadRequest, MalformedResponse
from ._anthropic import AnthropicClient
from ._batch_journal import is_safe_id
from ._http import request_url
from ._limit import ResponseCap, read_body
from ._openai import OpenAIClient
from ._retry import send_with_retry

__all__ = ["MAX_RESULTS_BYTES", "BatchWire", "ItemOutcome", "JobState"]

logger = logging.getLogger("gridloom.batch")

#: Largest results file (or output plus error file) read for one job.
MAX_RESULTS_BYTES = 512 * 1024 * 1024
#: Largest reply to a submission, a poll or a cancellation.
MAX_CONTROL_BYTES = 1024 * 1024
#: Anthropic's error types and the HTTP statuses they stand for.
_ANTHROPIC_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
#: Results bodies up to this size, and jobs up to this many items, are encoded or decoded on
#: the event loop (a few milliseconds); larger ones in a worker thread.
_INLINE_BYTES = 256 * 1024
_INLINE_ITEMS = 256
_OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


@frozen(kw_only=True)
class JobState:
    """A job as the provider reported it.

    Attributes:
        status: the provider's word (``in_progress``, ``completed``, ``ended``, ...).
        ended: no item will change any more: the results can be read.
        files: where the results are (OpenAI: output and error file ids; Anthropic: none).
        errors: why the provider refused the whole job (OpenAI ``failed``), if it did.
    """

    status: str
    ended: bool
    files: tuple[str, ...] = ()
    errors: str | None = None


@frozen(kw_only=True)
class ItemOutcome:
    """One item's result line.

    Attributes:
        custom_id: the item it answers.
        status: the HTTP status of its answer (200: ``body`` is the reply), or ``None`` when
            it was not answered (``reason`` says why: ``expired``, ``canceled``).
        body: the reply, or the error body.
        reason: for an unanswered item, the provider's word for why.
    """

    custom_id: str
    status: int | None
    body: Any = None
    reason: str = ""


class BatchWire:
    """Batch jobs of one provider, through the adapter's HTTP client and credentials.

    Args:
        adapter: the provider's adapter (its client, headers and retry policy are used).
        model: the model name, for errors.
    """

    def __init__(self, adapter: OpenAIClient | AnthropicClient, model: str):
        self._adapter = adapter
        self._anthropic = isinstance(adapter, AnthropicClient)
        self._model = model

    @property
    def kind(self) -> str:
        """``anthropic`` or ``openai``."""
        return "anthropic" if self._anthropic else "openai"

    async def _send(
        self,
        method: str,
        path: str,
        *,
        limit: int = MAX_CONTROL_BYTES,
        json_body: Mapping[str, Any] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        adapter = self._adapter
        http = adapter._http
        provider = adapter.provider.name

        async def attempt() -> httpx.Response:
            request = http.build_request(
                method,
                request_url(http, path),
                json=json_body,
                files=files,
                data=data,
                headers=adapter._auth_headers(),
            )
            response = await http.send(request, stream=True)
            try:
                await read_body(response, ResponseCap(limit=limit), provider=provider, model=None)
            finally:
                await response.aclose()
            return response

        return await send_with_retry(
            attempt,
            policy=adapter._retry,
            provider=provider,
            model=self._model,
            secrets=adapter._secrets,
        )

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            value = response.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise MalformedResponse(
                "a batch API reply is not a JSON object",
                provider=self._adapter.provider.name,
                model=self._model,
            )
        return value

    def _field(self, reply: Mapping[str, Any], name: str) -> str:
        value = reply.get(name)
        bad_id = name == "id" and not is_safe_id(value)
        if not isinstance(value, str) or not value or len(value) > 256 or bad_id:
            raise MalformedResponse(
                f"a batch API reply has no {name!r}",
                provider=self._adapter.provider.name,
                model=self._model,
            )
        return value

    # ----------------------------------------------------------------- the calls

    async def submit(self, endpoint: str, items: list[tuple[str, Mapping[str, Any]]]) -> str:
        """Create a job of ``items`` (``custom_id``, request body) for ``endpoint`` (e.g.
        ``/v1/chat/completions``); its id."""
        if self._anthropic:
            requests = [{"custom_id": cid, "params": dict(body)} for cid, body in items]
            reply = self._json(
                await self._send("POST", "messages/batches", json_body={"requests": requests})
            )
            return self._field(reply, "id")
        if len(items) > _INLINE_ITEMS:
            lines = await trio.to_thread.run_sync(_jsonl, endpoint, items)
        else:
            lines = _jsonl(endpoint, items)
        files = {"file": ("gridloom-batch.jsonl", lines, "application/jsonl")}
        upload = self._json(
            await self._send("POST", "files", files=files, data={"purpose": "batch"})
        )
        body = {
            "input_file_id": self._field(upload, "id"),
            "endpoint": endpoint,
            "completion_window": "24h",
        }
        return self._field(self._json(await self._send("POST", "batches", json_body=body)), "id")

    async def poll(self, job_id: str) -> JobState:
        """The job's state now."""
        if self._anthropic:
            reply = self._json(await self._send("GET", f"messages/batches/{job_id}"))
            status = self._field(reply, "processing_status")
            return JobState(status=status, ended=status == "ended")
        reply = self._json(await self._send("GET", f"batches/{job_id}"))
        status = self._field(reply, "status")
        files = tuple(
            value
            for value in (reply.get("output_file_id"), reply.get("error_file_id"))
            if isinstance(value, str) and value
        )
        if any(not is_safe_id(value) for value in files):
            logger.warning("batch job %s names a result file whose id is not one: ignored", job_id)
            files = tuple(value for value in files if is_safe_id(value))
        errors = None
        if status == "failed":
            listed = (
                (reply.get("errors") or {}).get("data")
                if isinstance(reply.get("errors"), dict)
                else None
            )
            messages = [
                str(e.get("message"))[:200] for e in (listed or [])[:3] if isinstance(e, dict)
            ]
            errors = "; ".join(messages) or "the provider failed the batch job"
        return JobState(status=status, ended=status in _OPENAI_ENDED, files=files, errors=errors)

    async def cancel(self, job_id: str) -> None:
        """Ask the provider to cancel the job."""
        path = (
            f"messages/batches/{job_id}/cancel" if self._anthropic else f"batches/{job_id}/cancel"
        )
        await self._send("POST", path)

    async def results(self, job_id: str, state: JobState) -> list[ItemOutcome]:
        """The result lines of an ended job (possibly with missing or repeated ids)."""
        if state.errors is not None:
            raise BadRequest(
                f"the provider refused batch job {job_id}: {state.errors}",
                provider=self._adapter.provider.name,
                model=self._model,
            )
        if self._anthropic:
            response = await self._send(
                "GET", f"messages/batches/{job_id}/results", limit=MAX_RESULTS_BYTES
            )
            return await _read_outcomes(response.content, self._anthropic_line)
        outcomes: list[ItemOutcome] = []
        budget = MAX_RESULTS_BYTES
        for file_id in state.files:
            response = await self._send("GET", f"files/{file_id}/content", limit=budget)
            budget -= len(response.content)
            outcomes += await _read_outcomes(response.content, self._openai_line)
        return outcomes

    # ----------------------------------------------------------------- result lines

    @staticmethod
    def _openai_line(line: Any) -> ItemOutcome | None:
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str):
            return None
        response = line.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            return ItemOutcome(
                custom_id=custom_id, status=response["status_code"], body=response.get("body")
            )
        error = line.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        reason = {"batch_expired": "expired", "batch_cancelled": "canceled"}.get(str(code), "")
        return ItemOutcome(custom_id=custom_id, status=None, reason=reason or str(code)[:64])

    @staticmethod
    def _anthropic_line(line: Any) -> ItemOutcome | None:
        custom_id = line.get("custom_id")
        result = line.get("result")
        if not isinstance(custom_id, str) or not isinstance(result, dict):
            return None
        kind = result.get("type")
        if kind == "succeeded":
            return ItemOutcome(custom_id=custom_id, status=200, body=result.get("message"))
        if kind == "errored":
            error = result.get("error")
            inner = error.get("error") if isinstance(error, dict) else None
            name = inner.get("type") if isinstance(inner, dict) else None
            status = _ANTHROPIC_STATUSES.get(str(name), 500)
            return ItemOutcome(custom_id=custom_id, status=status, body=error)
        return ItemOutcome(custom_id=custom_id, status=None, reason=str(kind)[:64])


def _jsonl(endpoint: str, items: list[tuple[str, Mapping[str, Any]]]) -> bytes:
    """An OpenAI batch input file of ``items`` (in a worker thread: a job may hold 50,000)."""
    return b"".join(
        json.dumps(
            {"custom_id": cid, "method": "POST", "url": endpoint, "body": body},
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
        + b"\n"
        for cid, body in items
    )


async def _read_outcomes(
    data: bytes, read: Callable[[Any], ItemOutcome | None]
) -> list[ItemOutcome]:
    """:func:`_outcomes`, in a worker thread when ``data`` is large (not on the event loop)."""
    if len(data) > _INLINE_BYTES:
        return await trio.to_thread.run_sync(_outcomes, data, read)
    return _outcomes(data, read)


def _outcomes(data: bytes, read: Callable[[Any], ItemOutcome | None]) -> list[ItemOutcome]:
    """The outcomes of a results body's lines (in a worker thread: up to 512 MiB of JSON)."""
    return [outcome for line in _lines(data) if (outcome := read(line))]


def _lines(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL body (other lines skipped, and counted in one warning)."""
    out: list[dict[str, Any]] = []
    skipped = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            out.append(value)
        else:
            skipped += 1
    if skipped:
        logger.warning("skipped %d batch result line(s) that are not JSON objects", skipped)
    return out
