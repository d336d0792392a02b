"""The simulated batch APIs: OpenAI's files and batches, Anthropic's message batches.

OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}`` and
``GET /v1/files/{id}/content``; ``POST /v1/batches`` (``input_file_id``, ``endpoint``:
``/v1/chat/completions`` or ``/v1/embeddings``), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. Statuses go ``validating`` → ``in_progress`` →
``finalizing`` → ``completed`` (or ``failed`` for an invalid input file, ``expired``,
``cancelled``); the output file holds the answered items, the error file the others, one
JSON line each with its ``custom_id``.

Anthropic: ``POST /v1/messages/batches`` (``requests: [{custom_id, params}]``),
``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results`` (JSONL, once
``processing_status`` is ``ended``) and ``POST /v1/messages/batches/{id}/cancel``; results
are ``succeeded``, ``errored``, ``canceled`` or ``expired``.

Jobs advance on the endpoint's clock (virtual under ``autojump_clock`` when the app runs in
the test's trio loop): a job ends when it is looked at ``completion_delay`` seconds or more
after its creation. Everything is bounded by :class:`~gridloom.config.BatchSimulation`: items
per job, file size, jobs and files held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from .._attrs import define, frozen
from ..config import BatchSimulation
from ._asgi import (
    MESSAGE_BATCHES_ROUTE,
    Api,
    Receive,
    Scope,
    Send,
    error_body,
    read_body,
    send_bytes,
    send_json,
)
from ._batch_jobs import (
    Answer,
    Item,
    Job,
    anthropic_batch,
    draw_fate,
    item_result,
    openai_batch,
    render_job,
)
from ._multipart import MultipartError, boundary_of, parse_form
from ._requests import RequestError, parse_json_body

__all__ = ["BatchService", "BatchStatistics"]

_OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
#: Longest ``custom_id`` accepted (Anthropic's limit; OpenAI's is larger).
MAX_CUSTOM_ID = 64
#: Items answered between two checkpoints while a job ends.
_SLICE = 64


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@frozen(kw_only=True)
class BatchStatistics:
    """What the batch APIs have seen.

    Attributes:
        files_uploaded: files created with ``POST /v1/files``.
        jobs_created: batch jobs created (both APIs): what a provider bills for.
        items_submitted: items in those jobs.
        polls: ``GET`` of a job.
    """

    files_uploaded: int
    jobs_created: int
    items_submitted: int
    polls: int


@define(eq=False)
class _File:
    id: str
    purpose: str
    filename: str
    data: bytes
    created: int


def _custom_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CUSTOM_ID:
        raise ValueError(f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters")
    return value


class BatchService:
    """The batch routes of one :class:`SimulatedApp`.

    Args:
        settings: delays, partial failures and limits.
        answer: answers one item as the online endpoint would.
        seed: seeds the items' fates.
        clock: the app's clock (jobs end on it).
        wall_clock: seconds since the epoch, for the timestamps in the objects.
    """

    def __init__(
        self,
        settings: BatchSimulation,
        answer: Answer,
        *,
        seed: int,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ):
        self.settings = settings
        self._answer = answer
        self._seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._files: dict[str, _File] = {}
        self._jobs: dict[str, Job] = {}
        self._uploads = 0
        self._created = 0
        self._items = 0
        self._polls = 0
        self._ending = trio.Lock()

    def statistics(self) -> BatchStatistics:
        """A snapshot of the counters."""
        return BatchStatistics(
            files_uploaded=self._uploads,
            jobs_created=self._created,
            items_submitted=self._items,
            polls=self._polls,
        )

    async def handle(self, scope: Scope, api: Api, receive: Receive, send: Send) -> None:
        """Answer one request to a batch route."""
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.removeprefix("/v1/").split("/")
        body = await read_body(receive) if method == "POST" else b""
        try:
            if parts[0] == "files":
                await self._files_route(scope, method, parts[1:], body, send)
            elif parts[0] == "batches":
                await self._openai_route(method, parts[1:], body, send)
            else:
                await self._anthropic_route(scope, method, parts[2:], body, send)
        except _Refused as exc:
            await send_json(send, exc.status, error_body(api, exc.status, exc.message))

    # ----------------------------------------------------------------- common

    def _room(self) -> None:
        if len(self._jobs) + len(self._files) >= 3 * self.settings.max_jobs or (
            len(self._jobs) >= self.settings.max_jobs
        ):
            raise _Refused(
                400, f"the simulated endpoint holds at most {self.settings.max_jobs} jobs"
            )

    def _job(self, job_id: str, api: Api) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.api != api:
            raise _Refused(404, f"no batch {job_id[:80]!r}")
        return job

    def _new_job(self, api: Api, endpoint: str, items: list[Item]) -> Job:
        self._room()
        self._created += 1
        self._items += len(items)
        prefix = "msgbatch_" if api == "anthropic" else "batch_"
        job = Job(
            id=f"{prefix}{self._created:06d}",
            api=api,
            endpoint=endpoint,
            items=items,
            created=self._clock(),
            created_wall=self._wall_clock(),
        )
        self._jobs[job.id] = job
        return job

    async def _advance(self, job: Job) -> None:
        """End the job if it is due (answering its items, with checkpoints between slices)."""
        async with self._ending:
            ending = job.due(self._clock(), self.settings)
            if ending is None:
                return
            results = []
            if ending != "failed":
                for index, item in enumerate(job.items):
                    fate = draw_fate(self.settings, self._seed, job.id, item.custom_id)
                    results.append(item_result(job, item, fate, ending, self._answer))
                    if index % _SLICE == _SLICE - 1:
                        await trio.sleep(0)
            job.results = results
            job.ending = ending
            job.ended_wall = self._wall_clock()
            out, errors = render_job(job)
            if job.api == "openai" and ending != "failed":
                if out:
                    job.output_file_id = self._store("batch_output", f"{job.id}_output.jsonl", out)
                if errors:
                    job.error_file_id = self._store("batch_output", f"{job.id}_error.jsonl", errors)
            elif job.api == "anthropic":
                job.output_file_id = self._store("batch_results", f"{job.id}.jsonl", out)

    def _store(self, purpose: str, filename: str, data: bytes) -> str:
        file = _File(
            id=f"file-{len(self._files) + 1:06d}",
            purpose=purpose,
            filename=filename,
            data=data,
            created=int(self._wall_clock()),
        )
        self._files[file.id] = file
        return file.id

    # ----------------------------------------------------------------- OpenAI files

    async def _files_route(
        self, scope: Scope, method: str, parts: list[str], body: bytes, send: Send
    ) -> None:
        if not parts and method == "POST":
            await send_json(send, 200, self._upload(scope, body))
            return
        if not parts or method != "GET" or len(parts) > 2:
            raise _Refused(405 if parts else 400, "use POST /v1/files or GET /v1/files/{id}")
        file = self._files.get(parts[0])
        if file is None:
            raise _Refused(404, f"no file {parts[0][:80]!r}")
        if len(parts) == 1:
            await send_json(send, 200, _file_object(file))
        elif parts[1] == "content":
            await send_bytes(send, 200, file.data, content_type=b"application/jsonl")
        else:
            raise _Refused(404, f"unknown path {scope['path'][:120]!r}")

    def _upload(self, scope: Scope, body: bytes) -> dict[str, Any]:
        headers = dict(scope.get("headers") or [])
        content_type = bytes(headers.get(b"content-type", b"")).decode("latin-1")
        if len(body) > self.settings.max_file_bytes + 64 * 1024:
            raise _Refused(400, f"a file may hold at most {self.settings.max_file_bytes} bytes")
        try:
            form = parse_form(body, boundary_of(content_type))
        except MultipartError as exc:
            raise _Refused(400, str(exc)) from None
        purpose = form.get("purpose", (b"", None))[0].decode("utf-8", "replace")
        if purpose != "batch":
            raise _Refused(400, f"purpose must be 'batch' here, got {purpose[:40]!r}")
        if "file" not in form:
            raise _Refused(400, "the form has no 'file'")
        data, filename = form["file"]
        if len(data) > self.settings.max_file_bytes:
            raise _Refused(400, f"a file may hold at most {self.settings.max_file_bytes} bytes")
        self._room()
        self._uploads += 1
        file_id = self._store("batch", (filename or "upload.jsonl")[:200], data)
        return _file_object(self._files[file_id])

    # ----------------------------------------------------------------- OpenAI batches

    async def _openai_route(self, method: str, parts: list[str], body: bytes, send: Send) -> None:
        if not parts and method == "POST":
            job = self._create_openai(body)
            if job.errors is not None:
                await self._advance(job)
            await send_json(send, 200, openai_batch(job, job.ending or "validating"))
            return
        if len(parts) == 1 and method == "GET":
            job = self._job(parts[0], "openai")
            self._polls += 1
            await self._advance(job)
            await send_json(send, 200, openai_batch(job, job.status(self._clock(), self.settings)))
            return
        if len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            job = self._job(parts[0], "openai")
            if job.ending is None:
                job.cancelled_at = self._clock()
                job.cancelled_wall = self._wall_clock()
                await self._advance(job)
            await send_json(send, 200, openai_batch(job, job.status(self._clock(), self.settings)))
            return
        raise _Refused(405, "use POST /v1/batches, GET /v1/batches/{id}, POST .../cancel")

    def _create_openai(self, body: bytes) -> Job:
        payload = _json_object(body)
        endpoint = payload.get("endpoint")
        if endpoint not in _OPENAI_ENDPOINTS:
            raise _Refused(400, f"endpoint must be one of {', '.join(_OPENAI_ENDPOINTS)}")
        if payload.get("completion_window", "24h") != "24h":
            raise _Refused(400, "completion_window must be '24h'")
        file = self._files.get(str(payload.get("input_file_id")))
        if file is None or file.purpose != "batch":
            raise _Refused(400, "input_file_id names no file uploaded with purpose 'batch'")
        items, errors = self._read_input(file.data, str(endpoint))
        job = self._new_job("openai", str(endpoint), items)
        job.input_file_id = file.id
        metadata = payload.get("metadata")
        if isinstance(metadata, dict):
            job.metadata = {str(k)[:64]: str(v)[:512] for k, v in list(metadata.items())[:16]}
        if errors:
            job.errors = errors[:100]
            job.items = []
        return job

    def _read_input(self, data: bytes, endpoint: str) -> tuple[list[Item], list[dict[str, Any]]]:
        """The items of an input file, and what is wrong with it (the job then fails)."""
        items: list[Item] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        lines = [line for line in data.split(b"\n") if line.strip()]
        if len(lines) > self.settings.max_items:
            message = f"a batch may hold at most {self.settings.max_items} requests"
            return [], [{"code": "too_many_requests", "message": message, "line": None}]
        if not lines:
            return [], [{"code": "empty_file", "message": "the input file is empty", "line": None}]
        for number, line in enumerate(lines, 1):
            try:
                record = parse_json_body(line)
                custom_id = _custom_id(record.get("custom_id"))
                if custom_id in seen:
                    raise ValueError(f"custom_id {custom_id!r} is repeated")
                if record.get("method") != "POST" or record.get("url") != endpoint:
                    raise ValueError(f"each request must be a POST to {endpoint}")
                if not isinstance(record.get("body"), dict):
                    raise ValueError("each request needs a 'body' object")
            except (RequestError, ValueError) as exc:
                message = exc.message if isinstance(exc, RequestError) else str(exc)
                errors.append({"code": "invalid_request", "message": message, "line": number})
                continue
            seen.add(custom_id)
            items.append(Item(custom_id, record["body"]))
        return items, errors

    # ----------------------------------------------------------------- Anthropic batches

    async def _anthropic_route(
        self, scope: Scope, method: str, parts: list[str], body: bytes, send: Send
    ) -> None:
        if not parts and method == "POST":
            job = self._create_anthropic(body)
            await send_json(send, 200, anthropic_batch(job, self._results_url(scope, job)))
            return
        if not parts:
            raise _Refused(405, "use POST /v1/messages/batches")
        job = self._job(parts[0], "anthropic")
        if len(parts) == 1 and method == "GET":
            self._polls += 1
            await self._advance(job)
        elif len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            if job.ending is None:
                job.cancelled_at = self._clock()
                job.cancelled_wall = self._wall_clock()
                await self._advance(job)
        elif len(parts) == 2 and parts[1] == "results" and method == "GET":
            await self._advance(job)
            if job.ending is None or job.output_file_id is None:
                raise _Refused(400, f"batch {job.id} has not ended: no results yet")
            data = self._files[job.output_file_id].data
            await send_bytes(send, 200, data, content_type=b"application/x-jsonl")
            return
        else:
            raise _Refused(405, "use GET .../{id}, GET .../{id}/results or POST .../{id}/cancel")
        await send_json(send, 200, anthropic_batch(job, self._results_url(scope, job)))

    def _create_anthropic(self, body: bytes) -> Job:
        if len(body) > self.settings.max_file_bytes:
            raise _Refused(400, f"a batch may hold at most {self.settings.max_file_bytes} bytes")
        requests = _json_object(body).get("requests")
        if not isinstance(requests, list) or not requests:
            raise _Refused(400, "'requests' must be a non-empty list")
        if len(requests) > self.settings.max_items:
            raise _Refused(400, f"a batch may hold at most {self.settings.max_items} requests")
        items: list[Item] = []
        seen: set[str] = set()
        for index, request in enumerate(requests):
            try:
                if not isinstance(request, dict) or not isinstance(request.get("params"), dict):
                    raise ValueError("each request needs 'custom_id' and a 'params' object")
                custom_id = _custom_id(request.get("custom_id"))
                if custom_id in seen:
                    raise ValueError(f"custom_id {custom_id!r} is repeated")
            except ValueError as exc:
                raise _Refused(400, f"requests[{index}]: {exc}") from None
            seen.add(custom_id)
            items.append(Item(custom_id, request["params"]))
        return self._new_job("anthropic", "/v1/messages", items)

    @staticmethod
    def _results_url(scope: Scope, job: Job) -> str:
        headers = dict(scope.get("headers") or [])
        host = bytes(headers.get(b"host", b"127.0.0.1")).decode("latin-1")[:255]
        return f"http://{host}{MESSAGE_BATCHES_ROUTE}/{job.id}/results"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        return parse_json_body(body)
    except RequestError as exc:
        raise _Refused(400, exc.message) from None


def _file_object(file: _File) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": len(file.data),
        "created_at": file.created,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
    }
