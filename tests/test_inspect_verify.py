"""``gridloom inspect --verify`` (and ``inspect_run(verify=True)``, ``RunResult.verify()``)
checks every committed file against the SHA-256 recorded when it was written: it names the
damaged ones and exits 1, says "all N files intact" otherwise, and puts what it found in the
``--json`` document; without ``--verify`` no part is read."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pytest
from click.testing import CliRunner, Result
from hypothesis import given

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.storage import inspect_run, location_of, open_run

from .conftest import S3Server
from .damage import ROWS, damage_settings, flip_in_pages, flip_part_at, pipeline, reference_run
from .test_resume_digest import break_pages, strip_digests


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory)


def committed(out: Path) -> list[str]:
    """The committed files of a run, relative to it, in row group order (data, then drops)."""
    doc = json.loads((out / "metadata.json").read_text())
    files = []
    for _, entry in sorted(doc["row_groups"].items(), key=lambda item: int(item[0])):
        files.append(entry["file"])
        if entry["dropped_file"] is not None:
            files.append(entry["dropped_file"])
    return files


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def checked(result: Result) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(doc, output_schema("inspect"))
    return doc


@damage_settings(25)
@given(data=st.data())
def test_verify_names_the_damaged_file_and_exits_1(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A byte flipped in the pages of any committed file, data or dropped records (its footer
    still reads): --verify names exactly that file, in the text and in the JSON (a failure of
    type RunDamaged that keeps the whole document), with the resume that repairs it; exit 1."""
    out = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(reference, out)
    files = committed(out)
    rel = data.draw(st.sampled_from(files), label="file")
    flip_in_pages(out / rel, data)
    index = int(rel.removesuffix(".parquet").split("-")[1])

    doc = checked(invoke("inspect", out, "--verify", "--json", "-n", "0"))
    assert (doc["ok"], doc["error"]["type"], doc["status"]) == (False, "RunDamaged", "complete")
    [damaged] = doc["verify"]["damaged"]
    assert (damaged["row_group"], damaged["file"]) == (index, rel)
    assert damaged["problem"].startswith(f"{rel} does not hold the bytes written at commit")
    assert doc["verify"]["files"] == len(files)
    assert doc["verify"]["intact"] is False
    assert doc["error"]["message"].startswith(f"1 of {len(files)} committed files are damaged")
    assert f"`gridloom resume {out}`" in doc["error"]["message"]

    text = invoke("inspect", out, "--verify", "-n", "0")
    assert text.exit_code == 1
    assert f"  damaged: {rel} does not hold the bytes written at commit" in text.stdout
    assert f"  repair: run `gridloom resume {out}`" in text.stdout
    assert text.stderr.startswith(f"error: {out}: 1 of {len(files)} committed files are damaged")


def test_an_intact_run_verifies(reference: Path) -> None:
    """Every file as committed: "all N files intact", exit 0; the JSON says the same."""
    files = committed(reference)
    text = invoke("inspect", reference, "--verify", "-n", "0")
    assert text.exit_code == 0, text.output
    assert f"  verified: all {len(files)} files intact" in text.stdout
    doc = checked(invoke("inspect", reference, "--verify", "--json"))
    assert doc["ok"] is True
    assert doc["verify"] == {"files": len(files), "intact": True, "damaged": [], "repair": None}


def test_without_verify_no_part_is_read(reference: Path, tmp_path: Path) -> None:
    """Without --verify, inspect reads the footers as before: a part damaged in its pages
    goes unseen (exit 0, `verify: null`)."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    break_pages(out / "data/part-00003.parquet")
    result = invoke("inspect", out, "--json", "-n", "0")
    assert result.exit_code == 0, result.output
    doc = checked(result)
    assert (doc["ok"], doc["verify"], doc["problems"]) == (True, None, [])
    assert inspect_run(out).verification is None


def test_a_run_written_before_digests_is_decoded(reference: Path, tmp_path: Path) -> None:
    """Entries without digests: their files are decoded in full; one whose pages no longer
    decode is damaged, the others intact (and an undamaged old run verifies)."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    strip_digests(out)
    assert checked(invoke("inspect", out, "--verify", "--json"))["verify"]["intact"] is True
    break_pages(out / "data/part-00004.parquet")
    doc = checked(invoke("inspect", out, "--verify", "--json"))
    [damaged] = doc["verify"]["damaged"]
    assert damaged["file"] == "data/part-00004.parquet"
    assert damaged["problem"].startswith("data/part-00004.parquet does not decode")


def test_a_missing_file_is_damaged_too(reference: Path, tmp_path: Path) -> None:
    """A committed file that is gone: a problem, as before, and a damaged file under
    --verify; the API's verify() agrees with inspect's."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "data/part-00002.parquet").unlink()
    doc = checked(invoke("inspect", out, "--verify", "--json"))
    assert "metadata.json lists data/part-00002.parquet, which is missing" in doc["problems"]
    [damaged] = doc["verify"]["damaged"]
    assert damaged == {
        "row_group": 2,
        "file": "data/part-00002.parquet",
        "problem": "data/part-00002.parquet is missing",
    }
    assert open_run(out).verify() == inspect_run(out, verify=True).verification


@pytest.fixture(scope="module")
def s3_run(s3_server: S3Server) -> str:
    """The reference run, written to a bucket of the S3 server (through commit entries)."""
    with pytest.MonkeyPatch.context() as patch:
        s3_server.set_env(patch)
        uri = s3_server.bucket("inspect-verify") + f"/run-{secrets.token_hex(4)}"
        gl.create(pipeline(), num_records=ROWS, output_dir=uri)
    return uri


@damage_settings(8)
@given(data=st.data())
def test_a_run_at_a_uri_is_downloaded_to_be_verified(
    s3_run: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, data: st.DataObject
) -> None:
    """A run on the S3 server: --verify reads each committed file from the bucket; one with a
    byte flipped in its pages is named by its path in the run, with how to repair a remote
    run (a local copy's resume), exit 1; put back, all intact."""
    s3_server.set_env(monkeypatch)
    where = location_of(s3_run)
    doc = gl.storage.read_run_metadata(s3_run)
    files = [
        name
        for _, entry in sorted(doc["row_groups"].items(), key=lambda item: int(item[0]))
        for name in (entry["file"], entry["dropped_file"])
        if name is not None
    ]
    rel = data.draw(st.sampled_from(files), label="file")
    original = flip_part_at(where, rel, data)
    try:
        result = invoke("inspect", s3_run, "--verify", "--json", "-n", "0")
        assert result.exit_code == 1
        doc = checked(result)
        assert [d["file"] for d in doc["verify"]["damaged"]] == [rel]
        assert doc["verify"]["files"] == len(files)
        assert f"copy {s3_run} to a local folder" in doc["error"]["message"]
        assert open_run(s3_run).verify() == inspect_run(s3_run, verify=True).verification
    finally:
        where.write_bytes(rel, original)
    assert invoke("inspect", s3_run, "--verify", "-n", "0").exit_code == 0
