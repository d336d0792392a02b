"""The response cache under attack: tampered records (huge, deeply nested, out-of-range
numbers, the wrong number of vectors) are misses, never crashes; a database locked by
another process neither turns hits into misses nor stalls every store."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom.clients._cache as cache_module
from gridloom.clients import (
    CacheScope,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelHandle,
    ResponseCache,
    Usage,
    request_key,
)
from gridloom.clients._cache_key import decode_chat, decode_embedding, encode_response
from gridloom.config import ModelConfig

SCOPE = CacheScope(provider_type="openai", endpoint="http://127.0.0.1:1/v1")


class Client:
    """Answers every request, counting them."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(text=f"fresh {self.calls}", usage=Usage(input_tokens=3))

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.calls += 1
        return EmbeddingResponse(vectors=tuple((1.0,) for _ in request.inputs))


def ask(text: str = "q") -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content=text)], temperature=0)


def make_handle(cache: ResponseCache, client: Client) -> ModelHandle:
    config = ModelConfig(alias="w", provider="p", model="m")
    return ModelHandle(config, client, trio.CapacityLimiter(2), cache=cache, scope=SCOPE)


def tamper(path: Path, key: bytes, value: bytes, size: int | None = None) -> None:
    """Write ``value`` under ``key`` behind the cache's back (``size``: the claimed size)."""
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT OR REPLACE INTO responses (key, value, size, created, accessed)"
            " VALUES (?, ?, ?, 0, 0)",
            (key, value, len(value) if size is None else size),
        )
    db.close()


def test_a_record_whose_size_column_lies_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record larger than MAX_ENTRY_BYTES whose stored size claims it is small is a miss:
    the bound holds on the bytes themselves."""
    monkeypatch.setattr(cache_module, "MAX_ENTRY_BYTES", 100)
    path = tmp_path / "c.sqlite3"
    with ResponseCache(path) as cache:
        tamper(path, b"k" * 32, b"x" * 1000, size=10)
        assert cache.get_sync(b"k" * 32) is None
        tamper(path, b"s" * 32, b"y" * 50)
        assert cache.get_sync(b"s" * 32) == b"y" * 50


hostile_records = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"k":"c","text":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"k":"e","vectors":[[' + b"9" * 400 + b']],"usage":[0,0]}',
    b'{"k":"c","text":"t","reasoning":null,"usage":[-5,1],"finish_reason":null,'
    b'"model":null,"tool_calls":[]}',
    b'{"k":"c","text":"t","reasoning":null,"usage":[true,1],"finish_reason":null,'
    b'"model":null,"tool_calls":[]}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("record", hostile_records)
def test_hostile_records_are_refused_with_value_error(record: bytes) -> None:
    """Deep nesting, a number past float range, negative or boolean token counts, bytes that
    are not UTF-8: each decoder refuses with ValueError (which the handle reads as a miss)."""
    with pytest.raises(ValueError, match=r"record|token|vector|codec"):
        decode_chat(record)
    with pytest.raises(ValueError, match=r"record|token|vector|codec"):
        decode_embedding(record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
record_fields = st.fixed_dictionaries(
    {},
    optional={
        "k": st.sampled_from(["c", "e"]) | json_values,
        "text": json_values,
        "reasoning": json_values,
        "usage": json_values,
        "finish_reason": json_values,
        "model": json_values,
        "tool_calls": json_values,
        "vectors": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(record_fields)
def test_any_json_record_decodes_or_is_a_value_error(document: dict[str, Any]) -> None:
    """Whatever JSON a record holds, decoding gives an answer or raises ValueError, never
    another exception."""
    record = json.dumps(document).encode()
    for decode in (decode_chat, decode_embedding):
        with contextlib.suppress(ValueError):
            decode(record)


async def test_the_handle_treats_a_hostile_record_as_a_miss(tmp_path: Path) -> None:
    """A deeply nested record under a request's key: the handle asks the provider and
    replaces the record with the fresh answer."""
    path = tmp_path / "c.sqlite3"
    client = Client()
    with ResponseCache(path) as cache:
        h = make_handle(cache, client)
        key = request_key(SCOPE, ask())
        tamper(path, key, hostile_records[1])
        first = await h.chat(ask())
        assert (first.text, first.served_by, client.calls) == ("fresh 1", "online", 1)
        again = await h.chat(ask())
        assert (again.text, again.served_by, client.calls) == ("fresh 1", "cache", 1)


async def test_a_record_with_the_wrong_number_of_vectors_is_a_miss(tmp_path: Path) -> None:
    """An embedding record holding one vector for a request of two inputs is not served."""
    path = tmp_path / "c.sqlite3"
    client = Client()
    request = EmbeddingRequest(model="m", inputs=["a", "b"])
    with ResponseCache(path) as cache:
        h = make_handle(cache, client)
        one = EmbeddingResponse(vectors=((0.5,),))
        tamper(path, request_key(SCOPE, request), encode_response(one))
        answer = await h.embed(request)
        assert (len(answer.vectors), answer.served_by, client.calls) == (2, "online", 1)


def test_a_write_lock_held_elsewhere_keeps_hits_and_skips_stores_for_a_while(
    tmp_path: Path,
) -> None:
    """While another connection holds the write lock: a lookup whose last-read time is due
    for a refresh still returns the record; a store fails once, then later stores are skipped
    without waiting until STORE_BACKOFF seconds have passed; then they are tried again."""
    path = tmp_path / "c.sqlite3"
    now = [0.0]
    with ResponseCache(path, clock=lambda: now[0], busy_timeout=0.01) as cache:
        assert cache.put_sync(b"a" * 32, b"1")
        now[0] = 3600.0  # the entry's last-read time is due for a refresh
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            assert cache.get_sync(b"a" * 32) == b"1"
            assert cache.put_sync(b"b" * 32, b"2") is False
            tries = cache.store_failures
            other.execute("COMMIT")
            now[0] += cache_module.STORE_BACKOFF - 1
            assert cache.put_sync(b"c" * 32, b"3") is False
            assert cache.store_failures == tries  # skipped, not tried
        finally:
            other.close()
        now[0] += 2
        assert cache.put_sync(b"d" * 32, b"4") is True
        assert cache.get_sync(b"d" * 32) == b"4"


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["Authorization", "x-api-key", "X-Goog-Api-Key", "Cookie", "x-auth-token"]),
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40),
)
def test_provider_headers_are_keyed_on_except_credentials(
    credential: str, first: str, second: str
) -> None:
    """A provider header that may change the answer (anthropic-beta) changes the key; a
    credential header (whatever its value, never hashed in) does not."""
    base = CacheScope(provider_type="anthropic", endpoint="", headers={credential: first})
    other = CacheScope(provider_type="anthropic", endpoint="", headers={credential: second})
    assert request_key(base, ask()) == request_key(other, ask())
    assert request_key(base, ask()) == request_key(
        CacheScope(provider_type="anthropic", endpoint=""), ask()
    )
    beta = CacheScope(
        provider_type="anthropic", endpoint="", headers={credential: first, "anthropic-beta": "x"}
    )
    assert request_key(beta, ask()) != request_key(base, ask())


def test_the_run_keys_on_the_providers_headers() -> None:
    """cache_scope carries a provider's headers into its scope."""
    from gridloom.config import ProviderConfig
    from gridloom.run._models import cache_scope

    provider = ProviderConfig(
        name="a",
        type="anthropic",
        endpoint="https://api.anthropic.com/v1",
        headers={"anthropic-beta": "b1"},
    )
    assert dict(cache_scope(provider).headers) == {"anthropic-beta": "b1"}


@pytest.mark.parametrize("action", ["stats", "prune", "clear"])
def test_the_cache_command_reports_a_locked_file_without_a_traceback(
    action: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the file stays locked by a run past the busy timeout (or fails otherwise midway),
    `gridloom cache` exits 1 with a JSON error naming the file, not a traceback."""
    import jsonschema
    from click.testing import CliRunner

    from gridloom.cli import cli, output_schema

    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path))
    with ResponseCache() as cache:
        cache.put_sync(b"a" * 32, b"1")

    def locked(*_args: Any, **_kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(ResponseCache, f"{action}_sync", locked)
    result = CliRunner().invoke(cli, ["cache", action, "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    doc = json.loads(result.output)
    jsonschema.validate(doc, output_schema("cache"))
    assert doc["error"]["type"] == "CacheUnavailable"
    assert "database is locked" in doc["error"]["message"]
    assert str(tmp_path / "responses.sqlite3") in doc["error"]["message"]
    with ResponseCache() as cache:  # a locked file is not damaged: clear never removes it
        assert cache.get_sync(b"a" * 32) == b"1"
