"""Batch mode under attack: the simulated endpoint's batch routes fed hostile JSON and
multipart bodies (always a 4xx or an answer, never a crash), and a batching client facing a
provider whose job never ends, or callers that give up before their job is submitted."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.clients import (
    BatchingClient,
    BatchPolling,
    ChatRequest,
    ChatResponse,
    Message,
    OpenAIClient,
    batching_client,
)
from gridloom.clients._batch_journal import BatchJournal, JobRecord
from gridloom.clients._batch_wire import BatchWire, ItemOutcome, JobState, _lines
from gridloom.config import BatchSimulation, ModelConfig, ProviderConfig, SimulationConfig
from gridloom.errors import (
    BadRequest,
    MalformedResponse,
    ModelError,
    ProviderTimeout,
    ProviderUnavailable,
)
from gridloom.simulated import SimulatedApp, serve_simulated
from gridloom.storage import location_of

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
params = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values,
        "max_tokens": json_values,
        "messages": json_values
        | st.lists(
            st.fixed_dictionaries({}, optional={"role": json_values, "content": json_values}),
            max_size=3,
        ),
        "system": json_values,
        "temperature": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "response_format": json_values,
        "input": json_values,
    },
)


def run_in_process(fn: Any) -> None:
    """Run ``fn(http)`` against an in-process simulated app on a virtual clock."""

    async def main() -> None:
        app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=5.0)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            await fn(http)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def assert_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:300]


@settings(max_examples=60, deadline=None)
@given(st.lists(params, min_size=1, max_size=4), json_values)
def test_anthropic_batches_of_hostile_params_answer_or_refuse(
    items: list[dict[str, Any]], extra: Any
) -> None:
    """A message batch of any params (and any JSON as the whole body) is refused with a 4xx
    or created; polling it and reading its results never gives a 5xx."""

    async def go(http: httpx.AsyncClient) -> None:
        assert_answered(await http.post("/v1/messages/batches", json=extra))
        requests = [{"custom_id": f"r{i}", "params": p} for i, p in enumerate(items)]
        created = await http.post("/v1/messages/batches", json={"requests": requests})
        assert_answered(created)
        if created.status_code != 200:
            return
        job = created.json()["id"]
        await trio.sleep(10)
        assert_answered(await http.get(f"/v1/messages/batches/{job}"))
        assert_answered(await http.get(f"/v1/messages/batches/{job}/results"))

    run_in_process(go)


@settings(max_examples=60, deadline=None)
@given(st.lists(params, min_size=1, max_size=4), json_values, st.sampled_from(["chat", "emb"]))
def test_openai_batches_of_hostile_bodies_answer_or_refuse(
    items: list[dict[str, Any]], extra: Any, kind: str
) -> None:
    """An OpenAI input file of any request bodies (and any JSON as the batch request) is
    refused with a 4xx or run; polling it and reading its files never gives a 5xx."""
    url = "/v1/chat/completions" if kind == "chat" else "/v1/embeddings"

    async def go(http: httpx.AsyncClient) -> None:
        assert_answered(await http.post("/v1/batches", json=extra))
        lines = b"".join(
            json.dumps({"custom_id": f"r{i}", "method": "POST", "url": url, "body": b}).encode()
            + b"\n"
            for i, b in enumerate(items)
        )
        files = {"file": ("in.jsonl", lines, "application/jsonl")}
        uploaded = await http.post("/v1/files", files=files, data={"purpose": "batch"})
        assert uploaded.status_code == 200
        body = {"input_file_id": uploaded.json()["id"], "endpoint": url, "completion_window": "24h"}
        created = await http.post("/v1/batches", json=body)
        assert_answered(created)
        if created.status_code != 200:
            return
        await trio.sleep(10)
        polled = await http.get(f"/v1/batches/{created.json()['id']}")
        assert_answered(polled)
        for name in ("output_file_id", "error_file_id"):
            if polled.json().get(name):
                assert_answered(await http.get(f"/v1/files/{polled.json()[name]}/content"))

    run_in_process(go)


async def test_an_upload_as_large_as_max_file_bytes_is_accepted_over_sockets() -> None:
    """Over real sockets the simulated server takes an upload as large as its batch
    max_file_bytes (its HTTP body limit follows it), and refuses a larger one with a 4xx."""
    limit = 6 * 1024 * 1024
    line = json.dumps({"custom_id": "r", "method": "POST", "url": "/v1/embeddings", "body": {}})
    data = (line.encode() + b"\n") * (limit // (len(line) + 1))
    config = SimulationConfig(batch=BatchSimulation(max_file_bytes=limit))
    async with (
        serve_simulated(config) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        files = {"file": ("in.jsonl", data, "application/jsonl")}
        uploaded = await http.post("files", files=files, data={"purpose": "batch"})
        assert uploaded.status_code == 200, uploaded.text[:200]
        assert uploaded.json()["bytes"] == len(data)
        files = {"file": ("in.jsonl", data + b"x" * (limit - len(data) + 1), "text/plain")}
        refused = await http.post("files", files=files, data={"purpose": "batch"})
        assert 400 <= refused.status_code < 500


# --------------------------------------------------------------------------- the client

MODEL = ModelConfig(
    alias="writer", provider="sim", model="writer-8b", batch=True, batch_max_size=50, batch_wait=1.0
)


def sim_client(app: SimulatedApp) -> tuple[httpx.AsyncClient, OpenAIClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test/v1")
    provider = ProviderConfig(name="sim", type="simulated")
    return http, OpenAIClient(http, provider=provider, api_key=None)


def ask(index: int) -> ChatRequest:
    return ChatRequest(model="writer-8b", messages=[Message(role="user", content=f"On {index}.")])


@pytest.mark.parametrize("status", ["in_progress", "some_status_never_documented"])
async def test_a_job_that_never_ends_is_given_up_after_max_wait(
    autojump_clock: Any, status: str
) -> None:
    """A job whose status stays in_progress (or a word the client does not know) for longer
    than BatchPolling.max_wait fails its callers with a retryable ProviderTimeout at that time,
    and the client asks the provider to cancel it."""
    app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=10.0**9)))
    http, adapter = sim_client(app)
    polling = BatchPolling(first=1.0, growth=2.0, longest=600.0, jitter=0.0, max_wait=7200.0)
    async with http, BatchingClient(adapter, MODEL, polling=polling).running() as client:
        if status != "in_progress":

            async def poll(job_id: str) -> JobState:
                return JobState(status=status, ended=False)

            client._wire.poll = poll  # type: ignore[method-assign]
        start = trio.current_time()
        with trio.move_on_after(10 * 7200.0):
            with pytest.raises(ProviderTimeout, match="7200") as caught:
                await client.chat(ask(1))
        assert caught.value.retryable
        waited = trio.current_time() - start
        assert 7200.0 <= waited <= 7200.0 + 1.0 + 600.0
    if status == "in_progress":
        assert app.batches.statistics().jobs_created == 1
        job = next(iter(app.batches._jobs.values()))
        assert job.cancelled_at is not None


async def test_a_caller_cancelled_before_its_job_is_submitted_is_not_sent(
    autojump_clock: Any,
) -> None:
    """A request whose caller gives up (its row dropped) while it waits in the queue is left
    out of the job: only the requests still wanted are submitted and paid for."""
    app = SimulatedApp(SimulationConfig())
    http, adapter = sim_client(app)
    async with http, BatchingClient(adapter, MODEL).running() as client:
        answers: dict[int, str] = {}
        scopes = [trio.CancelScope() for _ in range(3)]

        async def one(index: int) -> None:
            with scopes[index]:
                answers[index] = (await client.chat(ask(index))).text

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(one, index)
            await trio.sleep(0.5)  # all three queued; the queue flushes at 1 s
            scopes[0].cancel()
            scopes[1].cancel()
        stats = client.statistics()
    assert sorted(answers) == [2]
    assert (stats.jobs_submitted, stats.items_submitted) == (1, 1)


async def test_a_queue_whose_callers_all_gave_up_submits_nothing(autojump_clock: Any) -> None:
    """When every request of a queue is cancelled before the flush, no (empty) job is
    submitted; a later request still goes in a job of its own."""
    app = SimulatedApp(SimulationConfig())
    http, adapter = sim_client(app)
    async with http, BatchingClient(adapter, MODEL).running() as client:
        with trio.move_on_after(0.5):
            await client.chat(ask(1))
        await trio.sleep(5)
        assert client.statistics().jobs_submitted == 0
        assert (await client.chat(ask(2))).text
        stats = client.statistics()
    assert (stats.jobs_submitted, stats.items_submitted) == (1, 1)
    assert app.batches.statistics().jobs_created == 1


async def test_a_cancelled_wait_on_a_recorded_job_leaves_its_item_for_the_next_request(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """A resumed run's request that re-attached to a recorded job, then was cancelled, gives
    the item back: the same request asked again re-attaches too, and no new job is paid for."""
    app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=100.0)))
    output = location_of(tmp_path)
    http, adapter = sim_client(app)
    async with http, batching_client(adapter, MODEL, output=output).running() as client:
        with trio.move_on_after(10):  # submitted at 1 s, then the run is interrupted
            await client.chat(ask(1))
    http, adapter = sim_client(app)
    async with http, batching_client(adapter, MODEL, output=output).running() as client:
        with trio.move_on_after(10):
            await client.chat(ask(1))
        answer = await client.chat(ask(1))
        stats = client.statistics()
    assert answer.served_by == "batch"
    assert (stats.jobs_submitted, stats.jobs_resumed, stats.items_resumed) == (0, 1, 1)
    assert app.batches.statistics().jobs_created == 1


async def test_aliases_that_sanitize_alike_keep_journals_of_their_own(tmp_path: Path) -> None:
    """Two aliases whose names differ only in characters a file name cannot hold (a/b, a_b)
    record their jobs in separate journals: neither overwrites the other's."""
    output = location_of(tmp_path)
    first, second = BatchJournal(output, "a/b", "openai"), BatchJournal(output, "a_b", "openai")
    await first.add(JobRecord(id="batch_1", endpoint="/v1/chat/completions", items={"g0": "k1"}))
    await second.add(JobRecord(id="batch_2", endpoint="/v1/chat/completions", items={"g0": "k2"}))
    again = await BatchJournal(output, "a/b", "openai").load()
    assert [job.id for job in again] == ["batch_1"]
    again = await BatchJournal(output, "a_b", "openai").load()
    assert [job.id for job in again] == ["batch_2"]


outcomes = st.builds(
    ItemOutcome,
    custom_id=st.sampled_from(["g0", "g1", "g2", "zz"]),
    status=st.none() | st.sampled_from([200, 200, 400, 429, 500, 302, -1, 10**20]),
    body=json_values
    | st.fixed_dictionaries(
        {"choices": st.lists(st.fixed_dictionaries({"message": json_values}), max_size=2)},
        optional={"usage": json_values, "model": json_values},
    )
    | st.just(json.loads("[" * 900 + "]" * 900)),
    reason=st.text(max_size=10),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(outcomes, max_size=8))
def test_any_result_lines_settle_every_caller_with_an_answer_or_a_model_error(
    lines: list[ItemOutcome],
) -> None:
    """Whatever result lines a provider writes (ids it never got, repeats, any status, any
    body, deeply nested ones), each caller gets an answer or a ModelError, and the client
    keeps working."""

    async def main() -> None:
        app = SimulatedApp(SimulationConfig())
        http, adapter = sim_client(app)
        async with http, BatchingClient(adapter, MODEL).running() as client:

            async def results(job_id: str, state: JobState) -> list[ItemOutcome]:
                return lines

            client._wire.results = results  # type: ignore[method-assign]
            got: list[Any] = [None] * 3

            async def one(index: int) -> None:
                try:
                    got[index] = await client.chat(ask(index))
                except ModelError as exc:
                    got[index] = exc

            async with trio.open_nursery() as nursery:
                for index in range(3):
                    nursery.start_soon(one, index)
            assert all(isinstance(g, ChatResponse | ModelError) for g in got)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("job_id", ["../files/file-1", "a/b", "x?y=1", ".", "..", "a b", ""])
async def test_ids_that_are_not_one_path_segment_are_refused(job_id: str, tmp_path: Path) -> None:
    """A provider's job or file id that would change the path it is put in (slashes, dot
    segments, query marks, spaces) is refused as malformed; a journal listing one is skipped."""
    wire = BatchWire(sim_client(SimulatedApp(SimulationConfig()))[1], "writer-8b")

    async def send(method: str, path: str, **kwargs: Any) -> httpx.Response:
        if path == "files":
            return httpx.Response(200, json={"id": "file-1"})
        if path == "batches":
            return httpx.Response(200, json={"id": job_id})
        return httpx.Response(
            200, json={"status": "completed", "output_file_id": job_id, "error_file_id": "f-2"}
        )

    wire._send = send  # type: ignore[method-assign]
    with pytest.raises(MalformedResponse, match="'id'"):
        await wire.submit("/v1/chat/completions", [("g0", {"model": "m"})])
    state = await wire.poll("batch_1")
    assert state.files == ("f-2",)
    output = location_of(tmp_path)
    journal = BatchJournal(output, "w", "openai")
    await journal.add(JobRecord(id=job_id, endpoint="/v1/chat/completions", items={"g0": "k"}))
    await journal.add(JobRecord(id="batch_2", endpoint="/v1/chat/completions", items={"g0": "k"}))
    assert [job.id for job in await BatchJournal(output, "w", "openai").load()] == ["batch_2"]


def test_a_results_file_of_garbage_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A results file of many lines that are not JSON objects is read as no lines, with one
    warning counting them (not one per line: a hostile file would flood the log)."""
    body = b"not json\n" * 500 + b"[1]\n" * 500 + b'{"custom_id": "g0"}\n'
    with caplog.at_level(logging.WARNING, logger="gridloom.batch"):
        assert _lines(body) == [{"custom_id": "g0"}]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "1000" in messages[0]


async def test_a_request_body_that_is_no_json_fails_its_cells_not_the_client(
    autojump_clock: Any,
) -> None:
    """A request whose body holds NaN cannot be written to a batch file: the requests of that
    job fail with BadRequest, and the client goes on serving later requests."""
    app = SimulatedApp(SimulationConfig())
    http, adapter = sim_client(app)
    async with http, BatchingClient(adapter, MODEL).running() as client:
        bad = attrs.evolve(ask(1), extra_body={"x": float("nan")})
        with pytest.raises(BadRequest, match="could not be written"):
            await client.chat(bad)
        assert (await client.chat(ask(2))).served_by == "batch"


async def test_large_results_are_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A results body past the inline bound is decoded in a worker thread; a small one
    inline."""
    import threading

    import gridloom.clients._batch_wire as wire_module

    threads: list[bool] = []
    decode = wire_module._outcomes

    def spy(data: bytes, read: Any) -> list[ItemOutcome]:
        threads.append(threading.current_thread() is threading.main_thread())
        return decode(data, read)

    monkeypatch.setattr(wire_module, "_outcomes", spy)
    line = json.dumps({"custom_id": "g0", "response": {"status_code": 200, "body": {}}})
    small = (line + "\n").encode()
    large = small * (wire_module._INLINE_BYTES // len(small) + 1)
    assert len(await wire_module._read_outcomes(small, BatchWire._openai_line)) == 1
    assert len(await wire_module._read_outcomes(large, BatchWire._openai_line)) > 1
    assert threads == [True, False]


async def test_a_journal_of_another_endpoint_is_ignored(tmp_path: Path) -> None:
    """Jobs recorded against one provider endpoint are not polled at another (the other has
    never heard of them: every request would fail once before paying anyway)."""
    output = location_of(tmp_path)
    record = JobRecord(id="batch_1", endpoint="/v1/chat/completions", items={"g0": "k"})
    await BatchJournal(output, "w", "openai", where="https://a.example/v1").add(record)
    same = await BatchJournal(output, "w", "openai", where="https://a.example/v1").load()
    assert [job.id for job in same] == ["batch_1"]
    assert await BatchJournal(output, "w", "openai", where="https://b.example/v1").load() == ()


def test_credentials_in_the_endpoint_never_reach_the_journal() -> None:
    """A provider endpoint carrying user:password is refused when the config is built, so
    no journal (a file in the run directory, often shared) can record them; the message
    does not show them either."""
    with pytest.raises(ValueError, match="must not hold credentials") as caught:
        ProviderConfig(name="p", endpoint="http://user:s3cr3t-pw@127.0.0.1:9/v1")
    assert "s3cr3t-pw" not in str(caught.value)


async def test_a_provider_outage_while_polling_does_not_pay_twice(autojump_clock: Any) -> None:
    """Polls failing retryably for a while (the provider's API down for half an hour) are
    retried until the job's max_wait: the callers get the job's answers, and no request is
    put in a second job."""
    app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=10.0)))
    http, adapter = sim_client(app)
    polling = BatchPolling(first=1.0, growth=2.0, longest=60.0, jitter=0.0)
    async with http, BatchingClient(adapter, MODEL, polling=polling).running() as client:
        real_poll = client._wire.poll
        failed = [0]

        async def poll(job_id: str) -> JobState:
            if trio.current_time() < 1800.0:
                failed[0] += 1
                raise ProviderUnavailable("down", provider="sim", model="writer-8b")
            return await real_poll(job_id)

        client._wire.poll = poll  # type: ignore[method-assign]
        answer = await client.chat(ask(1))
        stats = client.statistics()
    assert answer.served_by == "batch"
    assert failed[0] > 20
    assert (stats.jobs_submitted, stats.items_submitted) == (1, 1)
    assert app.batches.statistics().jobs_created == 1
