"""The simulated batch jobs themselves: what a job holds, when it ends, what its items become,
and the objects and result lines of the two APIs (OpenAI batches, Anthropic message batches).

A job's items are answered only when it ends — by the callable the app gives, which answers
each one exactly as the online endpoint would the same request — and each item's fate
(answered, failed, expired, missing, written twice) is drawn from the seed, the job id and
its ``custom_id``, so every run of one configuration sees the same fates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

import attrs

from .._attrs import define, frozen
from ..config import BatchSimulation
from ._asgi import Api, dump_json, error_body, format_timestamp

__all__ = [
    "Answer",
    "Fate",
    "Item",
    "ItemResult",
    "Job",
    "anthropic_batch",
    "draw_fate",
    "item_result",
    "openai_batch",
    "render_job",
]

#: Answers one item: (endpoint path, request body) → (HTTP status, JSON body).
Answer = Callable[[str, dict[str, Any]], tuple[int, Any]]
#: What becomes of one item.
Fate = Literal["ok", "error", "expired", "missing", "duplicate"]
#: How long a job may run before the provider gives up on it (OpenAI's 24 h window).
WINDOW_SECONDS = 24 * 3600


@frozen
class Item:
    """One request of a job: its caller's id and its body."""

    custom_id: str
    body: dict[str, Any]


@frozen
class ItemResult:
    """How one item ended: ``succeeded`` (status 200), ``errored`` (any other status),
    ``expired`` or ``canceled``; ``copies`` is how many times it is written (0: missing)."""

    custom_id: str
    kind: Literal["succeeded", "errored", "expired", "canceled"]
    status: int = 0
    body: Any = None
    copies: int = 1


@define(eq=False)
class Job:
    """A batch job: its items, when it was created, how it ended (once it has)."""

    id: str
    api: Api
    endpoint: str
    items: list[Item]
    created: float
    created_wall: float
    input_file_id: str | None = None
    metadata: dict[str, str] | None = None
    #: Validation errors (OpenAI): the job failed at once.
    errors: list[dict[str, Any]] | None = None
    cancelled_at: float | None = None
    cancelled_wall: float | None = None
    #: How it ended: ``completed``, ``expired``, ``cancelled`` or ``failed``; None while running.
    ending: str | None = None
    ended_wall: float | None = None
    results: list[ItemResult] = attrs.field(factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None

    def status(self, now: float, settings: BatchSimulation) -> str:
        """The OpenAI status at ``now`` (ended jobs report how they ended)."""
        if self.ending is not None:
            return self.ending
        if now <= self.created and settings.completion_delay > 0:
            return "validating"
        if now - self.created >= 0.8 * settings.completion_delay:
            return "finalizing"
        return "in_progress"

    def due(self, now: float, settings: BatchSimulation) -> str | None:
        """How the job ends if it should have ended by ``now``, else ``None``."""
        if self.ending is not None:
            return None
        if self.errors is not None:
            return "failed"
        if self.cancelled_at is not None:
            return "cancelled"
        elapsed = now - self.created
        expiry = settings.job_expiry
        if expiry is not None and settings.completion_delay > expiry:
            return "expired" if elapsed >= expiry else None
        return "completed" if elapsed >= settings.completion_delay else None


def draw_fate(settings: BatchSimulation, seed: int, job_id: str, custom_id: str) -> Fate:
    """The fate of one item: a uniform number from the seed, the job and the item, cut by the
    configured shares (errors, then expiries, then missing, then duplicates)."""
    key = f"{seed}\x00{job_id}\x00{custom_id}".encode()
    value = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    for fate, rate in (
        ("error", settings.error_rate),
        ("expired", settings.expired_rate),
        ("missing", settings.missing_rate),
        ("duplicate", settings.duplicate_rate),
    ):
        if value < rate:
            return fate  # type: ignore[return-value]
        value -= rate
    return "ok"


def item_result(job: Job, item: Item, fate: Fate, ending: str, answer: Answer) -> ItemResult:
    """What one item of a job ending as ``ending`` becomes."""
    if ending == "cancelled":
        return ItemResult(item.custom_id, "canceled")
    if ending == "expired" or fate == "expired":
        return ItemResult(item.custom_id, "expired")
    if fate == "error":
        body = error_body(job.api, 500, "simulated failure of a batch item")
        return ItemResult(item.custom_id, "errored", 500, body)
    status, body = answer(job.endpoint, item.body)
    kind: Literal["succeeded", "errored"] = "succeeded" if status == 200 else "errored"
    copies = {"missing": 0, "duplicate": 2}.get(fate, 1)
    return ItemResult(item.custom_id, kind, status, body, copies)


def _when(wall: float | None) -> int | None:
    return None if wall is None else int(wall)


def openai_batch(job: Job, status: str) -> dict[str, Any]:
    """The OpenAI ``batch`` object."""
    counts = {"total": len(job.items), "completed": 0, "failed": 0}
    if job.ending is not None:
        succeeded = sum(1 for r in job.results if r.kind == "succeeded")
        counts["completed"] = succeeded
        counts["failed"] = len(job.items) - succeeded if job.errors is None else 0
    ended = _when(job.ended_wall)
    created = int(job.created_wall)
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "errors": None if job.errors is None else {"object": "list", "data": job.errors},
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": created,
        "in_progress_at": None if job.errors is not None else created,
        "expires_at": created + WINDOW_SECONDS,
        "finalizing_at": ended if job.ending == "completed" else None,
        "completed_at": ended if job.ending == "completed" else None,
        "failed_at": ended if job.ending == "failed" else None,
        "expired_at": ended if job.ending == "expired" else None,
        "cancelling_at": _when(job.cancelled_wall),
        "cancelled_at": ended if job.ending == "cancelled" else None,
        "request_counts": counts,
        "metadata": job.metadata,
    }


def anthropic_batch(job: Job, results_url: str) -> dict[str, Any]:
    """The Anthropic ``message_batch`` object."""
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if job.ending is None:
        counts["processing"] = len(job.items)
    else:
        for result in job.results:
            counts[result.kind] += 1
    if job.ending is not None:
        status = "ended"
    elif job.cancelled_at is not None:
        status = "canceling"
    else:
        status = "in_progress"
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": None if job.ended_wall is None else format_timestamp(job.ended_wall),
        "created_at": format_timestamp(job.created_wall),
        "expires_at": format_timestamp(job.created_wall + WINDOW_SECONDS),
        "archived_at": None,
        "cancel_initiated_at": None
        if job.cancelled_wall is None
        else format_timestamp(job.cancelled_wall),
        "results_url": results_url if job.ending is not None else None,
    }


def render_job(job: Job) -> tuple[bytes, bytes]:
    """The ended job's result lines as JSONL: for OpenAI the output file and the error file;
    for Anthropic the results (and nothing)."""
    out: list[bytes] = []
    errors: list[bytes] = []
    for number, result in enumerate(job.results):
        for copy in range(result.copies):
            line_id = f"batch_req_{job.id}_{number}_{copy}"
            if job.api == "anthropic":
                out.append(dump_json({"custom_id": result.custom_id, "result": _anthropic(result)}))
                continue
            line: dict[str, Any] = {"id": line_id, "custom_id": result.custom_id}
            if result.kind in ("succeeded", "errored"):
                line["response"] = {
                    "status_code": result.status,
                    "request_id": f"req_{job.id}_{number}",
                    "body": result.body,
                }
                line["error"] = None
            else:
                code = "batch_expired" if result.kind == "expired" else "batch_cancelled"
                line["response"] = None
                line["error"] = {"code": code, "message": f"the request was {result.kind}"}
            (out if result.kind == "succeeded" else errors).append(dump_json(line))
    return _jsonl(out), _jsonl(errors)


def _anthropic(result: ItemResult) -> dict[str, Any]:
    if result.kind == "succeeded":
        return {"type": "succeeded", "message": result.body}
    if result.kind == "errored":
        return {"type": "errored", "error": result.body}
    return {"type": result.kind}


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)
