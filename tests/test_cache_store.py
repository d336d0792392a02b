"""The response cache's store and keys: canonical keys, whole records, size bounds, sharing
between processes, kill -9 safety, a corrupt file, and `gridloom cache`."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
import trio.testing
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.cli import cli, output_schema
from gridloom.cli._cache import parse_duration, parse_size
from gridloom.clients import (
    CacheScope,
    CacheUnavailable,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ResponseCache,
    ResponseFormat,
    ToolCall,
    Usage,
    default_cache_path,
    request_key,
)
from gridloom.clients._cache import MAX_ENTRY_BYTES
from gridloom.clients._cache_key import (
    decode_chat,
    decode_embedding,
    encode_response,
    is_deterministic,
)

SCOPE = CacheScope(provider_type="openai", endpoint="http://127.0.0.1:8000/v1")

texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a chat request, as plain data."""
    return {
        "model": draw(st.sampled_from(["m-8b", "m-70b"])),
        "messages": draw(
            st.lists(
                st.tuples(st.sampled_from(["system", "user", "assistant"]), texts),
                min_size=1,
                max_size=3,
            )
        ),
        "temperature": draw(st.none() | st.floats(0, 2)),
        "top_p": draw(st.none() | st.floats(0, 1)),
        "max_tokens": draw(st.none() | st.integers(1, 4096)),
        "extra_body": draw(st.dictionaries(texts, json_values, max_size=3)),
        "schema": draw(st.none() | st.dictionaries(texts, json_values, max_size=3)),
    }


def build(fields: dict[str, Any], *, timeout: float | None = None, reverse: bool = False) -> Any:
    """A :class:`ChatRequest` from :func:`chat_requests` data; ``reverse`` builds its mappings
    in the opposite key order."""

    def order(mapping: dict[str, Any]) -> dict[str, Any]:
        items = list(mapping.items())
        return dict(reversed(items) if reverse else items)

    schema = fields["schema"]
    return ChatRequest(
        model=fields["model"],
        messages=[Message(role=role, content=content) for role, content in fields["messages"]],
        temperature=fields["temperature"],
        top_p=fields["top_p"],
        max_tokens=fields["max_tokens"],
        timeout=timeout,
        extra_body=order(fields["extra_body"]),
        response_format=None if schema is None else ResponseFormat(name="s", schema=order(schema)),
    )


@settings(max_examples=150, deadline=None)
@given(chat_requests(), st.none() | st.floats(1, 600))
def test_equal_requests_have_equal_keys(fields: dict[str, Any], timeout: float | None) -> None:
    """Requests equal in everything but their timeout and mapping key order share a key."""
    assert request_key(SCOPE, build(fields)) == request_key(
        SCOPE, build(fields, timeout=timeout, reverse=True)
    )


_CHANGES = {
    "model": lambda f: {**f, "model": f["model"] + "-x"},
    "message": lambda f: {**f, "messages": [*f["messages"], ("user", "again")]},
    "temperature": lambda f: {**f, "temperature": 3.5},
    "top_p": lambda f: {**f, "top_p": 1.5},
    "max_tokens": lambda f: {**f, "max_tokens": 5000},
    "extra_body": lambda f: {**f, "extra_body": {**f["extra_body"], "\x00new": 1}},
    "schema": lambda f: {**f, "schema": {**(f["schema"] or {}), "\x00new": True}},
}


@settings(max_examples=150, deadline=None)
@given(chat_requests(), st.sampled_from(sorted(_CHANGES)))
def test_any_answer_changing_field_changes_the_key(fields: dict[str, Any], change: str) -> None:
    """Changing the model, a message, a sampling parameter, the body or the schema gives
    another key; so does another provider type, endpoint or provider body."""
    key = request_key(SCOPE, build(fields))
    assert request_key(SCOPE, build(_CHANGES[change](fields))) != key
    others = [
        CacheScope(provider_type="anthropic", endpoint=SCOPE.endpoint),
        CacheScope(provider_type="openai", endpoint="http://127.0.0.1:9000/v1"),
        CacheScope(provider_type="openai", endpoint=SCOPE.endpoint, extra_body={"seed": 1}),
    ]
    assert all(request_key(scope, build(fields)) != key for scope in others)


def test_chat_and_embedding_requests_never_share_keys() -> None:
    """An embedding request and a chat request of the same model have distinct keys."""
    chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    embed = EmbeddingRequest(model="m", inputs=["hi"])
    assert request_key(SCOPE, chat) != request_key(SCOPE, embed)
    assert len(request_key(SCOPE, chat)) == 32


def test_the_default_rule_caches_deterministic_requests_only() -> None:
    """Temperature 0, a whole-number seed (the request's or the provider's) and embeddings
    are deterministic; other temperatures, no temperature, a non-integer seed are not."""
    msg = [Message(role="user", content="hi")]
    seeded = CacheScope(provider_type="openai", endpoint="e", extra_body={"seed": 3})
    assert is_deterministic(SCOPE, ChatRequest(model="m", messages=msg, temperature=0.0))
    assert is_deterministic(SCOPE, ChatRequest(model="m", messages=msg, extra_body={"seed": 7}))
    assert is_deterministic(seeded, ChatRequest(model="m", messages=msg, temperature=0.9))
    assert is_deterministic(SCOPE, EmbeddingRequest(model="m", inputs=["x"]))
    assert not is_deterministic(SCOPE, ChatRequest(model="m", messages=msg))
    assert not is_deterministic(SCOPE, ChatRequest(model="m", messages=msg, temperature=0.7))
    assert not is_deterministic(
        SCOPE, ChatRequest(model="m", messages=msg, extra_body={"seed": True})
    )
    assert not is_deterministic(
        SCOPE, ChatRequest(model="m", messages=msg, extra_body={"seed": "7"})
    )


@settings(max_examples=100, deadline=None)
@given(
    texts,
    st.none() | texts,
    st.integers(0, 10**6),
    st.lists(st.tuples(texts, texts, texts), max_size=2),
)
def test_records_read_back_whole(
    text: str, reasoning: str | None, tokens: int, calls: list[tuple[str, str, str]]
) -> None:
    """A chat answer's record decodes to the same answer, marked as served by the cache,
    without the quota headers it came with."""
    answer = ChatResponse(
        text=text,
        reasoning=reasoning,
        usage=Usage(input_tokens=tokens, output_tokens=tokens // 2),
        finish_reason="stop",
        model="m",
        tool_calls=[ToolCall(id=i, name=n, arguments=a) for i, n, a in calls],
        inference={"temperature": 0.5},
    )
    back = decode_chat(encode_response(answer))
    assert back.served_by == "cache"
    assert (back.text, back.reasoning, back.usage, back.tool_calls) == (
        text,
        reasoning,
        answer.usage,
        answer.tool_calls,
    )
    assert back.rate_limit is None
    assert dict(back.inference) == {}


def test_embedding_records_and_wrong_kinds() -> None:
    """Embeddings read back exactly; a record of another kind or cut short is refused."""
    answer = EmbeddingResponse(vectors=((0.25, -1.5), (3.0, 0.0)), usage=Usage(input_tokens=4))
    record = encode_response(answer)
    back = decode_embedding(record)
    assert back.vectors == answer.vectors
    assert back.usage == answer.usage
    assert back.served_by == "cache"
    with pytest.raises(ValueError, match="not a record of this kind"):
        decode_chat(record)
    with pytest.raises(ValueError, match="char"):
        decode_embedding(record[:-3])


# --------------------------------------------------------------------------- the store


def test_put_get_and_stats(tmp_path: Path) -> None:
    """A stored record reads back; stats count it; the file is in WAL mode."""
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        assert cache.get_sync(b"k" * 32) is None
        assert cache.put_sync(b"k" * 32, b"value")
        assert cache.get_sync(b"k" * 32) == b"value"
        stats = cache.stats_sync()
        assert (stats.entries, stats.bytes) == (1, 5)
        mode = cache._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_size_bound_evicts_the_least_recently_read(tmp_path: Path) -> None:
    """Past max_bytes the entries read longest ago go first, down to 90 % of the bound; a
    record larger than the bound (or than MAX_ENTRY_BYTES) is not stored."""
    now = [1000.0]
    with ResponseCache(tmp_path / "c.sqlite3", max_bytes=1000, clock=lambda: now[0]) as cache:
        for i in range(9):  # 900 bytes
            now[0] += 100
            cache.put_sync(bytes([i]) * 32, b"x" * 100)
        now[0] += 100
        assert cache.get_sync(bytes([0]) * 32) is not None  # read: now the most recent
        now[0] += 100
        cache.put_sync(bytes([9]) * 32, b"x" * 200)  # 1100 bytes: evict down to 900
        stats = cache.stats_sync()
        assert stats.bytes <= 900
        assert cache.get_sync(bytes([0]) * 32) is not None
        assert cache.get_sync(bytes([1]) * 32) is None
        assert cache.get_sync(bytes([2]) * 32) is None
        assert cache.get_sync(bytes([9]) * 32) is not None
        assert not cache.put_sync(b"big" * 11, b"x" * 1001)
    with ResponseCache(tmp_path / "d.sqlite3", max_bytes=MAX_ENTRY_BYTES * 2) as cache:
        assert not cache.put_sync(b"huge", b"x" * (MAX_ENTRY_BYTES + 1))
        assert cache.stats_sync().entries == 0


def test_prune_and_clear(tmp_path: Path) -> None:
    """prune removes entries not read for a while, then shrinks to a size; clear empties."""
    now = [0.0]
    with ResponseCache(tmp_path / "c.sqlite3", clock=lambda: now[0]) as cache:
        for i in range(10):
            now[0] = i * 3600.0
            cache.put_sync(bytes([i]) * 32, b"y" * 10)
        now[0] = 10 * 3600.0
        assert cache.prune_sync(older_than=5 * 3600.0 + 1) == 5  # written at 0h..4h
        assert cache.prune_sync(max_bytes=30) == 2
        assert cache.stats_sync().entries == 3
        assert cache.clear_sync() == 3
        assert cache.stats_sync().entries == 0
        assert cache.stats_sync().bytes == 0


def test_a_corrupt_file_is_named_with_the_way_out(tmp_path: Path) -> None:
    """A file that is not a SQLite database cannot be opened: the error names it and says
    how to continue without the cache."""
    path = tmp_path / "responses.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheUnavailable) as caught:
        ResponseCache(path)
    assert str(path) in str(caught.value)
    assert "--no-cache" in str(caught.value)
    assert "cache: false" in str(caught.value)


def test_a_failing_lookup_is_a_miss_and_a_failing_store_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the table vanishes under an open cache, lookups miss and stores are skipped,
    each warning once (naming the file), never raising."""
    path = tmp_path / "c.sqlite3"
    with ResponseCache(path) as cache:
        cache.put_sync(b"a" * 32, b"1")
        other = sqlite3.connect(path)
        other.execute("DROP TABLE responses")
        other.commit()
        other.close()
        with caplog.at_level(logging.WARNING, logger="gridloom.cache"):
            for _ in range(3):
                assert cache.get_sync(b"a" * 32) is None
                assert cache.put_sync(b"b" * 32, b"2") is False
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert all(str(path) in w and "--no-cache" in w for w in warnings)


def test_the_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GRIDLOOM_CACHE_DIR, else XDG_CACHE_HOME/gridloom, else ~/.cache/gridloom."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", "/x/y")
    assert default_cache_path() == Path("/x/y/responses.sqlite3")
    monkeypatch.delenv("GRIDLOOM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert default_cache_path() == Path("/xdg/gridloom/responses.sqlite3")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == Path.home() / ".cache" / "gridloom" / "responses.sqlite3"


# --------------------------------------------------------------------------- processes

_WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from gridloom.clients import ResponseCache
    path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cache = ResponseCache(path)
    for i in range(start, start + count):
        key = hashlib.sha256(str(i).encode()).digest()
        cache.put_sync(key, key * (64 + i % 512))
        if i == start + 20:
            print("writing", flush=True)
    print("done", flush=True)
    """
)


def _expected(i: int) -> tuple[bytes, bytes]:
    import hashlib

    key = hashlib.sha256(str(i).encode()).digest()
    return key, key * (64 + i % 512)


def test_concurrent_processes_share_one_file(tmp_path: Path) -> None:
    """Four processes writing at once all succeed, and every entry reads back whole."""
    path = tmp_path / "c.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(n * 200), "200"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip().endswith("done")
        assert "skipped" not in err
    with ResponseCache(path) as cache:
        assert cache.stats_sync().entries == 800
        for i in range(800):
            key, value = _expected(i)
            assert cache.get_sync(key) == value


def test_a_writer_killed_mid_writes_leaves_only_whole_entries(tmp_path: Path) -> None:
    """SIGKILL while a process is writing: the file passes integrity_check and each entry
    present reads back exactly as written (none cut short)."""
    path = tmp_path / "c.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), "0", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with ResponseCache(path) as cache:
        assert cache.integrity_sync() == "ok"
        rows = cache._db.execute("SELECT key, value, size FROM responses").fetchall()
        assert len(rows) > 20
        by_key = {_expected(i)[0]: _expected(i)[1] for i in range(100000 if rows else 0)}
        for key, value, size in rows:
            assert by_key[bytes(key)] == bytes(value)
            assert size == len(value)
        assert cache.stats_sync().bytes == sum(size for _, _, size in rows)


# --------------------------------------------------------------------------- command line


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cache_command_stats_prune_clear_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gridloom cache` stats, prune and clear follow their JSON schema and act on the file
    under GRIDLOOM_CACHE_DIR."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path))
    with ResponseCache() as cache:
        for i in range(5):
            cache.put_sync(bytes([i]) * 32, b"z" * 100)
    docs = []
    for args in (["stats"], ["prune", "--max-bytes", "250"], ["clear"], ["stats"]):
        result = _invoke("cache", *args, "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        jsonschema.validate(doc, output_schema("cache"))
        docs.append(doc)
    assert docs[0]["stats"]["entries"] == 5
    assert docs[0]["removed"] is None
    assert docs[1]["removed"] == 3
    assert docs[1]["stats"]["entries"] == 2
    assert docs[2]["removed"] == 2
    assert docs[3]["stats"]["entries"] == 0
    text = _invoke("cache", "stats")
    assert str(tmp_path / "responses.sqlite3") in text.output


def test_cache_command_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt file exits 1 naming it; a bad size or a prune option on stats exits 2."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path))
    (tmp_path / "responses.sqlite3").write_bytes(b"garbage" * 1000)
    result = _invoke("cache", "stats", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    jsonschema.validate(doc, output_schema("cache"))
    assert doc["error"]["type"] == "CacheUnavailable"
    assert "responses.sqlite3" in doc["error"]["message"]
    assert _invoke("cache", "prune", "--max-bytes", "lots").exit_code == 2
    assert _invoke("cache", "stats", "--older-than", "3d").exit_code == 2


def _damage(path: Path, how: str) -> None:
    """Damage the cache file ``path`` (a cache with entries) ``how``."""
    if how == "garbage":
        path.write_bytes(b"garbage" * 1000)
    elif how == "empty header":
        path.write_bytes(b"\0" * 4096)
    elif how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(1500)
    else:  # pages scribbled over, the header kept
        with open(path, "r+b") as f:
            f.seek(4096)
            f.write(b"\xff" * (path.stat().st_size - 4096))


@pytest.mark.parametrize("how", ["garbage", "empty header", "truncated", "scribbled"])
@pytest.mark.parametrize("as_json", [False, True])
def test_cache_clear_removes_a_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, as_json: bool
) -> None:
    """`gridloom cache clear` of a damaged cache file removes it, with SQLite's -wal/-shm
    files beside it, says so and exits 0; files that are not the cache's stay; the cache then
    works again."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path))
    path = tmp_path / "responses.sqlite3"
    with ResponseCache() as cache:
        for i in range(200):
            cache.put_sync(bytes([i]) * 32, os.urandom(300))
    _damage(path, how)
    (tmp_path / "responses.sqlite3-shm").write_bytes(b"x")
    (tmp_path / "responses.sqlite3.bak").write_bytes(b"mine")
    (tmp_path / "notes.txt").write_text("mine")
    result = _invoke("cache", "clear", *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.output
    if as_json:
        doc = json.loads(result.output)
        jsonschema.validate(doc, output_schema("cache"))
        assert str(path) in doc["removed_files"]
        assert doc["damaged"]
    else:
        assert f"removed the damaged response cache {path}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "responses.sqlite3.bak"]
    with ResponseCache() as cache:
        assert cache.put_sync(b"k" * 32, b"v")
        assert cache.get_sync(b"k" * 32) == b"v"


def test_cache_clear_leaves_a_link_and_a_sound_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clear removes only its own damaged file: a link at the cache's name (to a damaged
    file elsewhere) is refused (exit 1) and both stay; a sound file is emptied, not
    removed."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.write_bytes(b"garbage" * 1000)
    (tmp_path / "cache" / "responses.sqlite3").symlink_to(elsewhere)
    assert _invoke("cache", "clear").exit_code == 1
    assert elsewhere.read_bytes() == b"garbage" * 1000
    assert (tmp_path / "cache" / "responses.sqlite3").is_symlink()
    (tmp_path / "cache" / "responses.sqlite3").unlink()
    with ResponseCache() as cache:
        cache.put_sync(b"a" * 32, b"1")
    assert _invoke("cache", "clear").exit_code == 0
    assert (tmp_path / "cache" / "responses.sqlite3").is_file()


def test_sizes_and_durations_parse() -> None:
    """Sizes take binary units, durations s/m/h/d/w; anything else is refused."""
    assert parse_size("500") == 500
    assert parse_size("2K") == 2048
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_duration("90") == 90.0
    assert parse_duration("12h") == 43200.0
    assert parse_duration("2w") == 1209600.0
    for bad in ("", "-1", "5x", "G"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("3 years")


async def test_concurrent_lookups_share_batches_and_survive_cancellation(tmp_path: Path) -> None:
    """Many lookups at once each get their own record (misses get None), even when some of
    them, leaders of a batch included, are cancelled while waiting."""
    cache = ResponseCache(tmp_path / "c.sqlite3")
    for i in range(0, 200, 2):
        cache.put_sync(i.to_bytes(32, "big"), str(i).encode())
    results: dict[int, bytes | None] = {}
    cancelled: list[int] = []

    async def look(i: int) -> None:
        with trio.CancelScope() as scope:
            if i % 7 == 3:
                scope.cancel()  # cancelled at its first checkpoint, leader or follower
            results[i] = await cache.get(i.to_bytes(32, "big"))
        if scope.cancelled_caught:
            cancelled.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(look, i)
    assert sorted(cancelled) == [i for i in range(200) if i % 7 == 3]
    for i in range(200):
        if i % 7 != 3:
            assert results[i] == (str(i).encode() if i % 2 == 0 else None)
    assert not cache._waiting
    assert not cache._fetching
    cache.close()


async def test_a_cancelled_batch_reader_passes_its_batch_on(tmp_path: Path) -> None:
    """A lookup reading a batch for others, cancelled while waiting for the cache's thread,
    hands the rest of its batch to the next one: they all still get their records."""
    cache = ResponseCache(tmp_path / "c.sqlite3")
    for name in "abcd":
        cache.put_sync(name.encode() * 32, name.upper().encode())
    scopes = {name: trio.CancelScope() for name in "abcd"}
    results: dict[str, bytes | None] = {}

    async def look(name: str) -> None:
        with scopes[name]:
            results[name] = await cache.get(name.encode() * 32)

    await cache._threads.acquire()  # as if a store were running
    async with trio.open_nursery() as nursery:
        nursery.start_soon(look, "a")  # reads batch [a], waits for the thread
        await trio.testing.wait_all_tasks_blocked()
        for name in "bcd":
            nursery.start_soon(look, name)
        await trio.testing.wait_all_tasks_blocked()
        scopes["a"].cancel()  # b now reads [b, c, d]
        await trio.testing.wait_all_tasks_blocked()
        scopes["b"].cancel()  # c now reads [c, d]
        await trio.testing.wait_all_tasks_blocked()
        cache._threads.release()
    assert results == {"c": b"C", "d": b"D"}
    assert not cache._waiting
    assert not cache._fetching
    cache.close()
