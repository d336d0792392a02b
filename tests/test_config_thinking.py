"""Anthropic's extended ``thinking`` in a config: what the Messages API would refuse fails
when the config is built, naming the field; what it may accept (an unknown type, a budget
above ``max_tokens`` with interleaved thinking) loads."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline


def thinking_config(
    column: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    provider_extra: dict[str, Any] | None = None,
    provider_type: str = "anthropic",
) -> dict[str, Any]:
    """A one-column pipeline on an Anthropic provider whose ``extra_body`` enables thinking
    (budget 1024) unless ``provider_extra`` says otherwise; the model sends max_tokens 2048
    unless ``model`` says otherwise."""
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    provider: dict[str, Any] = {
        "name": "claude",
        "type": provider_type,
        "extra_body": thinking if provider_extra is None else provider_extra,
    }
    if provider_type != "simulated":
        provider["endpoint"] = "http://127.0.0.1:9/v1"
    return {
        "providers": [provider],
        "models": [
            {"alias": "m", "provider": "claude", "model": "x"}
            | ({"max_tokens": 2048} if model is None else model)
        ],
        "columns": [{"name": "note", "llm_text": {"model": "m", "prompt": "Hi."} | (column or {})}],
    }


@pytest.mark.parametrize(
    ("column", "model", "provider_extra", "field", "message"),
    [
        ({"temperature": 0.7}, None, None, "temperature", "allows only temperature 1; got the"),
        (None, {"max_tokens": 2048, "temperature": 0}, None, "temperature", "of model 'm'"),
        (
            None,
            {"max_tokens": 2048, "temperature": {"uniform": [0.5, 1.0]}},
            None,
            "temperature",
            "{uniform: [0.5, 1.0]}",
        ),
        ({"top_p": 0.9}, None, None, "top_p", "top_p from 0.95 to 1"),
        ({"extra_body": {"top_k": 5}}, None, None, "extra_body.top_k", "refuses top_k"),
        ({}, {}, None, "max_tokens", "the 1024 sent by default"),
        ({"max_tokens": 1024}, None, None, "max_tokens", "above budget_tokens (1024)"),
        (
            {"max_tokens": {"values": [800, 4000]}},
            None,
            None,
            "max_tokens",
            "above budget_tokens",
        ),
        (
            {"extra_body": {"thinking": {"type": "enabled", "budget_tokens": 512}}},
            None,
            {},
            "extra_body.thinking",
            "at least 1024",
        ),
        (
            {"temperature": 0.3},
            None,
            {"thinking": {"type": "adaptive"}},
            "temperature",
            "only temperature 1",
        ),
    ],
)
def test_a_config_anthropic_would_refuse_fails_at_load(
    column: dict[str, Any] | None,
    model: dict[str, Any] | None,
    provider_extra: dict[str, Any] | None,
    field: str,
    message: str,
) -> None:
    """Thinking in ``extra_body`` (the provider's or the column's) with a parameter the
    Messages API refuses with it fails when the config is built, before any request, naming
    the column and the field."""
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline(thinking_config(column, model, provider_extra))
    text = str(info.value)
    assert f"column 'note', field 'llm_text.{field}'" in text
    assert message in text
    assert "thinking" in text


@given(
    temperature=st.none() | st.sampled_from([0.0, 0.5, 1.0, 1.5]) | st.floats(0, 2),
    top_p=st.none() | st.sampled_from([0.5, 0.95, 1.0]) | st.floats(0, 1),
    disabled=st.booleans(),
    provider_type=st.sampled_from(["anthropic", "openai", "simulated"]),
)
@settings(max_examples=200, deadline=None)
def test_sampling_with_thinking_is_checked_only_where_anthropic_thinks(
    temperature: float | None, top_p: float | None, disabled: bool, provider_type: str
) -> None:
    """A config fails exactly when Anthropic would refuse its requests: thinking on, on an
    Anthropic provider, with a temperature other than 1 or a top_p below 0.95."""
    column = {"temperature": temperature, "top_p": top_p}
    column = {key: value for key, value in column.items() if value is not None}
    thinking = {"type": "disabled"} if disabled else {"type": "enabled", "budget_tokens": 1024}
    config = thinking_config(column, None, {"thinking": thinking}, provider_type)
    refused = (
        provider_type == "anthropic"
        and not disabled
        and ((temperature is not None and temperature != 1) or (top_p is not None and top_p < 0.95))
    )
    if refused:
        with pytest.raises(gl.ConfigError, match="column 'note'"):
            structure_pipeline(config)
    else:
        structure_pipeline(config)


def test_the_default_max_tokens_is_the_clients() -> None:
    """The config check assumes the max_tokens the Anthropic client sends by default."""
    from gridloom.clients._types import ANTHROPIC_DEFAULT_MAX_TOKENS
    from gridloom.config._thinking import DEFAULT_MAX_TOKENS

    assert DEFAULT_MAX_TOKENS == ANTHROPIC_DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("provider_extra", "column", "field", "message"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 0.2},
            {},
            "providers[0].extra_body.temperature",
            "temperature 1; got the extra_body.temperature of provider 'claude' 0.2",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}},
            {"extra_body": {"top_p": 0.5}},
            "llm_text.extra_body.top_p",
            "top_p from 0.95 to 1; got the column's extra_body.top_p 0.5",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            {"max_tokens": 8000, "extra_body": {"max_tokens": 2000}},
            "llm_text.extra_body.max_tokens",
            "above budget_tokens (2048), which covers the thinking and the answer; got the"
            " column's extra_body.max_tokens 2000",
        ),
    ],
)
def test_values_in_extra_body_are_the_ones_checked(
    provider_extra: dict[str, Any], column: dict[str, Any], field: str, message: str
) -> None:
    """The client merges ``extra_body`` over the body, so a ``temperature``, ``top_p`` or
    ``max_tokens`` there is what Anthropic gets: the check refuses it, naming that field."""
    config = thinking_config(column, {"max_tokens": 4096}, provider_extra)
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline(config)
    assert f"column 'note', field '{field}'" in str(info.value)
    assert message in str(info.value)


def test_max_tokens_in_the_providers_extra_body_is_the_one_sent() -> None:
    """A provider whose ``extra_body`` sends ``max_tokens: 8000`` with a 2048 budget is
    accepted: the 1024 the client would send by default is replaced by it."""
    thinking = {"type": "enabled", "budget_tokens": 2048}
    structure_pipeline(thinking_config({}, {}, {"thinking": thinking, "max_tokens": 8000}))


_PLACES = ("model", "column", "provider_extra", "column_extra")
_VALUES = {
    "max_tokens": st.sampled_from([500, 1024, 1025, 2000, 8000]),
    "temperature": st.sampled_from([0.2, 1.0, 1]),
    "top_p": st.sampled_from([0.5, 0.95, 1.0]),
}


@given(
    placed=st.fixed_dictionaries(
        {
            name: st.dictionaries(st.sampled_from(_PLACES), values, max_size=4)
            for name, values in _VALUES.items()
        }
    ),
    thinking_in_column=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_each_value_is_checked_where_the_client_takes_it(
    placed: dict[str, dict[str, Any]], thinking_in_column: bool
) -> None:
    """Wherever ``max_tokens``, ``temperature`` and ``top_p`` are set (the model, the column,
    the provider's or the column's ``extra_body``, several at once), the config fails exactly
    when the body the client sends (``{**fields, **provider extra_body, **column
    extra_body}``) breaks a thinking rule, naming the field the sent value comes from."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    provider_extra: dict[str, Any] = {} if thinking_in_column else {"thinking": thinking}
    column_extra: dict[str, Any] = {"thinking": thinking} if thinking_in_column else {}
    model: dict[str, Any] = {}
    column: dict[str, Any] = {}
    for name, places in placed.items():
        for place, value in places.items():
            {
                "model": model,
                "column": column,
                "provider_extra": provider_extra,
                "column_extra": column_extra,
            }[place][name] = value
    column["extra_body"] = column_extra
    # the oracle: the body as the client builds it, and where each value came from
    fields = {"max_tokens": 1024} | {
        name: column.get(name, model.get(name))
        for name in _VALUES
        if column.get(name, model.get(name)) is not None
    }
    sent = {**fields, **provider_extra, **column_extra}
    paths = {}
    for name in _VALUES:
        if name in column_extra:
            paths[name] = f"llm_text.extra_body.{name}"
        elif name in provider_extra:
            paths[name] = f"providers[0].extra_body.{name}"
        else:
            paths[name] = f"llm_text.{name}"
    broken = [
        name
        for name, bad in (
            ("max_tokens", sent["max_tokens"] <= 1024),
            ("temperature", sent.get("temperature", 1) != 1),
            ("top_p", not 0.95 <= sent.get("top_p", 1) <= 1),
        )
        if bad
    ]
    config = thinking_config(column, model, provider_extra)
    if not broken:
        structure_pipeline(config)
        return
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline(config)
    assert len(info.value.issues) == len(broken)
    for name in broken:
        assert f"column 'note', field '{paths[name]}'" in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"anthropic-beta": "interleaved-thinking-2025-05-14"},
        {"Anthropic-Beta": "files-api-2025-04-14,interleaved-thinking-2025-05-14"},
    ],
)
def test_interleaved_thinking_may_think_beyond_max_tokens(headers: dict[str, str]) -> None:
    """With the interleaved-thinking beta, Anthropic lets ``budget_tokens`` exceed
    ``max_tokens``: such a config loads; without the header it does not, and the other rules
    still hold with it."""
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 8000}}
    config = thinking_config({}, {"max_tokens": 4096}, thinking)
    with pytest.raises(gl.ConfigError, match="above budget_tokens"):
        structure_pipeline(config)
    config["providers"][0]["headers"] = headers
    structure_pipeline(config)
    config["columns"][0]["llm_text"]["temperature"] = 0.5
    with pytest.raises(gl.ConfigError, match="allows only temperature 1"):
        structure_pipeline(config)


def test_an_unknown_thinking_type_loads_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anthropic may add thinking types (a newer model takes one gridloom does not know): a
    config with one loads, warning once for the provider that sets it, however many columns
    use it and however often the config is built, and once for each column setting its
    own."""
    config = thinking_config(provider_extra={"thinking": {"type": "between_tools"}})
    config["providers"][0]["name"] = "future"
    config["models"][0]["provider"] = "future"
    columns = config["columns"]
    columns.append({"name": "second", "llm_text": {"model": "m", "prompt": "Hi."}})
    for name in ("own1", "own2"):
        extra = {"thinking": {"type": "interleaved_soon"}}
        columns.append({"name": name, "llm_text": {"model": "m", "prompt": "Hi."}})
        columns[-1]["llm_text"]["extra_body"] = extra
    with caplog.at_level(logging.WARNING, logger="gridloom.config"):
        structure_pipeline(config)
        structure_pipeline(config)
    told = [r.getMessage() for r in caplog.records if r.name == "gridloom.config"]
    assert len(told) == 3, told
    assert told[0].startswith("provider 'future': thinking type 'between_tools' is not one")
    assert {message.split(":")[0] for message in told[1:]} == {"column 'own1'", "column 'own2'"}


@pytest.mark.parametrize(
    ("thinking", "message"),
    [
        ({"type": 5}, "type must be a string"),
        ({"budget_tokens": 2048}, "type must be a string"),
        ({"type": "between_tools", "budget_tokens": "2048"}, "budget_tokens must be an integer"),
        ({"type": "adaptive", "budget_tokens": 2048.5}, "budget_tokens must be an integer"),
        ({"type": "enabled", "budget_tokens": True}, "budget_tokens must be an integer"),
    ],
)
def test_a_malformed_thinking_is_still_refused(thinking: dict[str, Any], message: str) -> None:
    """What no version of the API could take — a type that is no string, a budget that is no
    integer — fails at load, whatever the type."""
    with pytest.raises(gl.ConfigError, match=message):
        structure_pipeline(thinking_config(provider_extra={"thinking": thinking}))


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    ("column", "provider_extra"),
    [
        ({}, {"thinking": {"type": "enabled", "budget_tokens": HUGE}}),
        ({}, {"thinking": {"type": [HUGE]}}),
        ({}, {"thinking": HUGE}),
        ({"extra_body": {"top_k": HUGE}}, None),
        ({"extra_body": {"top_k": 10**2000}}, None),
        ({}, {"thinking": {"type": "enabled", "budget_tokens": -(10**2000)}}),
    ],
)
def test_a_refusal_shows_a_huge_value_cut_short(
    column: dict[str, Any], provider_extra: dict[str, Any] | None
) -> None:
    """A value of 100,000 characters (or digits) is shown cut short in the message."""
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline(thinking_config(column, None, provider_extra))
    assert len(str(info.value)) < 500, str(info.value)[:1000]


def test_a_warning_shows_a_huge_type_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown type of 100,000 characters loads, with a short warning."""
    config = thinking_config(provider_extra={"thinking": {"type": "y" + HUGE}})
    with caplog.at_level(logging.WARNING, logger="gridloom.config"):
        structure_pipeline(config)
    (told,) = [r.getMessage() for r in caplog.records if r.name == "gridloom.config"]
    assert "'yxxxxxx" in told
    assert len(told) < 500


@pytest.mark.parametrize(
    ("thinking", "message"),
    [
        ("on", "must be an object such as {type: enabled, budget_tokens: 2048}, got 'on'"),
        ({"type": None}, "type must be a string (enabled, disabled, adaptive), got None"),
        (
            {"type": "enabled"},
            "type enabled needs budget_tokens, an integer of at least 1024",
        ),
        ({"type": "enabled", "budget_tokens": 100}, "budget_tokens must be at least 1024, got 100"),
    ],
)
def test_a_malformed_provider_thinking_is_reported_once(thinking: Any, message: str) -> None:
    """A malformed ``thinking`` in a provider's ``extra_body`` is one problem, at the
    provider's field, however many columns use the provider."""
    config = thinking_config(provider_extra={"thinking": thinking})
    config["columns"] += [
        {"name": name, "llm_text": {"model": "m", "prompt": "Hi."}} for name in ("b", "c")
    ]
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline(config)
    assert [str(issue) for issue in info.value.issues] == [
        f"field 'providers[0].extra_body.thinking': {message}"
    ]
