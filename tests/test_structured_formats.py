"""Structured columns in three formats (JSON, YAML, XML): runs over real sockets against the
simulated endpoint (OpenAI and Anthropic provider types), with and without invalid answers to
correct, config errors, the builder and the config hash (parsing: test_structured_parsing)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

import gridloom as gl
from gridloom.config import SimulatedModel, SimulationConfig, structure_pipeline
from gridloom.generators._structured_formats import AnswerFormat, Format
from gridloom.simulated import serve_simulated

RECORD = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2024},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "draft": {"type": "boolean"},
        "score": {"type": ["number", "null"]},
        "kind": {"enum": ["a", "b", 3]},
    },
    "required": ["title", "year", "tags", "draft", "score", "kind"],
    "additionalProperties": False,
}
XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="answer">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="count" type="xs:integer"/>
        <xs:element name="word" type="xs:string" maxOccurs="unbounded"/>
        <xs:element name="ratio" type="xs:decimal"/>
      </xs:sequence>
      <xs:attribute name="id" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>"""
FORMATS: tuple[Format, ...] = ("json", "yaml", "xml")
ROWS = 12


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")


def pipeline(
    provider: dict[str, Any],
    *,
    corrections: int = 2,
    xsd: bool = False,
    run: dict[str, Any] | None = None,
) -> gl.PipelineConfig:
    """A column per format (and one XSD column), plus a text column reading each one."""
    columns: list[dict[str, Any]] = [
        {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}}
    ]
    for fmt in FORMATS:
        spec = {
            "model": "m",
            "prompt": "A record about {{ topic }}.",
            "format": fmt,
            "schema": RECORD,
            "max_correction_attempts": corrections,
            "keep_raw": True,
        }
        columns.append({"name": f"as_{fmt}", "llm_structured": spec})
    if xsd:
        spec = {"model": "m", "prompt": "Counts of {{ topic }}.", "format": "xml", "xsd": XSD}
        columns.append({"name": "by_xsd", "llm_structured": spec})
    prompt = "{{ as_json.title }} {{ as_yaml.year }} {{ as_xml.tags[0] }}"
    columns.append({"name": "reads", "expression": {"template": prompt}})
    return structure_pipeline(
        {
            "providers": [provider],
            "models": [{"alias": "m", "provider": provider["name"], "model": "sim-model"}],
            "columns": columns,
            "run": {"seed": 11, "row_group_size": ROWS, **(run or {})},
        }
    )


def simulated(invalid_rate: float = 0.0) -> dict[str, Any]:
    """The built-in simulated endpoint, served over a socket."""
    behaviour = {"invalid_output_rate": invalid_rate}
    return {"name": "sim", "type": "simulated", "simulation": {"seed": 4, "default": behaviour}}


def check_rows(rows: list[dict[str, Any]]) -> None:
    """Each format's cell holds a value valid for the schema, parsed back from its raw text."""
    for row in rows:
        for fmt in FORMATS:
            value = json.loads(row[f"as_{fmt}"])
            jsonschema.validate(value, RECORD)
            assert AnswerFormat(fmt, RECORD).parse(row[f"as_{fmt}__raw"]) == value
        parts = [
            json.loads(row["as_json"])["title"],
            str(json.loads(row["as_yaml"])["year"]),
            json.loads(row["as_xml"])["tags"][0],
        ]
        assert row["reads"] == " ".join(parts)


# ---------------------------------------------------------------------- end to end


async def test_each_format_is_valid_on_the_first_try() -> None:
    """Against the simulated endpoint over a socket, JSON, YAML and XML columns (and an XSD
    column) answer every row on the first request, and templates downstream read the parsed
    values."""
    result = await gl.apreview(pipeline(simulated(), xsd=True), ROWS)
    assert result.drop_reasons == {}
    assert result.num_rows == ROWS
    rows = result.table.to_pylist()
    check_rows(rows)
    assert result.summary["models"]["m"]["requests"] == ROWS * 4
    for row in rows:
        value = json.loads(row["by_xsd"])
        assert set(value) == {"@id", "count", "word", "ratio"}
        assert isinstance(value["count"], int)
        assert isinstance(value["ratio"], float)
        assert isinstance(value["word"], list)
    assert rows[0]["as_yaml__raw"].startswith("```yaml\n")
    assert rows[0]["as_xml__raw"].startswith("```xml\n<answer>")


async def test_invalid_answers_are_corrected_in_follow_up_turns() -> None:
    """With 40 % invalid answers and two corrections allowed, invalid answers are sent back
    (more requests than cells) and nearly every row ends valid; a row dropped names the
    column and the last problem."""
    result = await gl.apreview(pipeline(simulated(0.4)), ROWS)
    cells = ROWS * 3
    requests = result.summary["models"]["m"]["requests"]
    assert requests > cells
    assert result.num_rows + result.num_dropped == ROWS
    assert result.num_rows >= ROWS - 3
    check_rows(result.table.to_pylist())
    for dropped in result.dropped.to_pylist():
        assert "no valid answer after 2 correction attempt(s)" in dropped["message"]


async def test_without_corrections_invalid_answers_drop_their_rows() -> None:
    """With every answer invalid and no correction allowed, every row is dropped with
    InvalidOutput from a structured column and the parse or schema problem as its reason."""
    # The column health check would stop the run after the first failures: off here.
    unwatched = {"generator_first_rows": 0, "generator_error_rate": None}
    config = pipeline(simulated(1.0), corrections=0, run=unwatched)
    result = await gl.apreview(config, ROWS)
    assert result.status == "incomplete"
    assert result.num_rows == 0
    assert result.num_dropped == ROWS
    reasons = result.drop_reasons
    assert set(reasons) <= {"as_json", "as_yaml", "as_xml"}
    assert sum(counts["InvalidOutput"] for counts in reasons.values()) == ROWS
    messages = [d["message"] for d in result.dropped.to_pylist()]
    assert all(
        "no valid answer after 0 correction attempt(s); last problem:" in m for m in messages
    )


@pytest.mark.parametrize("invalid_rate", [0.0, 0.3])
async def test_each_format_with_the_anthropic_provider_type(invalid_rate: float) -> None:
    """With an Anthropic provider, JSON goes through a forced tool and YAML/XML through the
    prompt; every format yields valid values (correcting invalid ones), and only the Messages
    API is called."""
    model = SimulatedModel(invalid_output_rate=invalid_rate)
    async with serve_simulated(SimulationConfig(seed=2, default=model)) as server:
        provider = {
            "name": "claude",
            "type": "anthropic",
            "endpoint": server.url,
            "api_key_env": "GRIDLOOM_TEST_KEY",
        }
        result = await gl.apreview(pipeline(provider, corrections=3, xsd=True), ROWS)
        timeline = server.app.timeline()
    assert {entry.path for entry in timeline} == {"/v1/messages"}
    invalid = sum(entry.outcome == "invalid_output" for entry in timeline)
    assert (invalid > 0) == (invalid_rate > 0)
    assert result.num_rows + result.num_dropped == ROWS
    assert result.num_rows >= ROWS - 1
    check_rows(result.table.to_pylist())


# ---------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"format": "toml", "schema": RECORD}, "format", "must be one of"),
        ({"format": "json", "xsd": XSD}, "xsd", "xsd is for format xml only"),
        ({"format": "yaml", "schema": {"type": 3}}, "schema", "not a valid JSON Schema"),
        ({"format": "xml", "xsd": "<notaschema/>"}, "xsd", "not a valid XML Schema"),
        ({"format": "xml", "schema": RECORD, "xsd": XSD}, "xsd", "not both"),
        ({"format": "xml"}, "xsd", "give schema"),
        (
            {"format": "xml", "schema": {"type": "object", "properties": {"a b": {}}}},
            "format",
            "cannot be an XML element's name",
        ),
    ],
)
def test_bad_format_settings_fail_at_load(spec: dict[str, Any], field: str, message: str) -> None:
    """A bad format, an XSD where it does not apply, an invalid JSON Schema or XSD, both or
    neither schema, or a property XML cannot name fail when the config is loaded, in one line
    naming the column and the field."""
    columns = [{"name": "c", "llm_structured": {"model": "m", "prompt": "p", **spec}}]
    with pytest.raises(gl.ConfigError, match=message) as info:
        structure_pipeline(
            {
                "providers": [{"name": "sim", "type": "simulated"}],
                "models": [{"alias": "m", "provider": "sim", "model": "x"}],
                "columns": columns,
            }
        )
    assert info.value.column == "c"
    assert info.value.field == f"llm_structured.{field}"
    assert "\n" not in str(info.value)


def test_the_builder_takes_the_format_fields() -> None:
    """The builder's llm_structured method accepts format, xsd and keep_raw, and keep_raw
    adds the raw side column."""
    config = (
        gl.PipelineBuilder()
        .provider("sim", type="simulated")
        .model("m", provider="sim", model="x")
        .category("topic", ["a"])
        .llm_structured("c", "m", "About {{ topic }}", format="xml", xsd=XSD, keep_raw=True)
        .build()
    )
    column = config.columns[-1]
    assert (column.format, column.xsd, column.keep_raw) == ("xml", XSD, True)  # type: ignore[attr-defined]
    assert column.output_names() == ("c", "c__raw")


def test_the_format_counts_in_the_config_hash_only_when_set() -> None:
    """A JSON column hashes as before the format fields existed (they are left out at their
    defaults), while YAML, an XSD or keep_raw change the hash and survive a round trip."""
    from gridloom.config import config_hash, unstructure_pipeline

    def config(**extra: Any) -> gl.PipelineConfig:
        spec = {"model": "m", "prompt": "p", "schema": RECORD, **extra}
        return structure_pipeline(
            {
                "providers": [{"name": "sim", "type": "simulated"}],
                "models": [{"alias": "m", "provider": "sim", "model": "x"}],
                "columns": [{"name": "c", "llm_structured": spec}],
            }
        )

    plain = unstructure_pipeline(config())
    assert not {"format", "xsd", "keep_raw"} & set(plain["columns"][0]["llm_structured"])
    hashes = {
        config_hash(config()),
        config_hash(config(format="yaml")),
        config_hash(config(keep_raw=True)),
        config_hash(config(format="json")),
    }
    assert len(hashes) == 3
    yaml_config = config(format="yaml", keep_raw=True)
    again = structure_pipeline(unstructure_pipeline(yaml_config))
    assert again.columns == yaml_config.columns


async def test_invalid_answers_do_not_depend_on_the_order_of_arrivals() -> None:
    """Which answers the simulated endpoint makes invalid depends on the seed and the request
    only: two runs of the same pipeline (many requests in flight) give the same rows and the
    same drops. The number of requests is not compared: when one format's cell drops a row,
    whether its sibling cells had already sent their requests depends on timing."""
    runs = [await gl.apreview(pipeline(simulated(0.5), corrections=1), ROWS) for _ in range(2)]
    first, second = runs
    assert first.table.equals(second.table)
    assert first.dropped.to_pylist() == second.dropped.to_pylist()
    assert first.num_dropped > 0
    requests = [run.summary["models"]["m"]["requests"] for run in runs]
    assert min(requests) > ROWS * 3


async def test_a_long_answer_is_parsed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An XML answer longer than the inline limit, and any YAML answer, is parsed in a worker
    thread; a short XML answer on the event loop."""
    import trio

    threaded: list[Any] = []
    run_sync = trio.to_thread.run_sync

    async def recording(function: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", recording)
    from gridloom.config import ModelConfig
    from gridloom.generators import LLMStructuredGenerator
    from gridloom.kinds.llm_structured import LLMStructuredColumn

    schema = {"type": "object", "properties": {"items": {"type": "array"}}}
    column = LLMStructuredColumn(name="c", model="m", prompt="p", schema=schema, format="xml")
    generator = LLMStructuredGenerator(
        column,
        ModelConfig(alias="m", provider="p", model="x"),
        schema=schema,
        max_corrections=0,
        answer_format="xml",
    )
    items = [f"entry number {i}" for i in range(400)]
    text = "<answer>" + "".join(f"<items>{item}</items>" for item in items) + "</answer>"
    assert len(text) > generator.format.inline
    assert await generator.parse("<answer><items>a</items></answer>") == {"items": ["a"]}
    assert threaded == []
    assert await generator.parse(text) == {"items": items}
    assert threaded == [generator.format.parse]
    yaml_generator = LLMStructuredGenerator(
        column, generator.model_config, schema=schema, max_corrections=0, answer_format="yaml"
    )
    assert await yaml_generator.parse("items: [a]") == {"items": ["a"]}
    assert threaded[-1] == yaml_generator.format.parse


async def test_raw_text_sits_beside_the_reasoning() -> None:
    """With keep_raw and with_reasoning, a structured column fills its value, its reasoning
    and its raw text columns."""
    spec = {
        "model": "m",
        "prompt": "A record about {{ topic }}.",
        "format": "yaml",
        "schema": RECORD,
        "keep_raw": True,
        "with_reasoning": True,
    }
    provider = {"name": "sim", "type": "simulated", "simulation": {"default": {"reasoning": True}}}
    config = structure_pipeline(
        {
            "providers": [provider],
            "models": [{"alias": "m", "provider": "sim", "model": "x"}],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers"]}},
                {"name": "rec", "llm_structured": spec},
            ],
        }
    )
    result = await gl.apreview(config, 3)
    assert result.table.column_names == ["topic", "rec", "rec__reasoning", "rec__raw"]
    for row in result.table.to_pylist():
        assert row["rec__reasoning"].startswith("The question is about")
        assert AnswerFormat("yaml", RECORD).parse(row["rec__raw"]) == json.loads(row["rec"])


def test_an_xsd_without_xmlschema_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the xmlschema package, an XSD column fails at load naming the xml extra."""
    import sys

    monkeypatch.setitem(sys.modules, "xmlschema", None)
    spec = {"model": "m", "prompt": "p", "format": "xml", "xsd": XSD}
    with pytest.raises(gl.ConfigError, match=r"pip install 'gridloom\[xml\]'") as info:
        structure_pipeline(
            {
                "providers": [{"name": "sim", "type": "simulated"}],
                "models": [{"alias": "m", "provider": "sim", "model": "x"}],
                "columns": [{"name": "c", "llm_structured": spec}],
            }
        )
    assert (info.value.column, info.value.field) == ("c", "llm_structured.xsd")
