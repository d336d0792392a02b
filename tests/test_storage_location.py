"""Tests of run locations on any pyarrow filesystem (gridloom.storage.Location), against the
local filesystem, fsspec's memory filesystem and a real S3 protocol server (moto)."""

from __future__ import annotations

import pickle
import socket
import sys
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.errors import StorageError
from gridloom.storage import Location, is_remote_uri, location_of
from gridloom.storage import _location as location_module

from .conftest import S3Server

SCHEMA = pa.schema([pa.field("x", pa.int64())])


@pytest.fixture
def s3_uri(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh folder in a bucket of the S3 server, with the environment pointing at it."""
    s3_server.set_env(monkeypatch)
    return s3_server.bucket("locations") + f"/t-{id(monkeypatch):x}"


def _half_then_fail(f: BinaryIO) -> None:
    f.write(b"half of it")
    raise RuntimeError("writer failed")


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


# ------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("out/run", False),
        ("/abs/run", False),
        ("file:///abs/run", False),
        ("C:\\runs\\x", False),
        ("s3://bucket/run", True),
        ("gs://bucket/run", True),
        ("hdfs://namenode:8020/run", True),
        ("memory://x/y", True),
    ],
)
def test_is_remote_uri_tells_uris_from_paths(uri: str, remote: bool) -> None:
    """A scheme other than file makes a remote URI; paths, drive letters and file:// do not."""
    assert is_remote_uri(uri) is remote


def test_a_path_object_is_never_remote(tmp_path: Path) -> None:
    """A path object is local, whatever its text."""
    assert not is_remote_uri(tmp_path / "s3:")


def test_a_plain_path_and_a_file_uri_are_local(tmp_path: Path) -> None:
    """Plain paths and file:// URIs give the local filesystem, named by the path as given."""
    plain = location_of(str(tmp_path / "run"))
    uri = location_of((tmp_path / "run").as_uri())
    assert plain.local == tmp_path / "run"
    assert uri.local == tmp_path / "run"
    assert plain.display == str(tmp_path / "run")
    assert repr(plain) == f"Location({str(tmp_path / 'run')!r})"


def test_a_uri_displays_without_userinfo_or_query() -> None:
    """Keys in the user information or the query never show in the display or the repr."""
    loc = location_of("s3://AKIDVISIBLE:topsecret@bucket/run/?region=us-east-1")
    assert loc.display == "s3://bucket/run"
    assert "topsecret" not in repr(loc)
    assert "AKIDVISIBLE" not in repr(loc)
    assert loc.local is None
    assert loc.root == "bucket/run"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%+/=", min_size=1, max_size=30))
def test_no_query_secret_reaches_a_display(secret: str) -> None:
    """Whatever the secret key in a URI's query, the location's repr and display omit it."""
    loc = location_of(f"s3://bucket/run?region=us-east-1&access_key=AKIDQUERY&secret_key=S{secret}")
    assert f"S{secret}" not in repr(loc)
    assert "AKIDQUERY" not in loc.display


def test_a_lone_access_key_in_the_query_is_refused() -> None:
    """access_key without secret_key is a clear error that names neither value."""
    with pytest.raises(StorageError, match="give both access_key and secret_key") as info:
        location_of("s3://bucket/run?access_key=AKIDLONE")
    assert "AKIDLONE" not in str(info.value)


def test_an_unknown_scheme_without_fsspec_names_the_scheme_and_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheme pyarrow lacks, without fsspec installed, names the scheme and the extra."""
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(StorageError, match=r"memory://.*gridloom\[fsspec\]"):
        location_of("memory://bucket/run")


def test_an_unknown_scheme_fsspec_lacks_too_is_one_clear_error() -> None:
    """A scheme neither pyarrow nor fsspec knows is a StorageError naming it."""
    with pytest.raises(StorageError, match="weird://"):
        location_of("weird://host/run")


# ------------------------------------------------------------ operations, all stores


@pytest.fixture(params=["local", "memory", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A fresh, empty location on each kind of filesystem."""
    if request.param == "local":
        return location_of(tmp_path / "run")
    if request.param == "memory":
        return location_of(f"memory://gridloom-tests/{tmp_path.name}")
    uri: str = request.getfixturevalue("s3_uri")
    return location_of(uri)


def test_files_round_trip(location: Location) -> None:
    """Written files read back, list by name, and are gone after delete."""
    location.write_bytes("a/one.json", b"1")
    location.write_bytes("a/two.json", b"22")
    location.write_bytes("a/two.json", b"222")
    assert location.read_bytes("a/two.json", limit=10) == b"222"
    assert location.list_names("a") == ["one.json", "two.json"]
    assert location.exists("a/one.json")
    location.delete("a/one.json")
    location.delete("a/one.json")
    assert location.list_names("a") == ["two.json"]
    assert not location.exists("a/one.json")


def test_missing_files_read_as_none_and_missing_folders_list_empty(location: Location) -> None:
    """A missing file reads as None and a missing folder lists as []."""
    assert location.read_bytes("nope.json", limit=10) is None
    assert location.list_names("nowhere") == []


def test_reading_more_than_the_limit_is_refused(location: Location) -> None:
    """A file larger than the limit is a StorageError naming it, not a huge read."""
    location.write_bytes("big.json", b"x" * 11)
    assert location.read_bytes("big.json", limit=11) == b"x" * 11
    with pytest.raises(StorageError, match=r"big\.json: larger than 10 bytes"):
        location.read_bytes("big.json", limit=10)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(location: Location) -> None:
    """A writer failing midway leaves no new file, and the previous content intact."""
    with pytest.raises(RuntimeError, match="writer failed"):
        location.write_with("fresh.bin", _half_then_fail)
    location.write_bytes("kept.bin", b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        location.write_with("kept.bin", _half_then_fail)
    assert location.list_names("") == ["kept.bin"]
    assert location.read_bytes("kept.bin", limit=10) == b"old"


def test_read_parquet_checks_the_declared_schema(location: Location) -> None:
    """A parquet file reads back with the declared schema; another schema is refused."""
    location.write_bytes("t.parquet", _parquet_bytes(pa.table({"x": [1, 2]})))
    assert location.read_parquet("t.parquet", SCHEMA).column("x").to_pylist() == [1, 2]
    other = pa.schema([pa.field("y", pa.string())])
    with pytest.raises(StorageError, match="does not have the declared schema"):
        location.read_parquet("t.parquet", other)


def test_an_unreadable_parquet_file_is_a_storage_error(location: Location) -> None:
    """A file that is not parquet is a StorageError naming it."""
    location.write_bytes("bad.parquet", b"not parquet")
    with pytest.raises(StorageError, match=r"bad\.parquet"):
        location.read_parquet("bad.parquet", SCHEMA)


def test_a_rename_filesystem_writes_through_a_temp_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where rename is atomic, a file is written to a temp name then moved; a failure leaves
    neither."""
    loc = location_of(f"memory://gridloom-rename/{tmp_path.name}")
    monkeypatch.setattr(location_module, "_ATOMIC_RENAME", frozenset({loc.filesystem.type_name}))
    loc.write_bytes("d/f.json", b"v1")
    with pytest.raises(RuntimeError, match="writer failed"):
        loc.write_with("d/f.json", _half_then_fail)
    assert loc.list_names("d") == ["f.json"]
    assert loc.read_bytes("d/f.json", limit=10) == b"v1"


# ----------------------------------------------------------- S3 failures, one line


def test_s3_uri_query_keys_are_used_and_never_shown(
    s3_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys given in the URI's query authenticate, and show in no repr or error."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret")
    loc = location_of(f"{s3_uri}?access_key=AKIDINURI&secret_key=uri-secret-value")
    loc.write_bytes("x.json", b"{}")
    assert loc.read_bytes("x.json", limit=10) == b"{}"
    with pytest.raises(StorageError) as info:
        location_of(loc.display.replace("locations", "no-such-bucket-here")).write_bytes(
            "x.json", b"{}"
        )
    for text in (repr(loc), loc.display, str(info.value)):
        assert "uri-secret-value" not in text
        assert "some-secret" not in text
        assert "AKIDINURI" not in text


def test_wrong_credentials_are_one_clear_line(s3_uri: str, s3_server: S3Server) -> None:
    """A server refusing the keys gives one line saying access was denied, naming the file."""
    loc = location_of(s3_uri)
    with s3_server.checking_credentials(), pytest.raises(StorageError) as info:
        loc.read_bytes("metadata.json", limit=100)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot read {s3_uri}/metadata.json: access denied")


def test_a_dead_endpoint_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint nothing listens on gives one line saying it cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(StorageError) as info:
        location_of("s3://dead-bucket/run?region=us-east-1").list_names("data")
    message = str(info.value)
    assert "\n" not in message
    assert "some-secret" not in message
    assert message.startswith("cannot list s3://dead-bucket/run/data: the storage endpoint")


def test_a_location_survives_pickling(location: Location) -> None:
    """A pickled location (as sent to another process) names and reaches the same files."""
    location.write_bytes("p.json", b"42")
    copy = pickle.loads(pickle.dumps(location))
    assert copy == location
    assert repr(copy) == repr(location)
    assert copy.read_bytes("p.json", limit=10) == b"42"
