"""Reading batch result lines: whatever a provider's results file holds, each line becomes an
item outcome or is skipped, never an error of another kind."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gridloom.clients._batch_wire import BatchWire, ItemOutcome, _lines

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = st.sampled_from(["custom_id", "response", "error", "result", "status_code", "type"])
LINES = st.dictionaries(KEYS | st.text(max_size=6), JSON, max_size=5)


@given(line=LINES)
def test_any_openai_line_is_an_outcome_or_skipped(line: dict[str, Any]) -> None:
    """An OpenAI result line is an outcome for its custom_id (a string), else skipped."""
    outcome = BatchWire._openai_line(line)
    if isinstance(line.get("custom_id"), str):
        assert isinstance(outcome, ItemOutcome)
        assert outcome.custom_id == line["custom_id"]
    else:
        assert outcome is None


@given(line=LINES)
def test_any_anthropic_line_is_an_outcome_or_skipped(line: dict[str, Any]) -> None:
    """An Anthropic result line with a custom_id and a result object is an outcome."""
    outcome = BatchWire._anthropic_line(line)
    wellformed = isinstance(line.get("custom_id"), str) and isinstance(line.get("result"), dict)
    assert (outcome is not None) == wellformed


@given(data=st.binary(max_size=400))
def test_any_bytes_give_only_json_objects(data: bytes) -> None:
    """A results body of any bytes yields its JSON-object lines only."""
    assert all(isinstance(line, dict) for line in _lines(data))


def test_anthropic_error_types_map_to_statuses() -> None:
    """An errored Anthropic item keeps the HTTP status its error type stands for."""
    line = {
        "custom_id": "a",
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": "invalid_request_error"}},
        },
    }
    outcome = BatchWire._anthropic_line(line)
    assert outcome is not None
    assert outcome.status == 400
