"""A run's files and URIs as a hostile store or user would write them: commit entries and a
metadata.json that lie or are built to crash the parser, file:// URIs, secrets in the
messages of a URI that cannot be parsed, and a part replaced after it was committed. Each
case is refused with one clear StorageError (or handled as documented), never a crash."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.cli._target import kept_row_groups
from gridloom.errors import StorageError
from gridloom.storage import (
    ParquetStore,
    inspect_run,
    local_path,
    location_of,
    open_run,
    read_run_metadata,
)
from gridloom.storage import _metadata as metadata_module
from gridloom.storage._commits import read_commit
from gridloom.storage._metadata import document_bytes

from .conftest import S3Server
from .crashes import as_a_new_process
from .test_manifest_store import HASH, SCHEMA, group, open_store

#: JSON nested far deeper than the parser's recursion limit.
DEEP = b"[" * 100_000 + b"]" * 100_000

PIPELINE = """\
providers: [{name: sim, type: simulated, simulation: {default: {latency: {median: 0.01}}}}]
models: [{alias: w, provider: sim, model: m, max_parallel_requests: 8}]
columns:
  - {name: topic, category: {values: [a, b, c]}}
  - {name: text, llm_text: {model: w, prompt: "About {{ topic }}"}}
run: {row_group_size: 10, seed: 5, progress: "off"}
"""


def entry(group_index: int, **changes: Any) -> dict[str, Any]:
    """The commit entry of row group ``group_index`` of the test layout, with ``changes``."""
    index = group_index
    doc: dict[str, Any] = {
        "index": index,
        "rows": 4,
        "dropped": 0,
        "file": f"data/part-{index:05d}.parquet",
        "dropped_file": None,
        "first_row_id": index * 4,
        "num_rows": 4,
        "counts": {"topic": {"done": 4, "failed": 0, "dropped": 0}},
    }
    doc.update(changes)
    return doc


def committed_run(tmp_path: Path) -> Path:
    """A run whose row group 1 a shard committed (not yet in metadata.json)."""
    out = tmp_path / "run"
    where = location_of(out)
    open_store(where)
    trio.run(open_store(where, mode="resume", role="shard").write, group(1))
    return out


def reopen(out: Path, store: str, mode: Literal["overwrite", "resume"]) -> Any:
    """Open the test run in ``out`` again with ``mode``, as a ManifestStore or ParquetStore."""
    if store == "manifest":
        return open_store(location_of(out), mode=mode)
    as_a_new_process()  # a run opened again stands for a new process
    return ParquetStore.open(
        out,
        schema=SCHEMA,
        config_text="",
        config_hash=HASH,
        num_records=10,
        row_group_size=4,
        seed=7,
        mode=mode,
    )


# ------------------------------------------------------------------ commit entries


def test_a_deeply_nested_commit_entry_is_damaged_not_a_crash(tmp_path: Path) -> None:
    """A commit entry nested past the parser's recursion limit is a damaged entry for absorb,
    resume, open_run and inspect_run (it raised RecursionError)."""
    out = committed_run(tmp_path)
    where = location_of(out)
    store = open_store(where, mode="resume")
    where.write_bytes("_commits/part-00002.json", b'{"index": 2, "counts": ' + DEEP + b"}")
    damaged = r"part-00002\.json is damaged \(JSON nested too deeply\)"
    with pytest.raises(StorageError, match=damaged):
        trio.run(store.absorb)
    with pytest.raises(StorageError, match=damaged):
        open_store(where, mode="resume")
    with pytest.raises(StorageError, match=damaged):
        open_run(out)
    assert any("nested too deeply" in p for p in inspect_run(out).problems)


_NOT_A_COUNT = st.one_of(
    st.integers(max_value=-1),
    st.floats(),  # 4.0, 3.7, NaN and Infinity alike: a count is a JSON integer
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["rows", "dropped", "num_rows", "first_row_id"]), value=_NOT_A_COUNT)
def test_a_commit_entry_with_a_count_that_is_not_a_count_is_damaged(
    tmp_path: Path, field: str, value: Any
) -> None:
    """A count that is negative, fractional, infinite, NaN, a bool, a string or anything but a
    whole number is refused as a damaged entry (floats were truncated, bools read as 0/1,
    negatives accepted, and Infinity raised OverflowError)."""
    where = location_of(tmp_path / "entries")
    text = json.dumps(entry(1, **{field: value}))  # NaN and Infinity as Python writes them
    where.write_bytes("_commits/part-00001.json", text.encode())
    with pytest.raises(StorageError, match=r"part-00001\.json is damaged"):
        read_commit(where, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"rows": 100},  # more rows than the group covers
        {"rows": 2},  # rows + dropped short of num_rows
        {"rows": 3, "dropped": 3},
        {"index": True},  # True == 1 in Python
        {"index": 1.0},
        {"index": 2},  # the entry of another group
        {"counts": {"topic": {"done": 1e400, "failed": 0, "dropped": 0}}},
    ],
)
def test_a_commit_entry_that_lies_is_damaged(tmp_path: Path, changes: dict[str, Any]) -> None:
    """An entry whose rows and drops do not add up to the rows it covers, or whose index is not
    the integer its file name says, is refused: it was counted as written."""
    out = committed_run(tmp_path)
    where = location_of(out)
    where.write_bytes("_commits/part-00001.json", json.dumps(entry(1, **changes)).encode())
    with pytest.raises(StorageError, match=r"part-00001\.json is damaged"):
        open_store(where, mode="resume")
    with pytest.raises(StorageError, match=r"part-00001\.json is damaged"):
        open_run(out)


def test_the_commit_entry_of_a_listed_row_group_is_not_read_again(tmp_path: Path) -> None:
    """Resume reads only the commit entries metadata.json does not list yet (so a long run's
    resume does not re-read every entry): a listed group's entry is never parsed."""
    out = committed_run(tmp_path)
    where = location_of(out)
    trio.run(open_store(where, mode="resume").absorb)  # lists row group 1
    where.write_bytes("_commits/part-00001.json", b"not json")
    assert open_store(where, mode="resume").completed() == frozenset({1})


# ------------------------------------------------------------------- metadata.json


def test_a_deeply_nested_metadata_json_is_a_clear_error(tmp_path: Path) -> None:
    """A metadata.json nested past the recursion limit is refused by every reader with a
    StorageError naming it (it raised RecursionError)."""
    out = tmp_path / "run"
    open_store(location_of(out))
    (out / "metadata.json").write_bytes(b'{"row_groups": ' + DEEP + b"}")
    message = r"metadata\.json: JSON nested too deeply"
    for attempt in (
        lambda: open_run(out),
        lambda: inspect_run(out),
        lambda: reopen(out, "manifest", "resume"),
        lambda: reopen(out, "parquet", "resume"),
    ):
        with pytest.raises(StorageError, match=message):
            attempt()


def test_an_infinite_count_in_metadata_json_is_a_clear_error(tmp_path: Path) -> None:
    """num_records: Infinity in metadata.json is a damaged metadata.json for open_run (it
    raised OverflowError)."""
    out = tmp_path / "run"
    open_store(location_of(out))
    doc = json.loads((out / "metadata.json").read_text())
    doc["num_records"] = float("inf")
    (out / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(StorageError, match=r"metadata\.json is damaged"):
        open_run(out)


def test_a_local_metadata_json_is_read_size_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local metadata.json larger than the limit is refused unread (it was read whole)."""
    out = tmp_path / "run"
    open_store(location_of(out))
    size = (out / "metadata.json").stat().st_size
    monkeypatch.setattr(metadata_module, "JSON_LIMIT", size - 1)
    with pytest.raises(StorageError, match=f"larger than {size - 1:,} bytes"):
        read_run_metadata(out)


# ---------------------------------------------------------------- a replaced part


def test_a_part_replaced_after_its_commit_is_refused_on_read(tmp_path: Path) -> None:
    """A data part holding other rows than its committed entry (a second writer replaced it)
    stops reading the table with a clear error from open_run; a resume of the local run sets
    it aside, to be generated again, saying why."""
    out = committed_run(tmp_path)
    other = location_of(tmp_path / "other")
    open_store(other)
    trio.run(open_store(other, mode="resume", role="shard").write, group(1, drop=(5,)))
    assert other.local is not None
    replacement = (other.local / "data/part-00001.parquet").read_bytes()
    (out / "data/part-00001.parquet").write_bytes(replacement)
    message = r"part-00001\.parquet holds 3 rows but its row group is recorded with 4"
    with pytest.raises(StorageError, match=message):
        _ = open_run(out).table
    store = open_store(location_of(out), mode="resume")
    assert store.damaged == ("row group 1: part-00001.parquet holds 3 rows, metadata.json lists 4",)
    assert 1 not in store.completed()
    assert (out / "damaged/data-part-00001.parquet").read_bytes() == replacement
    assert not (out / "_commits/part-00001.json").exists()


# -------------------------------------------------------------------------- URIs


def test_a_file_uri_with_a_host_is_refused() -> None:
    """file://relative/run names host 'relative', not a relative folder: it is refused (it
    wrote to /run)."""
    with pytest.raises(StorageError, match="three slashes"):
        location_of("file://relative/run")
    assert location_of("file://localhost/abs/run").local == Path("/abs/run")


def test_a_file_uri_is_the_local_folder_it_names(tmp_path: Path) -> None:
    """local_path turns a file:// URI into its folder (percent-escapes decoded), a plain path
    into itself, and refuses a remote URI."""
    assert local_path(f"file://{tmp_path}/a%20b") == tmp_path / "a b"
    assert local_path("rel/run") == Path("rel/run")
    with pytest.raises(StorageError, match="not a local folder"):
        local_path("s3://bucket/run")


def test_create_and_resume_through_a_file_uri_write_the_named_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create -o file:///abs/run writes /abs/run (not a folder called 'file:' in the working
    directory), and resume, inspect and open_run find the run through the same URI."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    uri = (tmp_path / "out run").as_uri()
    runner = CliRunner()
    created = runner.invoke(cli, ["create", str(config), "-n", "20", "-o", uri, "--json"])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "out run" / "metadata.json").is_file()
    assert not (tmp_path / "file:").exists()
    grown = runner.invoke(cli, ["resume", uri, "-n", "30", "--json"])
    assert grown.exit_code == 0, grown.output
    shown = runner.invoke(cli, ["inspect", uri, "--json"])
    assert json.loads(shown.stdout)["rows_written"] == 30
    assert open_run(uri).table.num_rows == 30
    assert gl.create(config, num_records=30, output_dir=uri, resume=True).table.num_rows == 30


#: The words of the parse error, which a secret must not be part of for the test to tell.
_PARSE_ERROR = (
    "cannot open s3://bucket/ü n: cannot parse uri: 's3://***:***@bucket/ü n' due to syntax"
    " error at character '?' (position 40)"
)


@settings(max_examples=60)
@given(
    secret=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        min_size=6,
        max_size=20,
    ).filter(lambda s: "*" not in s and s.lower() not in _PARSE_ERROR)
)
def test_no_secret_leaks_from_a_uri_pyarrow_cannot_parse(secret: str) -> None:
    """A secret key in any spelling (characters pyarrow shows percent-encoded included) is
    masked in the error of a URI pyarrow cannot parse (it showed 'ab%2Fcd')."""
    quoted = urllib.parse.quote(secret, safe="")
    uri = f"s3://bucket/ü n?access_key=AKIDEXAMPLE&secret_key={quoted}"
    with pytest.raises(StorageError) as caught:
        location_of(uri)
    message = str(caught.value)
    for spelling in {secret, quoted, urllib.parse.quote(secret)}:
        assert spelling not in message


def test_query_keys_never_show_in_any_json_output_or_file(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys given in a URI's query appear in no --json output of create, resume, inspect and
    export, and in neither metadata.json nor config.yaml."""
    s3_server.set_env(monkeypatch)
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    secret = "q-s3cr3t-" + "7f3a9c"
    bucket_path = s3_server.bucket("hostile").removeprefix("s3://") + "/run"
    keyed = f"s3://{bucket_path}?access_key=AKIDHOSTILE&secret_key={secret}"
    runner = CliRunner()
    outputs = [
        runner.invoke(cli, ["create", str(config), "-n", "20", "-o", keyed, "--json"]),
        runner.invoke(cli, ["resume", keyed, "-n", "30", "--json"]),
        runner.invoke(cli, ["inspect", keyed, "--json"]),
        runner.invoke(
            cli, ["export", keyed, "--format", "jsonl", "-o", str(tmp_path / "x.jsonl"), "--json"]
        ),
        runner.invoke(cli, ["create", str(config), "-n", "20", "-o", keyed, "--json"]),
    ]
    assert [r.exit_code for r in outputs] == [0, 0, 0, 0, 3], [r.output for r in outputs]
    where = location_of(f"s3://{bucket_path}")
    files = [
        where.read_bytes(name, limit=1 << 20) or b"" for name in ("metadata.json", "config.yaml")
    ]
    for text in [r.output for r in outputs] + [f.decode() for f in files]:
        assert secret not in text
        assert "AKIDHOSTILE" not in text


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    digits=st.text(
        alphabet=st.characters(categories=("Nd", "No"), exclude_characters="0123456789"),
        min_size=1,
        max_size=6,
    )
)
def test_non_ascii_digits_in_names_and_keys_never_crash_a_reader(
    tmp_path: Path, digits: str
) -> None:
    """A data part or a row_groups key spelled with digits other than 0-9 (superscripts,
    Arabic-Indic or fullwidth digits) is a foreign file or a damaged entry to inspect_run and
    the CLI's count, not a ValueError from int() (str.isdigit() let them through)."""
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    open_store(location_of(out))
    (out / "data").mkdir(exist_ok=True)
    (out / "data" / f"part-{digits:0>5}.parquet").write_bytes(b"not gridloom's")
    doc = json.loads((out / "metadata.json").read_text())
    doc["row_groups"] = {digits: {}}
    (out / "metadata.json").write_text(json.dumps(doc))
    damaged = [p for p in inspect_run(out).problems if "is damaged" in p]
    assert len(damaged) == 1
    assert damaged[0].startswith(f"metadata.json entry for row group {digits!r} is damaged")
    assert kept_row_groups(out) == 0


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(doc=st.dictionaries(st.text(), _JSON, max_size=6))
def test_metadata_json_bytes_read_back_as_the_document(doc: dict[str, Any]) -> None:
    """metadata.json's line-per-entry layout (written without json's slow indent) parses back
    to exactly the document, for any JSON object."""
    raw = document_bytes(doc)
    assert raw.endswith(b"}\n")
    assert json.loads(raw) == doc


@pytest.mark.parametrize("store", ["manifest", "parquet"])
def test_overwrite_keeps_a_symlinked_data_folder(tmp_path: Path, store: str) -> None:
    """--overwrite of a run whose data/ is a symlink to a folder elsewhere empties that folder
    of gridloom's parts and keeps the link (rmdir on the link raised NotADirectoryError, out of
    ManifestStore.open unwrapped)."""
    out = tmp_path / "run"
    trio.run(open_store(location_of(out)).write, group(0))
    elsewhere = tmp_path / "bigger-disk"
    (out / "data").rename(elsewhere)
    (out / "data").symlink_to(elsewhere)
    reopened = reopen(out, store, "overwrite")
    assert reopened.completed() == frozenset()
    assert (out / "data").is_symlink()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("key", ["num_records", "row_group_size", "seed"])
@pytest.mark.parametrize("store", ["manifest", "parquet"])
def test_an_infinite_setting_in_metadata_json_stops_resume_cleanly(
    tmp_path: Path, key: str, store: str
) -> None:
    """Infinity as the recorded num_records, row_group_size or seed makes resume say
    metadata.json is damaged (it raised OverflowError)."""
    out = tmp_path / "run"
    open_store(location_of(out))
    doc = json.loads((out / "metadata.json").read_text())
    doc[key] = float("inf")
    (out / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(StorageError, match=r"cannot resume .*metadata\.json is damaged"):
        reopen(out, store, "resume")


def test_fsspecs_error_never_shows_the_uris_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """When fsspec cannot open a URI and quotes it in its error, the password is masked (the
    error was shown as fsspec wrote it)."""
    import fsspec  # type: ignore[import-untyped]

    def refuse(uri: str) -> None:
        raise ValueError(f"cannot reach {uri}")

    monkeypatch.setattr(fsspec.core, "url_to_fs", refuse)
    with pytest.raises(StorageError, match="fsspec cannot open ftp://") as caught:
        location_of("ftp://someone:pa55-w0rd@127.0.0.1/run")
    assert "pa55-w0rd" not in str(caught.value)


#: Bytes a folder name may hold (no "/" or NUL), most of them not UTF-8 on their own.
NAME_BYTES = st.binary(min_size=1, max_size=6).filter(lambda b: b"/" not in b and b"\0" not in b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAME_BYTES)
def test_a_run_directory_path_that_is_not_utf8_is_refused_up_front(name: bytes) -> None:
    """A folder name that is not UTF-8 (pyarrow reads a run's files by UTF-8 paths only) is
    refused before anything is written, by create and by every command reading a run (exit 2,
    a message naming it, no traceback) and by the Python API (StorageError); a UTF-8 name
    works with every command."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        config = base / "pipeline.yaml"
        config.write_text(PIPELINE)
        out = base / os.fsdecode(b"run-" + name)
        utf8 = True
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            utf8 = False
        runner = CliRunner()
        if not utf8:
            with pytest.raises(StorageError, match="not UTF-8"):
                gl.create(config, num_records=3, output_dir=out)
            assert not os.path.lexists(out)
            out.mkdir()  # a run made some other way, copied there
            (out / "metadata.json").write_text("{}")
        else:
            gl.create(config, num_records=3, output_dir=out)
        commands: list[list[str]] = [
            ["inspect", "--json"],
            ["export", "--format", "jsonl", "--json"],
            ["resume", "--json"],
            ["plot", "--json"],
        ]
        for command in commands:
            res = runner.invoke(cli, [command[0], str(out), *command[1:]])
            assert res.exception is None or isinstance(res.exception, SystemExit), res.output
            if not utf8:
                assert res.exit_code == 2, res.output
                assert "not UTF-8" in json.loads(res.stdout)["error"]["message"]
            elif command[0] != "plot":  # an untraced run has nothing to plot
                assert res.exit_code == 0, res.output
        if not utf8:
            with pytest.raises(StorageError, match="not UTF-8"):
                open_run(out)
            with pytest.raises(StorageError, match="not UTF-8"):
                inspect_run(out)
