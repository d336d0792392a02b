"""The simulated endpoint's batch APIs, with the official ``openai`` and ``anthropic`` SDKs as
clients: over real sockets, and mounted in-process on the virtual clock where delays matter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import trio

from gridloom.config import BatchSimulation, SimulationConfig
from gridloom.simulated import SimulatedApp, SimulatedServer, serve_simulated

SYSTEM = "Answer briefly."


def chat_body(index: int) -> dict[str, Any]:
    return {
        "model": "writer-8b",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Tell me about river number {index}."},
        ],
    }


def jsonl(count: int, url: str = "/v1/chat/completions") -> bytes:
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": url, "body": chat_body(i)}
        for i in range(count)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def anthropic_requests(count: int) -> list[Any]:
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-sim",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"Tell me about river number {i}."}],
            },
        }
        for i in range(count)
    ]


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with serve_simulated(SimulationConfig()) as running:
        yield running


@pytest.fixture
async def oai(server: SimulatedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0) as c:
        yield c


def in_process(config: SimulationConfig) -> tuple[SimulatedApp, httpx.AsyncClient]:
    """The app mounted in-process: it runs on the test's (virtual) clock."""
    app = SimulatedApp(config)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test")
    return app, http


async def test_openai_batch_answers_items_as_online_over_sockets(
    server: SimulatedServer, oai: openai.AsyncOpenAI
) -> None:
    """Uploaded with files.create and run with batches.create, each item's answer is the very
    body the online endpoint gives the same request, in the output file by custom_id."""
    uploaded = await oai.files.create(file=("in.jsonl", jsonl(4)), purpose="batch")
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(jsonl(4))
    assert (await oai.files.content(uploaded.id)).content == jsonl(4)
    created = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert created.status == "validating"
    batch = await oai.batches.retrieve(created.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (4, 4)
    assert batch.output_file_id is not None
    assert batch.error_file_id is None
    output = lines_of((await oai.files.content(batch.output_file_id)).text)
    assert [line["custom_id"] for line in output] == ["r0", "r1", "r2", "r3"]
    online = await oai.chat.completions.create(**chat_body(2))
    assert output[2]["response"]["status_code"] == 200
    assert output[2]["response"]["body"] == online.model_dump(exclude_unset=True)
    stats = server.app.batches.statistics()
    assert (stats.files_uploaded, stats.jobs_created, stats.items_submitted) == (1, 1, 4)


async def test_openai_embeddings_batch(oai: openai.AsyncOpenAI) -> None:
    """An embeddings job answers each item with the online endpoint's vectors."""
    line = {
        "custom_id": "e0",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "embed-small", "input": ["a river", "a delta"]},
    }
    uploaded = await oai.files.create(file=("e.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    batch = await oai.batches.retrieve(batch.id)
    assert batch.output_file_id is not None
    [result] = lines_of((await oai.files.content(batch.output_file_id)).text)
    online = await oai.embeddings.create(model="embed-small", input=["a river", "a delta"])
    vectors = [item["embedding"] for item in result["response"]["body"]["data"]]
    assert vectors == [item.embedding for item in online.data]


async def test_openai_statuses_follow_the_virtual_clock(autojump_clock: Any) -> None:
    """validating, then in_progress, then finalizing, then completed, as the endpoint's
    (virtual) clock passes the configured completion delay."""
    app, http = in_process(SimulationConfig(batch=BatchSimulation(completion_delay=100.0)))
    async with (
        http,
        openai.AsyncOpenAI(
            base_url="http://sim.test/v1", api_key="k", http_client=http, max_retries=0
        ) as oai,
    ):
        uploaded = await oai.files.create(file=("in.jsonl", jsonl(2)), purpose="batch")
        batch = await oai.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        start = trio.current_time()
        seen = [batch.status]
        for at in (10.0, 79.0, 81.0, 99.0, 100.0):
            await trio.sleep_until(start + at)
            seen.append((await oai.batches.retrieve(batch.id)).status)
    assert seen == [
        "validating",
        "in_progress",
        "in_progress",
        "finalizing",
        "finalizing",
        "completed",
    ]
    assert app.batches.statistics().polls == 5


async def test_partial_failures_are_seeded_and_shaped_like_the_api(autojump_clock: Any) -> None:
    """Errored items go to the error file with a 500 body, expired ones with batch_expired,
    missing ones nowhere, duplicated ones twice; the same seed gives the same items."""
    shares = BatchSimulation(error_rate=0.2, expired_rate=0.2, missing_rate=0.2, duplicate_rate=0.2)

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        _app, http = in_process(SimulationConfig(seed=5, batch=shares))
        async with (
            http,
            openai.AsyncOpenAI(
                base_url="http://sim.test/v1", api_key="k", http_client=http, max_retries=0
            ) as oai,
        ):
            uploaded = await oai.files.create(file=("in.jsonl", jsonl(200)), purpose="batch")
            batch = await oai.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            batch = await oai.batches.retrieve(batch.id)
            assert batch.output_file_id
            assert batch.error_file_id
            out = lines_of((await oai.files.content(batch.output_file_id)).text)
            errors = lines_of((await oai.files.content(batch.error_file_id)).text)
            return out, errors

    out, errors = await run()
    assert (out, errors) == await run()
    answered = [line["custom_id"] for line in out]
    failed = [line for line in errors if line["response"] is not None]
    expired = [line for line in errors if line["error"] is not None]
    assert all(line["response"]["status_code"] == 500 for line in failed)
    assert all(line["error"]["code"] == "batch_expired" for line in expired)
    twice = {cid for cid in answered if answered.count(cid) == 2}
    present = set(answered) | {line["custom_id"] for line in errors}
    missing = {f"r{i}" for i in range(200)} - present
    for group in (failed, expired, twice, missing):
        assert 20 <= len(group) <= 60  # about 40 each of 200


async def test_cancel_and_job_expiry(autojump_clock: Any) -> None:
    """A job cancelled before it ends is cancelled with every item batch_cancelled; a job
    that would outlast job_expiry ends expired, every item batch_expired."""
    settings = BatchSimulation(completion_delay=50.0, job_expiry=20.0)
    _app, http = in_process(SimulationConfig(batch=settings))
    async with (
        http,
        openai.AsyncOpenAI(
            base_url="http://sim.test/v1", api_key="k", http_client=http, max_retries=0
        ) as oai,
    ):
        uploaded = await oai.files.create(file=("in.jsonl", jsonl(3)), purpose="batch")
        first = await oai.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        second = await oai.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        cancelled = await oai.batches.cancel(first.id)
        assert cancelled.status == "cancelled"
        await trio.sleep(19.0)
        assert (await oai.batches.retrieve(second.id)).status == "in_progress"
        await trio.sleep(1.0)
        expired = await oai.batches.retrieve(second.id)
        assert expired.status == "expired"
        for batch, code in ((cancelled, "batch_cancelled"), (expired, "batch_expired")):
            assert batch.output_file_id is None
            assert batch.error_file_id is not None
            errors = lines_of((await oai.files.content(batch.error_file_id)).text)
            assert [line["error"]["code"] for line in errors] == [code] * 3


async def test_invalid_input_file_fails_the_job(oai: openai.AsyncOpenAI) -> None:
    """A line for another endpoint or a repeated custom_id fails the job, errors by line."""
    bad = jsonl(2) + jsonl(1) + jsonl(1, url="/v1/embeddings").replace(b'"r0"', b'"r9"')
    uploaded = await oai.files.create(file=("in.jsonl", bad), purpose="batch")
    batch = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = await oai.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data is not None
    assert [(e.line, "repeated" in (e.message or "")) for e in batch.errors.data] == [
        (3, True),
        (4, False),
    ]


async def test_limits_are_refused_with_400() -> None:
    """Beyond max_items, max_file_bytes or max_jobs, the request is refused with a 400."""
    limits = BatchSimulation(max_items=3, max_file_bytes=2_000, max_jobs=2)
    async with (
        serve_simulated(SimulationConfig(batch=limits)) as server,
        openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0) as oai,
    ):
        with pytest.raises(openai.BadRequestError, match="at most 2000 bytes"):
            await oai.files.create(file=("big.jsonl", jsonl(40)), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="purpose must be 'batch'"):
            await oai.files.create(file=("x.jsonl", jsonl(1)), purpose="assistants")
        uploaded = await oai.files.create(file=("in.jsonl", jsonl(4)), purpose="batch")
        batch = await oai.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status == "failed"  # four items, three allowed
        small = await oai.files.create(file=("in.jsonl", jsonl(3)), purpose="batch")
        batch = await oai.batches.create(
            input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status == "validating"
        with pytest.raises(openai.BadRequestError, match="at most 2 jobs"):
            await oai.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
        with pytest.raises(openai.NotFoundError):
            await oai.batches.retrieve("batch_nope")


async def test_anthropic_message_batch_over_sockets(server: SimulatedServer) -> None:
    """messages.batches.create / retrieve / results: each succeeded item holds the message the
    online endpoint gives the same request."""
    base = server.url.removesuffix("/v1")
    async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0) as claude:
        created = await claude.messages.batches.create(requests=anthropic_requests(3))
        assert created.processing_status == "in_progress"
        assert created.request_counts.processing == 3
        batch = await claude.messages.batches.retrieve(created.id)
        assert batch.processing_status == "ended"
        assert batch.request_counts.succeeded == 3
        results = [r async for r in await claude.messages.batches.results(created.id)]
        online = await claude.messages.create(**anthropic_requests(3)[1]["params"])
    assert [r.custom_id for r in results] == ["r0", "r1", "r2"]
    assert results[1].result.type == "succeeded"
    assert results[1].result.message == online


async def test_anthropic_result_types(autojump_clock: Any) -> None:
    """errored, expired and canceled results, and a cancelled batch that ends at once."""
    shares = BatchSimulation(completion_delay=10.0, error_rate=0.3, expired_rate=0.3)
    # This anthropic SDK is built on httpx2 (httpx's successor), which has its own transport.
    app = SimulatedApp(SimulationConfig(seed=1, batch=shares))
    transport = httpx2.ASGITransport(app=app)
    http = httpx2.AsyncClient(transport=transport, base_url="http://sim.test")
    async with (
        http,
        anthropic.AsyncAnthropic(
            base_url="http://sim.test", api_key="k", http_client=http, max_retries=0
        ) as claude,
    ):
        created = await claude.messages.batches.create(requests=anthropic_requests(40))
        other = await claude.messages.batches.create(requests=anthropic_requests(2))
        cancelled = await claude.messages.batches.cancel(other.id)
        assert cancelled.processing_status == "ended"
        assert cancelled.request_counts.canceled == 2
        assert (await claude.messages.batches.retrieve(created.id)).processing_status == (
            "in_progress"
        )
        await trio.sleep(10.0)
        batch = await claude.messages.batches.retrieve(created.id)
        results = [r async for r in await claude.messages.batches.results(created.id)]
    counts = batch.request_counts
    kinds = [r.result.type for r in results]
    assert (kinds.count("succeeded"), kinds.count("errored"), kinds.count("expired")) == (
        counts.succeeded,
        counts.errored,
        counts.expired,
    )
    assert counts.errored > 0
    assert counts.expired > 0
    assert counts.succeeded > 0
    errored = next(r.result for r in results if r.result.type == "errored")
    assert errored.error.error.type == "api_error"


async def test_anthropic_bad_requests_are_refused(server: SimulatedServer) -> None:
    """A repeated custom_id or an item without params is refused with a 400 naming it."""
    base = server.url.removesuffix("/v1")
    async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0) as claude:
        with pytest.raises(anthropic.BadRequestError, match=r"requests\[1\].*repeated"):
            await claude.messages.batches.create(
                requests=[anthropic_requests(1)[0], anthropic_requests(1)[0]]
            )
        with pytest.raises(anthropic.NotFoundError):
            await claude.messages.batches.retrieve("msgbatch_nope")
