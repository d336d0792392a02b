"""A run never overwrites or removes a file it did not write: an output folder that holds no
run but a file a run writes (config.yaml, trace.json, trace.parquet) is refused, with or
without overwrite, and so is the config being run when it is the output folder's config.yaml
(the same file, however spelled or linked); other files in the folder are kept."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.errors import OutputExistsError, StorageError
from gridloom.storage import ManifestStore, location_of

from .test_storage import SCHEMA, open_store

PIPELINE = """\
# my pipeline: this comment must survive
columns:
  - {name: topic, category: {values: [a, b, c]}}
  - {name: n, uniform: {low: 1, high: 9, convert_to: int}}
run: {row_group_size: 2, seed: 5, progress: "off"}
"""
#: The files a run writes beside metadata.json.
BESIDE = ("config.yaml", "trace.json", "trace.parquet")


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: a file's bytes, a link's target."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def open_manifest(out: Path, **overrides: Any) -> ManifestStore:
    kwargs: dict[str, Any] = {
        "schema": SCHEMA,
        "config_text": "columns: []\n",
        "config_hash": "0123456789abcdef" * 4,
        "num_records": 10,
        "row_group_size": 4,
        "seed": 7,
        "mode": "new",
    }
    kwargs.update(overrides)
    return ManifestStore.open(location_of(out.as_uri()), **kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    present=st.lists(st.sampled_from(BESIDE), min_size=1, unique=True),
    as_link=st.booleans(),
    mode=st.sampled_from(["new", "overwrite"]),
    store=st.sampled_from(["parquet", "manifest"]),
    input_is=st.sampled_from([None, "config.yaml", "elsewhere"]),
)
def test_a_folder_holding_files_a_run_writes_but_no_run_is_refused(
    present: list[str], as_link: bool, mode: str, store: str, input_is: str | None
) -> None:
    """A folder with no metadata.json but a config.yaml, trace.json or trace.parquet (a file,
    or a link to one elsewhere) is refused in modes new and overwrite, by both stores, with
    every file left as it was: a run never overwrites a file it did not write."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        for name in present:
            if as_link:
                (root / f"real-{name}").write_text(f"# {name} of mine\n")
                (out / name).symlink_to(root / f"real-{name}")
            else:
                (out / name).write_text(f"# {name} of mine\n")
        elsewhere = root / "pipeline.yaml"
        elsewhere.write_text("columns: []\n")
        input_config = {None: None, "config.yaml": out / "config.yaml", "elsewhere": elsewhere}[
            input_is
        ]
        before = snapshot(root)
        opener = open_store if store == "parquet" else open_manifest
        with pytest.raises((OutputExistsError, StorageError), match="never overwrites"):
            opener(out, mode=mode, input_config=input_config)
        assert snapshot(root) == before


@pytest.mark.parametrize("store", ["parquet", "manifest"])
@pytest.mark.parametrize("mode", ["new", "overwrite"])
def test_other_files_of_a_folder_are_kept(tmp_path: Path, store: str, mode: str) -> None:
    """A folder holding only files a run does not write takes a run (modes new and
    overwrite), and keeps them."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "config.yml").write_text("not the same name")
    opener = open_store if store == "parquet" else open_manifest
    opener(out, mode=mode)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "config.yml").read_text() == "not the same name"
    assert (out / "metadata.json").is_file()
    assert (out / "config.yaml").read_text() == "columns: []\n"


@pytest.mark.parametrize("store", ["parquet", "manifest"])
@pytest.mark.parametrize("spelling", ["same", "relative", "hard link", "symlink"])
def test_overwrite_never_replaces_the_input_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, spelling: str
) -> None:
    """Overwriting a run whose config.yaml is the config being run (the same file by
    samefile: spelled relatively, hard linked or symbolically linked from elsewhere) is
    refused, and nothing of the run is removed."""
    out = tmp_path / "run"
    opener = open_store if store == "parquet" else open_manifest
    opener(out).close()  # that run ended
    (out / "config.yaml").write_text("# edited by hand\ncolumns: []\n")
    given_path: Path = out / "config.yaml"
    if spelling == "relative":
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        given_path = Path("..") / "elsewhere" / ".." / "run" / "config.yaml"
    elif spelling == "hard link":
        given_path = tmp_path / "linked.yaml"
        os.link(out / "config.yaml", given_path)
    elif spelling == "symlink":
        given_path = tmp_path / "linked.yaml"
        given_path.symlink_to(out / "config.yaml")
    before = snapshot(tmp_path)
    with pytest.raises(StorageError, match="never overwrites its own config file"):
        opener(out, mode="overwrite", input_config=given_path)
    assert snapshot(tmp_path) == before


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder of the user's: a commented config.yaml and notes."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "config.yaml").write_text(PIPELINE)
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_create_into_the_config_folder_is_refused(
    user_folder: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    """The reported case: `gridloom create config.yaml -n 5 -o .` in the config's own folder
    is a usage error (exit 2), with or without --overwrite, and the commented file stays."""
    monkeypatch.chdir(user_folder)
    before = snapshot(user_folder)
    res = invoke("create", "config.yaml", "-n", "5", "-o", ".", *flags, "--json")
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert error["type"] == "UsageError"
    assert "never overwrites its own config file" in error["message"]
    assert snapshot(user_folder) == before


def test_the_api_refuses_the_config_folder_too(user_folder: Path) -> None:
    """gl.create with output_dir the config's folder is refused (OutputExistsError, or
    StorageError with overwrite=True), the config untouched; a copy elsewhere runs there and
    the user's files are kept."""
    config = user_folder / "config.yaml"
    with pytest.raises(OutputExistsError, match="never overwrites"):
        gl.create(config, num_records=4, output_dir=user_folder)
    with pytest.raises(StorageError, match="never overwrites its own config file"):
        gl.create(config, num_records=4, output_dir=user_folder, overwrite=True)
    assert config.read_text() == PIPELINE
    copy = user_folder.parent / "pipeline.yaml"
    copy.write_text(PIPELINE)
    other = user_folder.parent / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = gl.create(copy, num_records=4, output_dir=other)
    assert result.num_rows == 4
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("name", "flags"), list(itertools.product(BESIDE, [[], ["--overwrite"]])))
def test_create_refuses_a_folder_with_a_file_a_run_writes(
    tmp_path: Path, name: str, flags: list[str]
) -> None:
    """A folder with no run but a config.yaml, trace.json or trace.parquet of the user's (not
    the config being run) is refused with exit 3, with or without --overwrite, and stays as
    it was."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE)
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("mine")
    res = invoke("create", config, "-n", "4", "-o", out, *flags, "--json")
    assert res.exit_code == 3, res.output
    assert "never overwrites a file it did not write" in json.loads(res.stdout)["error"]["message"]
    assert snapshot(out) == {name: b"mine"}


def test_overwrite_of_a_run_replaces_its_own_config_and_keeps_the_rest(tmp_path: Path) -> None:
    """--overwrite of a real run (its metadata.json there) replaces the run's own config.yaml
    and files, and keeps the user's."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "4", "-o", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    config.write_text(PIPELINE.replace("seed: 5", "seed: 6"))
    res = invoke("create", config, "-n", "4", "-o", out, "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    assert "seed: 6" in (out / "config.yaml").read_text()
    assert (out / "notes.txt").read_text() == "mine"
