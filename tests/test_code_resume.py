"""A resumed run refuses Python code that changed since the run started (the rows already
written came from the code as it was), naming the columns; accepts it reverted; goes on
when told to (``--accept-code-change``), recording the change; and resumes runs recorded
before the fingerprint existed without a check. A shard never checks: its driver does."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

import gridloom as gl
from gridloom.cli import cli
from gridloom.config import config_hash, dump_config, load_config
from gridloom.errors import StorageError
from gridloom.storage import (
    CodeFingerprint,
    ColumnCounts,
    ManifestStore,
    ParquetStore,
    RowGroupData,
    location_of,
)

from .crashes import as_a_new_process, opened

# --------------------------------------------------------------------------- the stores

SCHEMA = pa.schema([pa.field("score", pa.int64())])
HASH = "0123456789abcdef" * 4
OLD, NEW = "a" * 64, "b" * 64


def group(index: int) -> RowGroupData:
    rows = list(range(index * 4, index * 4 + 4))
    return RowGroupData(
        index=index,
        first_row_id=index * 4,
        num_rows=4,
        row_ids=rows,
        columns={"score": rows},
        counts={"score": ColumnCounts(done=4)},
    )


def open_store(kind: str, out: Path, **overrides: Any) -> ParquetStore | ManifestStore:
    kwargs: dict[str, Any] = {
        "schema": SCHEMA,
        "config_text": "columns: []\n",
        "config_hash": HASH,
        "num_records": 12,
        "row_group_size": 4,
        "seed": 7,
        "mode": "resume",
    }
    kwargs.update(overrides)
    as_a_new_process()  # a run opened again stands for a new process
    if kind == "parquet":
        return opened(ParquetStore.open(out, **kwargs))
    return opened(ManifestStore.open(location_of(str(out)), **kwargs))


def code(digest: str, *, accept: bool = False) -> CodeFingerprint:
    return CodeFingerprint(columns={"score": digest}, accept_change=accept)


async def started(kind: str, out: Path) -> None:
    """A run recording the code ``OLD`` for ``score``, interrupted after row group 0."""
    store = open_store(kind, out, mode="new", code=code(OLD))
    await store.write(group(0))
    await store.finish(status="interrupted", summary={})


def metadata(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "metadata.json").read_text())
    return loaded


@pytest.mark.parametrize("kind", ["parquet", "manifest"])
async def test_a_store_refuses_changed_code_and_records_an_accepted_change(
    tmp_path: Path, kind: str
) -> None:
    """Both stores record the code's fingerprint; a resume with another is refused naming the
    column, before anything on disk changes; the same code resumes; an accepted change is
    recorded (when, the digests, the row groups and rows written before) and becomes the
    fingerprint a later resume checks."""
    out = tmp_path / "run"
    await started(kind, out)
    assert metadata(out)["code_fingerprint"] == {"score": OLD}
    assert metadata(out)["code_changes"] == []
    before = (out / "metadata.json").read_bytes()
    with pytest.raises(StorageError, match=r"Python code of column 'score' changed") as info:
        open_store(kind, out, code=code(NEW))
    assert "--accept-code-change" in str(info.value)
    assert "--overwrite" in str(info.value)
    assert (out / "metadata.json").read_bytes() == before
    open_store(kind, out, code=code(OLD)).close()

    store = open_store(kind, out, code=code(NEW, accept=True))
    await store.write(group(1))
    await store.finish(status="interrupted", summary={})
    doc = metadata(out)
    assert doc["code_fingerprint"] == {"score": NEW}
    (change,) = doc["code_changes"]
    assert change["columns"] == {"score": {"was": OLD, "now": NEW}}
    assert change["row_groups_before"] == [[0, 0]]
    assert change["rows_before"] == 4
    assert store.code_changes == doc["code_changes"]
    store = open_store(kind, out, code=code(NEW))  # the new code is the recorded one now
    assert len(store.code_changes) == 1


async def test_a_shard_does_not_check_the_code(tmp_path: Path) -> None:
    """A shard (given no code: its driver checked) opens a run whose recorded code differs
    from its own, and leaves the record alone; the driver role is refused."""
    out = tmp_path / "run"
    await started("manifest", out)
    where = location_of(str(out))
    as_a_new_process()
    shard = ManifestStore.open(
        where,
        schema=SCHEMA,
        config_text="",
        config_hash=HASH,
        num_records=12,
        row_group_size=4,
        seed=7,
        mode="resume",
        role="shard",
    )
    await shard.write(group(2))
    assert metadata(out)["code_fingerprint"] == {"score": OLD}
    with pytest.raises(StorageError, match="column 'score'"):
        open_store("manifest", out, code=code(NEW))


@pytest.mark.parametrize("kind", ["parquet", "manifest"])
@pytest.mark.parametrize("recorded", ["absent", "null"])
async def test_runs_recorded_without_a_code_fingerprint_resume_unchecked(
    tmp_path: Path, kind: str, recorded: str
) -> None:
    """A run written before the fingerprint existed (no field; or null: not computed)
    resumes with any code, and records the code's fingerprint from then on."""
    out = tmp_path / "run"
    await started(kind, out)
    doc = metadata(out)
    if recorded == "absent":
        del doc["code_fingerprint"]
        del doc["code_changes"]
    else:
        doc["code_fingerprint"] = None
    (out / "metadata.json").write_text(json.dumps(doc))
    store = open_store(kind, out, code=code(NEW))
    assert store.code_changes == []
    assert metadata(out)["code_fingerprint"] == {"score": NEW}


async def test_unknown_code_matches_unknown_code(tmp_path: Path) -> None:
    """Code fingerprinted "unknown" (a builtin) on both sides is not a change: it cannot be
    seen, as documented."""
    out = tmp_path / "run"
    store = open_store("parquet", out, mode="new", code=code("unknown"))
    await store.finish(status="interrupted", summary={})
    open_store("parquet", out, code=code("unknown")).close()
    with pytest.raises(StorageError, match="column 'score'"):
        open_store("parquet", out, code=code(NEW))


# --------------------------------------------------------------------------- whole runs


class Project:
    """A pipeline file beside the module of its custom function, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # A module name of this test's own: the test process keeps modules it imported.
        self.module = "code_fn_" + "".join(c if c.isalnum() else "_" for c in folder.name)
        self.file = folder / f"{self.module}.py"
        self.config = folder / "pipeline.yaml"
        self.out = folder / "out"
        doc = {
            "columns": [
                {"name": "n", "uniform": {"low": 0, "high": 100, "convert_to": "int"}},
                {
                    "name": "tag",
                    "custom": {"function": f"{self.module}:tag"},
                    "depends_on": ["n"],
                },
            ],
            "run": {"row_group_size": 5, "seed": 4, "progress": "off"},
        }
        self.config.write_text(json.dumps(doc))
        self.write("v1")

    def write(self, version: str, comment: str = "") -> None:
        """The module, its function tagging rows with ``version`` (through a helper, so an
        edit of the helper alone is an edit of the column's code)."""
        self.file.write_text(
            f"VERSION = {version!r}{comment}\n\n"
            "def helper(n):\n"
            "    return f'{VERSION}-{n}'\n\n"
            "def tag(row, ctx):\n"
            "    return helper(row['n'])\n"
        )
        # What a new process would run: the module imported again from the file.
        sys.modules.pop(self.module, None)
        importlib.invalidate_caches()

    def digest(self) -> str:
        return hashlib.sha256(self.file.read_bytes()).hexdigest()

    def create(self, num_records: int, **options: Any) -> gl.RunResult:
        return gl.create(self.config, num_records=num_records, output_dir=self.out, **options)

    def versions(self) -> list[str]:
        return [tag.split("-")[0] for tag in gl.open_run(self.out).table.column("tag").to_pylist()]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project whose module is imported afresh after each edit (no bytecode cache: an edit
    in the same second, of the same size, would otherwise reuse the old bytecode)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    made = Project(tmp_path)
    yield made
    sys.modules.pop(made.module, None)


def test_a_resume_after_an_edit_of_the_function_is_refused_until_reverted(
    project: Project,
) -> None:
    """The run records its column's code (the SHA-256 of the module's file); after an edit of
    a helper the function calls, a resume is refused naming the column, nothing is written;
    with the code reverted it resumes."""
    assert project.create(10).status == "complete"
    recorded = json.loads((project.out / "metadata.json").read_text())
    assert recorded["code_fingerprint"] == {"tag": project.digest()}
    before = (project.out / "metadata.json").read_bytes()

    project.write("v2")
    with pytest.raises(StorageError) as info:
        project.create(20, resume=True)
    message = str(info.value)
    assert "Python code of column 'tag' changed since the run started" in message
    assert "revert its code" in message
    assert "--overwrite" in message
    assert "--accept-code-change" in message
    assert (project.out / "metadata.json").read_bytes() == before

    project.write("v1")
    assert project.create(20, resume=True).status == "complete"
    assert project.versions() == ["v1"] * 20


def test_an_accepted_code_change_is_recorded_and_shown(project: Project) -> None:
    """With accept_code_change the resume goes on: rows before come from the old code, rows
    after from the new; metadata.json records which row groups came before, and inspect
    shows it; the next resume checks against the new code."""
    project.create(10)
    old = project.digest()
    project.write("v2")
    result = project.create(20, resume=True, accept_code_change=True)
    assert result.status == "complete"
    assert project.versions() == ["v1"] * 10 + ["v2"] * 10
    doc = json.loads((project.out / "metadata.json").read_text())
    assert doc["code_fingerprint"] == {"tag": project.digest()}
    (change,) = doc["code_changes"]
    assert change["columns"] == {"tag": {"was": old, "now": project.digest()}}
    assert change["row_groups_before"] == [[0, 1]]
    assert change["rows_before"] == 10

    shown = CliRunner().invoke(cli, ["inspect", str(project.out), "--json", "-n", "0"])
    assert shown.exit_code == 0, shown.output
    inspected = json.loads(shown.output)
    assert inspected["code_changes"] == doc["code_changes"]
    assert inspected["code_fingerprint"] == {"tag": project.digest()}
    text = CliRunner().invoke(cli, ["inspect", str(project.out), "-n", "0"]).output
    assert "code changed (accepted on resume at" in text
    assert "column(s) tag; row groups written before: 0-1 (10 rows)" in text

    assert project.create(25, resume=True).status == "complete"  # v2 is the recorded code


def test_old_runs_without_the_field_resume_as_before(project: Project) -> None:
    """A run whose metadata.json has no code_fingerprint (written before it existed) resumes
    over edited code without a check, and records the code from then on."""
    project.create(10)
    meta = project.out / "metadata.json"
    doc = json.loads(meta.read_text())
    del doc["code_fingerprint"]
    del doc["code_changes"]
    meta.write_text(json.dumps(doc))
    project.write("v2")
    assert project.create(20, resume=True).status == "complete"
    assert json.loads(meta.read_text())["code_fingerprint"] == {"tag": project.digest()}


def test_the_commands_refuse_then_accept_a_changed_code(project: Project) -> None:
    """`gridloom resume` over edited code exits 1 naming the column and what to do;
    `--accept-code-change` resumes (on `resume` and on `create --resume`); the flag without
    --resume is a usage error (exit 2)."""
    runner = CliRunner()
    project.create(10)
    project.write("v1", comment="  # only a comment")
    refused = runner.invoke(cli, ["resume", str(project.out), "-n", "15", "--json"])
    assert refused.exit_code == 1, refused.output
    error = json.loads(refused.output)
    assert error["error"]["type"] == "StorageError"
    assert "column 'tag'" in error["error"]["message"]
    done = runner.invoke(cli, ["resume", str(project.out), "-n", "15", "--accept-code-change"])
    assert done.exit_code == 0, done.output

    project.write("v3")
    args = ["create", str(project.config), "-n", "20", "-o", str(project.out)]
    usage = runner.invoke(cli, [*args, "--accept-code-change"])
    assert usage.exit_code == 2
    assert "--accept-code-change goes with --resume" in usage.output
    resumed = runner.invoke(cli, [*args, "--resume", "--accept-code-change"])
    assert resumed.exit_code == 0, resumed.output
    changes = json.loads((project.out / "metadata.json").read_text())["code_changes"]
    assert [c["rows_before"] for c in changes] == [10, 15]


def test_accepting_a_code_change_needs_a_resume(project: Project) -> None:
    """accept_code_change is for a resume: with a new run it is refused (nothing to accept)."""
    with pytest.raises(ValueError, match="accept_code_change is for a resumed run"):
        project.create(10, accept_code_change=True)


def test_the_code_stays_out_of_the_config_hash(project: Project) -> None:
    """The config's hash, its dump and validate are about the config: an edit of the code
    changes none of them."""
    cfg = load_config(project.config)
    before = (config_hash(cfg), dump_config(cfg, None, strict=False))
    checked = CliRunner().invoke(cli, ["validate", str(project.config), "--json"]).output
    project.write("v2")
    cfg = load_config(project.config)
    assert (config_hash(cfg), dump_config(cfg, None, strict=False)) == before
    again = CliRunner().invoke(cli, ["validate", str(project.config), "--json"]).output
    assert again == checked
