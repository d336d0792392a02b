"""The command line on a run at a URI (a real S3 protocol server on 127.0.0.1): create,
inspect, export, plot and resume take ``s3://...`` as they take a folder, and never print
the credentials a URI may carry."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import gridloom as gl
from gridloom.cli import cli

PIPELINE = """\
providers: [{name: sim, type: simulated, simulation: {default: {latency: {median: 0.01}}}}]
models: [{alias: w, provider: sim, model: m, max_parallel_requests: 8}]
columns:
  - {name: topic, category: {values: [a, b, c]}}
  - {name: text, llm_text: {model: w, prompt: "About {{ topic }}"}}
run: {row_group_size: 10, seed: 5, progress: "off", trace: true}
"""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def uri(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    s3_server.set_env(monkeypatch)
    return s3_server.bucket("cli-runs") + f"/run-{secrets.token_hex(4)}"


def test_create_inspect_export_and_resume_at_a_uri(tmp_path: Path, uri: str) -> None:
    """A run written to s3:// is inspected, exported to a local file, and resumed to more
    rows, all through the URI; the data equals a local run's."""
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    created = invoke("create", config, "-n", "30", "-o", uri, "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["num_rows"] == 30
    shown = invoke("inspect", uri, "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert (doc["output_dir"], doc["status"]) == (uri, "complete")
    assert doc["rows_written"] == 30
    target = tmp_path / "data.parquet"
    exported = invoke("export", uri, "--format", "parquet", "-o", target)
    assert exported.exit_code == 0, exported.output
    local = gl.create(config, num_records=40, output_dir=tmp_path / "local")
    assert pq.read_table(target).equals(local.table.slice(0, 30))
    grown = invoke("resume", uri, "-n", "40", "--json")
    assert grown.exit_code == 0, grown.output
    assert gl.open_run(uri).table.equals(local.table)


def test_a_uri_run_exports_and_plots_only_to_a_local_target(uri: str, tmp_path: Path) -> None:
    """Export and plot of a run at a URI need a local target, and say so in one line; with
    one, the pictures are drawn from the run's trace fetched from the store."""
    pytest.importorskip("matplotlib")
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    assert invoke("create", config, "-n", "20", "-o", uri).exit_code == 0
    no_target = invoke("export", uri, "--format", "jsonl")
    assert no_target.exit_code == 2
    assert "pass -o PATH" in no_target.output
    no_dest = invoke("plot", uri)
    assert no_dest.exit_code == 2
    assert "pass --dest" in no_dest.output
    drawn = invoke("plot", uri, "--dest", tmp_path / "pics", "--json")
    assert drawn.exit_code == 0, drawn.output
    assert {Path(f).name for f in json.loads(drawn.stdout)["files"]} >= {"columns.png"}


def test_credentials_in_a_uri_never_show(tmp_path: Path, uri: str, s3_server: Any) -> None:
    """Keys written into the URI are used but never printed: not in the summary, the
    messages, the saved metadata or the resume hint."""
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    secret = "s3cr3t-" + secrets.token_hex(6)
    bucket_path = uri.removeprefix("s3://")
    keyed = f"s3://gridloom-test-key:{secret}@{bucket_path}?endpoint_override={s3_server.url}"
    created = invoke("create", config, "-n", "20", "-o", keyed)
    assert created.exit_code == 0, created.output
    again = invoke("create", config, "-n", "20", "-o", keyed)
    assert again.exit_code == 3
    for result in (created, again, invoke("inspect", keyed, "--json")):
        assert secret not in result.output
    assert secret not in json.dumps(gl.storage.read_run_metadata(uri))


def test_wrong_credentials_fail_before_any_request(
    tmp_path: Path, uri: str, s3_server: Any
) -> None:
    """A store refusing the keys fails the run in one line before a model is asked."""
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE)
    with s3_server.checking_credentials():
        result = invoke("create", config, "-n", "20", "-o", uri, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "access denied" in error["message"]
    assert "\n" not in error["message"]
