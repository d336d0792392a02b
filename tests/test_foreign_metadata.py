"""Tests that another tool's metadata.json is never taken for a gridloom run: not replaced by
--overwrite (nor its config.yaml and trace.json), and not shown by inspect as a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridloom.errors import OutputExistsError
from gridloom.storage import location_of

from .test_cli_commands import invoke, pipeline
from .test_manifest_store import open_store as open_manifest
from .test_storage import open_store

FOREIGN = {
    "metadata.json": '{"tool": "other-trainer"}\n',
    "config.yaml": "learning_rate: 0.1\n",
    "trace.json": "x\n",
}


def _foreign(tmp_path: Path, *, metadata: str = FOREIGN["metadata.json"]) -> Path:
    out = tmp_path / "other"
    out.mkdir()
    for name, text in {**FOREIGN, "metadata.json": metadata}.items():
        (out / name).write_text(text)
    return out


def _unchanged(out: Path, metadata: str = FOREIGN["metadata.json"]) -> None:
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        **FOREIGN,
        "metadata.json": metadata,
    }


@pytest.mark.parametrize(
    "metadata",
    [
        FOREIGN["metadata.json"],
        '{"format_version": 1}\n',  # no config_hash
        '{"format_version": "1", "config_hash": "ab"}\n',
        "not json at all\n",
    ],
)
@pytest.mark.parametrize("mode", ["new", "overwrite"])
@pytest.mark.parametrize("store", ["parquet", "manifest"])
def test_another_tools_metadata_is_never_replaced(
    tmp_path: Path, metadata: str, mode: str, store: str
) -> None:
    """Create and overwrite refuse a folder whose metadata.json is not a gridloom run's,
    naming it, and leave every file as it was."""
    out = _foreign(tmp_path, metadata=metadata)
    opener = open_store if store == "parquet" else open_manifest
    where = out if store == "parquet" else location_of(out)
    with pytest.raises(OutputExistsError, match=r"metadata\.json") as caught:
        opener(where, mode=mode)  # type: ignore[operator]
    assert "never overwrites a file it did not write" in str(caught.value)
    _unchanged(out, metadata)


def test_the_cli_overwrite_refuses_another_tools_run_folder(tmp_path: Path) -> None:
    """`gridloom create --overwrite` into another tool's folder exits 3, replacing nothing."""
    out = _foreign(tmp_path)
    result = invoke("create", pipeline(tmp_path), "-n", 10, "-o", out, "--overwrite", "--json")
    assert result.exit_code == 3, result.output
    assert "metadata.json" in json.loads(result.stdout)["error"]["message"]
    _unchanged(out)


@pytest.mark.parametrize("command", ["inspect", "resume"])
def test_inspect_says_another_tools_folder_is_no_run(tmp_path: Path, command: str) -> None:
    """inspect (and resume) of another tool's folder say it is not a gridloom run."""
    out = _foreign(tmp_path)
    result = invoke(command, out, "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "NotARunDirectory"
    assert "not a gridloom run" in error["message"]
    _unchanged(out)


def test_a_gridloom_run_is_still_overwritten(tmp_path: Path) -> None:
    """A gridloom run's metadata.json is still recognised: overwrite replaces the run."""
    out = tmp_path / "run"
    open_store(out).close()
    open_store(out, mode="overwrite", seed=99).close()
    assert json.loads((out / "metadata.json").read_text())["seed"] == 99
