"""Rejection sampling: ``validate_with`` on model columns, correction rounds, and their counts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.clients._types import ChatRequest, ChatResponse
from gridloom.config import PipelineConfig, SimulationConfig, config_hash, structure_pipeline
from gridloom.config._simulation import SimulatedModel
from gridloom.errors import ConfigError, GenerationError, InvalidOutput, ValidationFailed
from gridloom.generators import CellContext
from gridloom.generators._corrections import REJECTED, CorrectionLog
from gridloom.kinds.llm_text import LLMTextColumn, LLMTextGenerator
from gridloom.kinds.validate import ValidationFailed as ReExported
from gridloom.kinds.validate.regex import RegexCheck
from gridloom.progress import render_summary
from gridloom.simulated import serve_simulated
from gridloom.storage import ColumnCounts, CorrectionCounts
from gridloom.storage._metadata import counts_from_json, counts_to_json

#: Every call of :func:`half`, as (row id, valid), when a test collects them.
CALLS: list[tuple[int, bool]] = []

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def _passes(value: Any) -> bool:
    return hashlib.sha256(str(value).encode()).digest()[0] % 2 == 0


def half(value: Any, ctx: Any) -> Any:
    """A validator rejecting about half of all answers, by a hash of the text (stateless, so
    the same answer always gets the same verdict)."""
    ok = _passes(value)
    CALLS.append((ctx.row_id, ok))
    return ok, [] if ok else ["the checksum of the answer is odd; write it differently"]


def crash_on_row_3(value: Any, ctx: Any) -> bool:
    """A validator that crashes on row 3 only."""
    if ctx.row_id == 3:
        raise RuntimeError("validator bug")
    return True


def _pipeline(endpoint: dict[str, Any], columns: list[dict[str, Any]]) -> PipelineConfig:
    return structure_pipeline(
        {
            "providers": [endpoint],
            "models": [{"alias": "m", "provider": "ep", "model": "w", "max_parallel_requests": 4}],
            "columns": [
                {"name": "topic", "category": {"values": ["alpha", "beta"]}},
                {"name": "k", "uniform": {"low": 0, "high": 1_000_000, "convert_to": "int"}},
                *columns,
            ],
            "run": {"seed": 5, "row_group_size": 10, "allow_drops": 1.0},
        }
    )


def _text_column(**extra: Any) -> dict[str, Any]:
    check = {"kind": "callable", "function": "tests.test_corrections:half"}
    return {
        "name": "t",
        "llm_text": {
            "model": "m",
            "prompt": "On {{ topic }} #{{ k }}",
            "validate_with": [check],
            **extra,
        },
    }


def _expected(calls: list[tuple[int, bool]], limit: int) -> CorrectionCounts:
    """The counts implied by the validator's verdicts, row by row."""
    by_row: dict[int, list[bool]] = {}
    for row, ok in calls:
        by_row.setdefault(row, []).append(ok)
    first, corrected, rejected = 0, [0] * limit, 0
    for verdicts in by_row.values():
        assert verdicts.count(True) <= 1
        assert True not in verdicts or verdicts[-1]
        if not verdicts[-1]:
            rejected += 1
        elif len(verdicts) == 1:
            first += 1
        else:
            corrected[len(verdicts) - 2] += 1
    return CorrectionCounts(first_try=first, corrected=tuple(corrected), rejected=rejected)


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# --------------------------------------------------------------------------- over the wire


async def test_text_corrections_cost_one_request_each(tmp_path: Path, autojump_clock: Any) -> None:
    """Each follow-up is one request at the endpoint; the counts match the validator's own
    verdicts exactly; kept answers pass; rejected rows are dropped as ValidationFailed."""
    CALLS.clear()
    async with serve_simulated(SimulationConfig()) as server:
        config = _pipeline({"name": "ep", "endpoint": server.url}, [_text_column()])
        result = await gl.acreate(config, num_records=40, output_dir=tmp_path / "out")
        requests = server.app.statistics().models["w"].requests
    counts = result.corrections["t"]
    assert counts == _expected(CALLS, 2)
    assert requests == len(CALLS)
    assert requests == counts.first_try + 2 * counts.corrected[0] + 3 * counts.corrected[1] + 3 * (
        counts.rejected
    )
    assert counts.first_try
    assert all(counts.corrected)
    assert counts.rejected
    assert counts.first_try + sum(counts.corrected) + counts.rejected == 40
    assert result.num_dropped == counts.rejected
    assert result.drop_reasons == {"t": {"ValidationFailed": counts.rejected}}
    assert all(_passes(row["t"]) for row in result.table.to_pylist())
    assert result.columns["t"] == ColumnCounts(
        done=40 - counts.rejected, failed=counts.rejected, corrections=counts
    )
    assert result.columns["topic"].corrections is None
    assert "the checksum of the answer is odd" in result.drop_examples[0].message


async def test_structured_parse_corrections_are_counted(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """llm_structured's own parse/schema corrections are counted the same way, each one
    request: with half the answers broken, some rows pass at once, some after 1 or 2
    follow-ups, some are rejected (InvalidOutput)."""
    simulation = SimulationConfig(default=SimulatedModel(invalid_output_rate=0.5))
    async with serve_simulated(simulation) as server:
        config = _pipeline(
            {"name": "ep", "endpoint": server.url},
            [
                {
                    "name": "s",
                    "llm_structured": {
                        "model": "m",
                        "prompt": "A book, #{{ k }}",
                        "schema": SCHEMA,
                    },
                }
            ],
        )
        result = await gl.acreate(config, num_records=40, output_dir=tmp_path / "out")
        requests = server.app.statistics().models["w"].requests
    counts = result.corrections["s"]
    first, (one, two), rejected = counts.first_try, counts.corrected, counts.rejected
    assert first
    assert one
    assert two
    assert rejected
    assert first + one + two + rejected == 40
    assert requests == first + 2 * one + 3 * two + 3 * rejected
    assert result.drop_reasons == {"s": {"InvalidOutput": rejected}}


def test_counts_reach_metadata_summary_and_inspect(tmp_path: Path) -> None:
    """The counts are in metadata.json (per row group and in total), the summary table, and
    ``inspect`` (text, and JSON valid against its schema); a resumed run has the same counts
    and table as one made at once."""
    config = _pipeline(
        {"name": "ep", "type": "simulated"}, [_text_column(max_correction_attempts=3)]
    )
    out = tmp_path / "out"
    result = gl.create(config, num_records=30, output_dir=out)
    counts = result.corrections["t"]
    assert len(counts.corrected) == 3
    assert counts.first_try
    assert sum(counts.corrected)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"]["t"]["corrections"] == counts.as_dict()
    assert "corrections" not in meta["counts"]["topic"]
    total = CorrectionCounts()
    for group in meta["row_groups"].values():
        found = counts_from_json(group["counts"])["t"].corrections
        assert found is not None
        total += found
    assert total == counts
    assert result.summary["columns"]["t"]["corrections"] == counts.as_dict()
    table = render_summary(result.summary).splitlines()
    header = next(i for i, line in enumerate(table) if "checked answers" in line)
    assert "after 1 · 2 · 3" in table[header]
    histogram = " · ".join(map(str, counts.corrected))
    assert table[header + 1].split() == [
        "t",
        str(counts.first_try),
        str(sum(counts.corrected)),
        *histogram.split(),
        str(counts.rejected),
    ]

    doc = json.loads(_invoke("inspect", out, "--json").stdout)
    jsonschema.validate(doc, output_schema("inspect"))
    assert doc["columns"]["t"]["corrections"] == counts.as_dict()
    assert "checked answers" in _invoke("inspect", out).stdout

    whole = result
    grown_dir = tmp_path / "grown"
    gl.create(config, num_records=10, output_dir=grown_dir)
    grown = gl.create(config, num_records=30, output_dir=grown_dir, resume=True)
    assert grown.columns == whole.columns
    assert grown.table.equals(whole.table)
    assert render_summary({"columns": grown.summary["columns"]}) == render_summary(
        {"columns": whole.summary["columns"]}
    )


def test_a_validator_crash_fails_its_cell_only(tmp_path: Path) -> None:
    """A validator raising on one row drops that row (GenerationError naming the column and
    the validator); the others are kept."""
    check = {"kind": "callable", "function": "tests.test_corrections:crash_on_row_3"}
    config = _pipeline(
        {"name": "ep", "type": "simulated"},
        [{"name": "t", "llm_text": {"model": "m", "prompt": "x", "validate_with": [check]}}],
    )
    result = gl.create(config, num_records=10, output_dir=tmp_path / "out")
    assert result.num_rows == 9
    assert result.drop_reasons == {"t": {"GenerationError": 1}}
    message = result.drop_examples[0].message
    assert "validate_with[0] (callable) failed: RuntimeError: validator bug" in message


# --------------------------------------------------------------------------- config


def test_config_errors_name_the_column_and_field() -> None:
    """An unknown validator kind, a bad regex or a missing kind in validate_with fails at
    load, naming the column and ``<kind>.validate_with[i].<field>``."""
    cases = [
        ("llm_text", {"kind": "regx", "pattern": "a"}, "llm_text.validate_with[0].kind"),
        ("llm_code", {"kind": "regex", "pattern": "("}, "llm_code.validate_with[0].pattern"),
        ("llm_text", {"pattern": "a"}, "llm_text.validate_with[0].kind"),
    ]
    for kind, check, field in cases:
        with pytest.raises(ConfigError) as info:
            _pipeline(
                {"name": "ep", "type": "simulated"},
                [{"name": "c", kind: {"model": "m", "prompt": "p", "validate_with": [check]}}],
            )
        assert (info.value.column, info.value.field) == ("c", field)
    with pytest.raises(ConfigError) as info:
        _pipeline({"name": "ep", "type": "simulated"}, [_text_column(max_correction_attempts=-1)])
    assert info.value.field == "llm_text.max_correction_attempts"


def test_a_validator_that_cannot_be_built_fails_validation() -> None:
    """A callable validator whose function does not exist fails before any request, naming
    the validate_with entry."""
    check = {"kind": "callable", "function": "tests.test_corrections:nowhere"}
    config = _pipeline(
        {"name": "ep", "type": "simulated"},
        [{"name": "t", "llm_text": {"model": "m", "prompt": "x", "validate_with": [check]}}],
    )
    with pytest.raises(ConfigError) as info:
        gl.preview(config, num_records=2)
    assert info.value.column == "t"
    assert (info.value.field or "").startswith("llm_text.validate_with[0]")


def test_configs_without_the_new_fields_keep_their_hash() -> None:
    """Leaving validate_with out (or empty) and max_correction_attempts at its default keeps
    the hash; setting either changes it."""
    bare = {"name": "t", "llm_text": {"model": "m", "prompt": "p"}}
    empty = {"name": "t", "llm_text": {"model": "m", "prompt": "p", "validate_with": []}}
    hashes = [
        config_hash(_pipeline({"name": "ep", "type": "simulated"}, [column]))
        for column in (bare, empty, _text_column(), _text_column(max_correction_attempts=3))
    ]
    assert hashes[0] == hashes[1]
    assert len(set(hashes)) == 3


def test_the_builder_takes_mappings_or_validator_objects() -> None:
    """validate_with accepts mappings and ValidatorConfig objects alike."""
    by_mapping = (
        gl.PipelineBuilder(seed=1)
        .llm_text("t", "m", "p", validate_with=[{"kind": "regex", "pattern": "a.*"}])
        .provider("sim", type="simulated")
        .model("m", provider="sim", model="w")
        .build()
    )
    by_object = (
        gl.PipelineBuilder(seed=1)
        .llm_text("t", "m", "p", validate_with=[RegexCheck(pattern="a.*")])
        .provider("sim", type="simulated")
        .model("m", provider="sim", model="w")
        .build()
    )
    with pytest.raises(ConfigError) as info:
        gl.PipelineBuilder().llm_text("t", "m", "p", validate_with=[{"kind": "regex"}])
    assert (info.value.column, info.value.field) == ("t", "llm_text.validate_with[0].pattern")
    assert by_mapping.columns == by_object.columns
    assert by_object.columns[0].validate_with == (RegexCheck(pattern="a.*"),)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the conversation


class _Handle:
    """A model handle answering from a list, keeping every request."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, **_options: Any) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(text=self.answers[len(self.requests) - 1])


def _ctx(handle: Any = None) -> CellContext:
    return CellContext(row={}, row_id=7, column="t", seed=0, models={"m": handle})


def _generator(max_corrections: int) -> LLMTextGenerator:
    from gridloom.config import ModelConfig

    column = LLMTextColumn(name="t", model="m", prompt="Say a word")
    generator = LLMTextGenerator(column, ModelConfig(alias="m", provider="ep", model="w"))

    async def starts_with_a(value: Any, ctx: CellContext) -> list[str]:
        return [] if str(value).startswith("a") else [f"regex: {value!r} must start with a"]

    generator.check_answers([starts_with_a], max_corrections)
    return generator


async def test_a_follow_up_quotes_the_messages_after_the_conversation() -> None:
    """The follow-up request is the conversation so far, the rejected answer as the
    assistant's turn and a user turn quoting the validators' messages; the round is logged."""
    handle = _Handle(["bee", "apple"])
    generator = _generator(2)
    assert await generator.agenerate(_ctx(handle)) == "apple"
    first, second = handle.requests
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]
    assert second.messages[:1] == first.messages
    assert second.messages[1].content == "bee"
    assert "regex: 'bee' must start with a" in second.messages[2].content
    assert generator.corrections is not None
    assert generator.corrections.take(0, 10) == {7: 1}


async def test_out_of_attempts_drops_with_the_last_messages() -> None:
    """After max_correction_attempts follow-ups the cell fails with ValidationFailed quoting
    the last messages, and the log says rejected."""
    handle = _Handle(["bee", "cat", "dog"])
    generator = _generator(2)
    with pytest.raises(ValidationFailed, match="'dog' must start with a"):
        await generator.agenerate(_ctx(handle))
    assert len(handle.requests) == 3
    assert generator.corrections is not None
    assert generator.corrections.take(0, 10) == {7: REJECTED}
    assert ReExported is ValidationFailed
    assert issubclass(ValidationFailed, GenerationError)
    assert not issubclass(ValidationFailed, InvalidOutput)


def test_counts_add_and_round_trip() -> None:
    """Correction counts add bucket by bucket (histograms of different lengths too) and
    survive metadata.json's form; counts without corrections read as None."""
    a = CorrectionCounts(first_try=3, corrected=(1, 2), rejected=1)
    b = CorrectionCounts(first_try=1, corrected=(0, 1, 4), rejected=0)
    assert a + b == CorrectionCounts(first_try=4, corrected=(1, 3, 4), rejected=1)
    counts = {"t": ColumnCounts(done=6, failed=1, corrections=a), "u": ColumnCounts(done=2)}
    assert counts_from_json(json.loads(json.dumps(counts_to_json(counts)))) == counts
    assert ColumnCounts(done=1) + ColumnCounts(done=1, corrections=a) == ColumnCounts(
        done=2, corrections=a
    )
    log = CorrectionLog(2)
    for row in range(25):
        log.record(row, row % 3)
    assert log.take(10, 10) == {r: r % 3 for r in range(10, 20)}
    assert log.take(0, 100) == {r: r % 3 for r in [*range(10), *range(20, 25)]}


def test_the_config_schema_describes_validate_with_entries() -> None:
    """The config's JSON Schema takes ``{kind, **parameters}`` entries and refuses an unknown
    kind or a parameter of another validator."""
    from gridloom.config._schema import config_json_schema

    schema = config_json_schema()

    def doc(check: dict[str, Any]) -> dict[str, Any]:
        column = {"model": "m", "prompt": "p", "validate_with": [check]}
        return {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [{"alias": "m", "provider": "sim", "model": "w"}],
            "columns": [{"name": "t", "llm_code": column}],
        }

    jsonschema.validate(doc({"kind": "python", "rules": ["F"]}), schema)
    jsonschema.validate(doc({"kind": "regex", "pattern": "a", "match": "search"}), schema)
    for bad in ({"kind": "regx", "pattern": "a"}, {"kind": "regex", "rules": ["F"]}, {}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc(bad), schema)


#: The values :func:`record` was called with.
SEEN: list[Any] = []


def record(value: Any, ctx: Any) -> bool:
    """A validator that accepts everything, keeping what it saw."""
    SEEN.append(value)
    return True


def test_validators_see_the_cell_value() -> None:
    """llm_code's validators get the extracted code (what the cell holds), llm_structured's
    the parsed, schema-valid value; every answer passing at once counts as first try."""
    SEEN.clear()
    check = {"kind": "callable", "function": "tests.test_corrections:record"}
    config = _pipeline(
        {"name": "ep", "type": "simulated"},
        [
            {
                "name": "c",
                "llm_code": {"model": "m", "prompt": "Code #{{ k }}", "validate_with": [check]},
            },
            {
                "name": "s",
                "llm_structured": {
                    "model": "m",
                    "prompt": "A book #{{ k }}",
                    "schema": SCHEMA,
                    "validate_with": [check],
                },
            },
        ],
    )
    result = gl.preview(config, num_records=4)
    codes = result.table.column("c").to_pylist()
    assert sorted(v for v in SEEN if isinstance(v, str)) == sorted(codes)
    assert not any("```" in code for code in codes)
    books = [v for v in SEEN if not isinstance(v, str)]
    assert len(books) == 4
    assert all(isinstance(b, dict) and isinstance(b["year"], int) for b in books)
    assert result.corrections["c"] == CorrectionCounts(first_try=4, corrected=(0, 0))
    assert result.corrections["s"] == CorrectionCounts(first_try=4, corrected=(0, 0))
