"""A mistyped or misplaced key where a column's keys meet another part's.

A ``validate`` column's mapping holds the column's own fields (``target``, ``drop_invalid``,
``max_chars``) beside the validator's parameters; a typo of a column field was reported by the
validator's class, which knows only its own (``unknown key 'targt' (allowed: rules, ignore,
lint, batch, timeout)``), with no "did you mean" and nothing about the missing ``target``.
Every column also splits its keys between the column level (``name``, ``depends_on``...) and
its kind's mapping: a key on the wrong side, or a typo of one there, is now named as such.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.config import load_config
from gridloom.config._kind import COMMON_FIELDS
from gridloom.config._kinds import column_kinds
from gridloom.errors import ConfigError
from gridloom.kinds.validate import validator_kinds

COLUMN_OWN = ("target", "drop_invalid", "max_chars")
VALIDATORS = sorted(validator_kinds())


def _issues(columns: list[dict[str, Any]]) -> list[Any]:
    with pytest.raises(ConfigError) as caught:
        load_config({"columns": [{"name": "code", "expression": "x = 1"}, *columns]})
    return list(caught.value.issues)


def _dropped(name: str, index: int) -> str:
    """``name`` with one of its inner characters left out: a typo."""
    at = 1 + index % (len(name) - 2)
    return name[:at] + name[at + 1 :]


def test_the_review_examples() -> None:
    issues = _issues([{"name": "v", "validate": {"kind": "python", "targt": "code"}}])
    assert [(i.field, i.message) for i in issues] == [
        ("validate.targt", "unknown key 'targt'; did you mean 'target'?"),
        ("validate.target", "required field is missing"),
    ]
    issues = _issues(
        [{"name": "v", "validate": {"kind": "python", "target": "code", "drop_invald": True}}]
    )
    assert issues[0].message == "unknown key 'drop_invald'; did you mean 'drop_invalid'?"


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(VALIDATORS), field=st.sampled_from(COLUMN_OWN), index=st.integers(0))
def test_a_typo_of_a_column_field_is_suggested(kind: str, field: str, index: int) -> None:
    """Whatever the validator, a typo of one of the column's own fields suggests it."""
    typo = _dropped(field, index)
    mapping = {"kind": kind, "target": "code", typo: 1}
    if field == "target":
        del mapping["target"]
    issues = _issues([{"name": "v", "validate": mapping}])
    assert issues[0].field == f"validate.{typo}"
    assert issues[0].message == f"unknown key {typo!r}; did you mean {field!r}?"
    missing = [i for i in issues if i.message == "required field is missing"]
    assert [i.field for i in missing] == (["validate.target"] if field == "target" else [])


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(VALIDATORS), key=st.text("xyzq_", min_size=3, max_size=8))
def test_an_unknown_key_lists_both_sets(kind: str, key: str) -> None:
    """A key like no other lists the column's fields and the validator's."""
    issues = _issues([{"name": "v", "validate": {"kind": kind, "target": "code", key: 1}}])
    message = issues[0].message
    assert issues[0].field == f"validate.{key}"
    params = [a.name for a in attrs.fields(validator_kinds()[kind].config) if a.init]
    if "did you mean" not in message:
        allowed = message.partition("(allowed: ")[2].rstrip(")").split(", ")
        assert set(allowed) == {"kind", *COLUMN_OWN, *params}


@pytest.mark.parametrize("field", ["depends_on", "skip_when", "conditional_params"])
@pytest.mark.parametrize("kind", ["category", "validate"])
def test_a_typo_of_a_column_level_field_inside_the_kind(kind: str, field: str) -> None:
    """A typo of ``depends_on`` inside the kind's mapping says where it belongs."""
    typo = _dropped(field, 3)
    params: dict[str, Any] = {"values": ["a"]} if kind == "category" else {"kind": "regex"}
    if kind == "validate":
        params |= {"target": "code", "pattern": "x"}
    issues = _issues([{"name": "c", kind: {**params, typo: ["x"]}}])
    assert issues[0].field == f"{kind}.{typo}"
    assert issues[0].message == (
        f"unknown key {typo!r}; did you mean {field!r}? (it belongs at the column level,"
        f" beside {kind!r}, not inside it)"
    )


def _kind_params() -> list[tuple[str, str]]:
    found = []
    for name, kind in sorted(column_kinds().items()):
        for field in attrs.fields(kind.config):
            if field.name not in COMMON_FIELDS and field.init and len(field.name) >= 4:
                found.append((name, field.name))
    return found


KIND_PARAMS = _kind_params()


@pytest.mark.parametrize(("kind", "field"), KIND_PARAMS, ids=[f"{k}.{f}" for k, f in KIND_PARAMS])
def test_a_kind_parameter_beside_the_kind(kind: str, field: str) -> None:
    """Each kind's parameter written beside the kind's key is said to belong inside it."""
    issues = _issues([{"name": "c", kind: {}, field: 1}])
    assert issues[0].field == field
    assert issues[0].message == f"{field!r} belongs inside {kind!r}, not beside it"


@pytest.mark.parametrize(("kind", "field"), KIND_PARAMS, ids=[f"{k}.{f}" for k, f in KIND_PARAMS])
def test_a_typo_of_a_kind_parameter_beside_the_kind(kind: str, field: str) -> None:
    typo = field + "x"
    issues = _issues([{"name": "c", kind: {}, typo: 1}])
    assert issues[0].field == typo
    assert issues[0].message.startswith(f"unknown key {typo!r}; did you mean ")
    assert issues[0].message.endswith(f"(it belongs inside {kind!r}, not beside it)")
