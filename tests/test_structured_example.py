"""examples/structured_outputs.yaml end to end: JSON, YAML and XML answers with rejection
sampling over real sockets against the simulated endpoint, reshaped into chat records and
exported."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq
import yaml
from click.testing import CliRunner
from defusedxml import ElementTree

import gridloom as gl
from gridloom.cli import cli
from gridloom.generators._xml_json import xml_to_json
from gridloom.progress import render_summary

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "structured_outputs.yaml"
#: The structured column answering each format.
COLUMNS = {"json": "invoice", "yaml": "service_config", "xml": "book_record"}
ROWS = 60


def _specs() -> dict[str, dict[str, Any]]:
    """Each format's ``llm_structured`` parameters, as the example's YAML declares them."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    by_name = {column["name"]: column for column in doc["columns"]}
    return {fmt: by_name[name]["llm_structured"] for fmt, name in COLUMNS.items()}


def _parse(text: str, fmt: str, schema: dict[str, Any]) -> Any:
    """The value of an assistant turn, read back with a plain parser for its format."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "yaml":
        return yaml.safe_load(text)
    root = ElementTree.fromstring(text)
    assert root.tag == "answer"
    return xml_to_json(root, schema)


async def test_the_structured_outputs_example_runs_end_to_end(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """The example makes ROWS chat records: every format is answered, invalid answers are
    corrected (and rows rejected after two corrections replaced), only the chosen format's
    column sends requests, and each record's assistant turn parses back, in its format, to a
    value valid for its schema and its business rules; the JSONL export has one object per
    record."""
    out = tmp_path / "so"
    result = await gl.acreate(EXAMPLE, num_records=ROWS, output_dir=out)
    assert result.status == "complete"
    assert result.num_rows == ROWS
    assert result.num_dropped > 0
    assert render_summary(result.summary).endswith(
        f"every row asked for was written ({result.num_dropped} dropped rows replaced,"
        " run.fill_to_target)"
    )

    # Counts: each format's column corrected some answers; rejected cells are the dropped rows.
    table = pq.read_table(out / "data")
    assert table.column_names == ["messages", "format", "subject"]
    records = table.to_pylist()
    per_format = Counter(record["format"] for record in records)
    requests = 0
    for fmt, name in COLUMNS.items():
        counts = result.corrections[name]
        assert per_format[fmt] > 0
        assert counts.first_try > 0
        assert sum(counts.corrected) > 0
        assert counts.first_try + sum(counts.corrected) == per_format[fmt]
        assert sum(result.drop_reasons.get(name, {}).values()) == counts.rejected
        requests += counts.first_try + 3 * counts.rejected
        requests += sum(k * n for k, n in enumerate(counts.corrected, 2))
    assert sum(per_format.values()) == ROWS
    rejected = sum(result.corrections[name].rejected for name in COLUMNS.values())
    assert result.num_dropped == rejected
    assert set(result.drop_reasons) <= set(COLUMNS.values())
    # One request per answer: skipped cells (the other formats' columns) cost nothing.
    assert result.summary["models"]["writer"]["requests"] == requests

    # Records: system, user, assistant; the assistant's text is a valid document.
    specs = _specs()
    for record in records:
        fmt = record["format"]
        spec = specs[fmt]
        roles = [message["role"] for message in record["messages"]]
        assert roles == ["system", "user", "assistant"]
        system, user, assistant = (message["content"] for message in record["messages"])
        assert fmt.upper() in system
        assert record["subject"] in user
        assert "\n" not in user
        assert "```" not in assistant
        value = _parse(assistant, fmt, spec["schema"])
        jsonschema.validate(value, spec["schema"])
        for check in spec.get("validate_with", []):
            jsonschema.validate(value, check["schema"])

    # `inspect --json` reports the same counts.
    shown = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    columns = json.loads(shown.stdout)["columns"]
    for name in COLUMNS.values():
        counts = result.corrections[name]
        assert columns[name]["corrections"] == {
            "first_try": counts.first_try,
            "corrected": list(counts.corrected),
            "rejected": counts.rejected,
        }

    # The export: one JSON object per line, the same records.
    exported = CliRunner().invoke(cli, ["export", str(out), "--format", "jsonl"])
    assert exported.exit_code == 0, exported.output
    lines = (out / "export" / "data.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
