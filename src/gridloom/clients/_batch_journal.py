"""The record of a model's batch jobs in the run directory, so a resumed run re-attaches.

``<out>/batches/<alias>.json``::

    {"version": 1, "alias": "writer", "provider": "openai", "where": "https://api.openai.com/v1",
     "jobs": [{"id": "batch_...", "endpoint": "/v1/chat/completions",
               "items": {"<custom_id>": "<request key>", ...}}]}

A request key is a hash of the request's endpoint and wire body, so a resumed run that makes
the same request finds the job that already holds it, and polls that job instead of paying
for a new one. The file is replaced atomically (:meth:`gridloom.storage.Location.write_bytes`)
after each submission, and read within :data:`MAX_JOURNAL_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import trio

from .._attrs import frozen
from ..errors import StorageError
from ..storage import Location

__all__ = ["MAX_JOURNAL_BYTES", "BatchJournal", "JobRecord", "is_safe_id", "request_key"]

logger = logging.getLogger("gridloom.batch")

#: Largest journal read back.
MAX_JOURNAL_BYTES = 64 * 1024 * 1024
_VERSION = 1
#: A provider's job or file id as gridloom puts it in a URL path: one path segment, no dot
#: segment, nothing that would need escaping.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}")


def is_safe_id(value: object) -> bool:
    """Whether ``value`` is an id that can go in a URL path as it is (see :data:`_SAFE_ID`):
    a provider or a journal naming another would point requests elsewhere."""
    return isinstance(value, str) and _SAFE_ID.fullmatch(value) is not None


def request_key(endpoint: str, body: Mapping[str, Any]) -> str:
    """A stable hash of a request: its endpoint and canonical JSON body."""
    text = json.dumps(
        [endpoint, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@frozen(kw_only=True)
class JobRecord:
    """One submitted job: its id, endpoint and items (``custom_id`` → request key)."""

    id: str
    endpoint: str
    items: Mapping[str, str]


def _file_name(alias: str) -> str:
    """``batches/<alias>.json``; an alias that is not a safe file name as it is gets its
    safe form plus a digest of the alias, so two aliases never share one journal."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", alias)[:100] or "model"
    if safe != alias:
        safe += "-" + hashlib.sha256(alias.encode()).hexdigest()[:12]
    return f"batches/{safe}.json"


class BatchJournal:
    """The jobs of one model alias, in ``batches/<alias>.json`` under ``location``.

    Args:
        location: the run's folder.
        alias: the model alias.
        provider: ``openai`` or ``anthropic`` (a journal of the other kind is ignored).
        where: the provider's endpoint (a journal written against another is ignored: the
            jobs it lists are not there).
    """

    def __init__(self, location: Location, alias: str, provider: str, *, where: str = ""):
        self._location = location
        self._alias = alias
        self._provider = provider
        self._where = where
        self._rel = _file_name(alias)
        self._jobs: list[JobRecord] = []

    @property
    def jobs(self) -> tuple[JobRecord, ...]:
        """The jobs recorded so far (read by :meth:`load`, or added since)."""
        return tuple(self._jobs)

    async def load(self) -> tuple[JobRecord, ...]:
        """Read the recorded jobs (none when there is no journal, or it is unreadable: logged)."""
        try:
            data = await trio.to_thread.run_sync(
                lambda: self._location.read_bytes(self._rel, limit=MAX_JOURNAL_BYTES)
            )
        except StorageError as exc:
            logger.warning("batch journal of %r ignored: %s", self._alias, exc)
            return ()
        if data is None:
            return ()
        self._jobs = self._parse(data)
        return tuple(self._jobs)

    def _parse(self, data: bytes) -> list[JobRecord]:
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            value = None
        if (
            not isinstance(value, dict)
            or value.get("version") != _VERSION
            or value.get("provider") != self._provider
            or value.get("alias") != self._alias
            or value.get("where", "") != self._where
            or not isinstance(value.get("jobs"), list)
        ):
            logger.warning("batch journal of %r is not one gridloom wrote: ignored", self._alias)
            return []
        jobs = []
        for job in value["jobs"]:
            if not isinstance(job, dict):
                continue
            job_id, endpoint, items = job.get("id"), job.get("endpoint"), job.get("items")
            if (
                is_safe_id(job_id)
                and isinstance(endpoint, str)
                and isinstance(items, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in items.items())
            ):
                jobs.append(JobRecord(id=str(job_id), endpoint=endpoint, items=dict(items)))
        return jobs

    async def add(self, job: JobRecord) -> None:
        """Record ``job`` (the whole journal is rewritten atomically)."""
        self._jobs.append(job)
        data = json.dumps(
            {
                "version": _VERSION,
                "alias": self._alias,
                "provider": self._provider,
                "where": self._where,
                "jobs": [
                    {"id": j.id, "endpoint": j.endpoint, "items": dict(j.items)} for j in self._jobs
                ],
            },
            separators=(",", ":"),
        ).encode()
        await trio.to_thread.run_sync(self._location.write_bytes, self._rel, data)
