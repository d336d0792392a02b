"""The ``person`` sampler: consistent fields, filters, locales, determinism and config errors."""

from __future__ import annotations

import collections
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from faker import Factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import (
    PipelineBuilder,
    load_config,
    structure_pipeline,
    unstructure_pipeline,
)
from gridloom.errors import ConfigError
from gridloom.generators import BatchContext
from gridloom.kinds.person import (
    FIELDS,
    PersonColumn,
    PersonSampler,
    ascii_name,
    years_between,
)

LOCALES = ["en_US", "de_DE", "fr_FR", "ja_JP", "ru_RU", "es_ES", "pt_BR", "zh_CN", "ko_KR"]

_person_providers: dict[str, Any] = {}


def _names(locale: str, sex: str) -> Any:
    """The locale's first names of ``sex`` (Faker's own list)."""
    if locale not in _person_providers:
        generator = Factory.create(locale)
        _person_providers[locale] = next(
            p for p in generator.providers if "person" in type(p).__module__
        )
    return getattr(_person_providers[locale], f"first_names_{sex}")


def _latin(locale: str, part: str, sex: str, name: str) -> set[str]:
    """The ASCII forms of ``name`` an email may use: the romanizations of the locale's
    (name, reading, romanization) pairs with that name, else its transliteration."""
    _names(locale, sex)
    provider = _person_providers[locale]
    pairs = getattr(provider, f"{part}_name_{sex}_pairs", None) or getattr(
        provider, f"{part}_name_pairs", None
    )
    if pairs:
        return {ascii_name(pair[-1]) for pair in pairs if pair[0] == name}
    return {ascii_name(name)}


def _pipeline(person: Any, run: dict[str, Any] | None = None, **more: Any) -> gl.PipelineConfig:
    columns: list[dict[str, Any]] = [{"name": "customer", "person": person}]
    columns += more.pop("columns", [])
    return structure_pipeline({"columns": columns, "run": {"seed": 5, **(run or {})}})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    row=st.integers(0, 10**9),
    locale=st.sampled_from(LOCALES),
    sex=st.sampled_from(["male", "female", "any"]),
    ages=st.lists(st.integers(0, 120), min_size=2, max_size=2).map(sorted),
    reference=st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
)
def test_fields_are_consistent(
    seed: int, row: int, locale: str, sex: Any, ages: list[int], reference: dt.date
) -> None:
    """The email is built from the name, the age is the birth date's age on the reference
    date and within age_range, and the first name is one of the locale's names of that sex."""
    config = PersonColumn(
        name="c",
        locale=locale,
        sex=sex,
        age_range=tuple(ages),
        reference_date=reference.isoformat(),
    )
    person = PersonSampler(config).person(seed, row)
    assert set(person) == set(FIELDS)
    assert ages[0] <= person["age"] <= ages[1]
    assert years_between(person["birth_date"], reference) == person["age"]
    assert person["sex"] in (("male", "female") if sex == "any" else (sex,))
    assert person["first_name"] in _names(locale, person["sex"])
    assert person["locale"] == locale
    local, _, domain = person["email"].partition("@")
    firsts = _latin(locale, "first", person["sex"], person["first_name"])
    lasts = _latin(locale, "last", person["sex"], person["last_name"])
    expected = {".".join(p for p in (f, la) if p) or "user" for f in firsts for la in lasts}
    assert local.rstrip("0123456789") in expected
    assert "." in domain
    assert person["email"].isascii()
    assert all(isinstance(person[k], str) for k in FIELDS if k not in ("age", "birth_date"))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), rows=st.lists(st.integers(0, 500), min_size=1, max_size=8))
def test_a_row_depends_only_on_seed_column_and_row(seed: int, rows: list[int]) -> None:
    """A batch's people are each row's own: the same whatever batch or group the row is in,
    and whichever other rows are live."""
    sampler = PersonSampler(PersonColumn(name="c", locale={"en_US": 1, "de_DE": 1}))
    ids = sorted(set(rows))
    ctx = BatchContext(
        row_ids=ids, columns={}, row_group=3, column="c", seed=seed, group_row_ids=range(501)
    )
    assert sampler.generate(ctx) == [sampler.person(seed, i) for i in ids]
    other = PersonSampler(PersonColumn(name="d", locale={"en_US": 1, "de_DE": 1}))
    assert [other.person(seed, i) for i in ids] != [sampler.person(seed, i) for i in ids]


async def test_same_table_across_concurrency_and_row_group_sizes(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Same seed → same people, whatever the row-group size and the row groups in flight
    (groups over 1,024 rows run in worker threads, several at once)."""
    person = {"locale": {"en_US": 2, "ja_JP": 1, "de_DE": 1}, "age_range": [30, 40]}
    tables = []
    for i, run in enumerate(
        [
            {"row_group_size": 7, "max_row_groups_in_flight": 1},
            {"row_group_size": 50, "max_row_groups_in_flight": 4},
            {"row_group_size": 1100, "max_row_groups_in_flight": 3},
        ]
    ):
        result = await gl.acreate(
            _pipeline(person, run), num_records=2300, output_dir=tmp_path / str(i)
        )
        tables.append(result.table)
    assert tables[0].num_rows == 2300
    assert tables[0].equals(tables[1])
    assert tables[0].equals(tables[2])
    people = tables[0].column("customer").to_pylist()
    assert len({(p["email"], p["birth_date"], p["phone"]) for p in people}) == 2300


async def test_templates_read_the_fields(autojump_clock: Any) -> None:
    """``{{ customer.first_name }}`` and friends render each row's own person downstream,
    and the column is stored as the declared struct."""
    config = _pipeline(
        "fr_FR",
        columns=[
            {
                "name": "card",
                "expression": "{{ customer.first_name }} {{ customer.last_name }}, "
                "{{ customer.age }} <{{ customer.email }}>",
            }
        ],
    )
    result = await gl.apreview(config, num_records=30)
    assert result.table.schema.field("customer").type == pa.struct(
        [pa.field(name, kind) for name, kind in FIELDS.items()]
    )
    for row in result.table.to_pylist():
        c = row["customer"]
        assert row["card"] == f"{c['first_name']} {c['last_name']}, {c['age']} <{c['email']}>"
        assert c["country_code"] == "FR"


async def test_weighted_locales_follow_their_weights(autojump_clock: Any) -> None:
    """A weighted mapping picks each row's locale in proportion; a zero weight never."""
    config = _pipeline({"locale": {"en_US": 3, "ja_JP": 1, "de_DE": 0}}, {"row_group_size": 500})
    result = await gl.apreview(config, num_records=2000)
    people = result.table.column("customer").to_pylist()
    counts = collections.Counter(p["locale"] for p in people)
    assert set(counts) == {"en_US", "ja_JP"}
    assert 1350 < counts["en_US"] < 1650
    codes = {p["locale"]: p["country_code"] for p in people}
    assert codes == {"en_US": "US", "ja_JP": "JP"}


def test_locale_forms_load_and_dump() -> None:
    """``person: ja_JP``, a list and a mapping all load, and dump back to load the same."""
    for person, weights in [
        ("ja_JP", {"ja_JP": 1.0}),
        ({"locale": ["en_US", "ko_KR"]}, {"en_US": 1.0, "ko_KR": 1.0}),
        ({"locale": {"en_US": 0.7, "ja_JP": 0.3}}, {"en_US": 0.7, "ja_JP": 0.3}),
    ]:
        config = _pipeline(person)
        column = config.columns[0]
        assert isinstance(column, PersonColumn)
        assert column.weighted_locales() == weights
        assert structure_pipeline(unstructure_pipeline(config)) == config


@pytest.mark.parametrize(
    ("person", "field", "message"),
    [
        ({"locale": "en_UX"}, "person.locale", "unknown locale 'en_UX'; did you mean 'en_US'?"),
        ({"locale": {"en_US": 1, "xx_YY": 1}}, "person.locale", "unknown locale 'xx_YY'"),
        ({"locale": {"en_US": -1}}, "person.locale", "locale weights must be >= 0"),
        ({"locale": {"en_US": 0}}, "person.locale", "not all zero"),
        ({"locale": []}, "person.locale", "at least one locale"),
        ({"age_range": [60, 20]}, "person.age_range", "0 <= min <= max <= 120"),
        ({"age_range": [-1, 20]}, "person.age_range", "0 <= min <= max <= 120"),
        ({"age_range": [20, 121]}, "person.age_range", "0 <= min <= max <= 120"),
        ({"age_range": [20]}, "person.age_range", "two whole numbers"),
        ({"sex": "other"}, "person.sex", "'other'"),
        ({"reference_date": "2025-02-30"}, "person.reference_date", "is not a date"),
    ],
)
def test_bad_config_fails_at_validate(person: dict[str, Any], field: str, message: str) -> None:
    """Unknown locales, bad weights, age ranges, sexes and dates fail before any run, naming
    the column and the field."""
    with pytest.raises(ConfigError) as info:
        gl.validate(_pipeline(person))
    assert info.value.column == "customer"
    assert info.value.field == field
    assert message in str(info.value)


def test_missing_faker_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Faker installed, validate says which extra to install."""
    monkeypatch.setitem(sys.modules, "faker.config", None)
    with pytest.raises(ConfigError, match=r"gridloom\[person\]") as info:
        gl.validate(_pipeline("en_US"))
    assert info.value.column == "customer"


def test_unknown_field_in_a_template_is_caught() -> None:
    """A template reading a field a person does not have fails validate with a suggestion."""
    config = _pipeline("en_US", columns=[{"name": "x", "expression": "{{ customer.first_nam }}"}])
    with pytest.raises(ConfigError, match="did you mean 'first_name'"):
        gl.validate(config)


async def test_builder_method(autojump_clock: Any) -> None:
    """``PipelineBuilder.person`` takes the locale positionally and the filters by keyword."""
    config = (
        PipelineBuilder(seed=2)
        .person("who", "de_DE", age_range=(70, 71), sex="female")
        .expression("hello", "Hallo {{ who.first_name }}")
        .build()
    )
    assert config.columns[0] == PersonColumn(
        name="who", locale="de_DE", age_range=(70, 71), sex="female"
    )
    result = await gl.apreview(config, num_records=20)
    people = result.table.column("who").to_pylist()
    assert {p["sex"] for p in people} == {"female"}
    assert {p["age"] for p in people} <= {70, 71}
    assert all(p["first_name"] in _names("de_DE", "female") for p in people)


def test_yaml_dates_and_ages_follow_the_reference_date() -> None:
    """An unquoted YAML date is the reference date; every age is counted on it, including a
    29 February reference."""
    text = "columns:\n  - {name: c, person: {reference_date: 2024-02-29, age_range: [0, 3]}}\n"
    config = load_config(yaml.safe_load(text))
    column = config.columns[0]
    assert isinstance(column, PersonColumn)
    assert column.reference_date == "2024-02-29"
    sampler = PersonSampler(column)
    people = [sampler.person(1, row) for row in range(300)]
    assert {p["age"] for p in people} == {0, 1, 2, 3}
    assert all(years_between(p["birth_date"], dt.date(2024, 2, 29)) == p["age"] for p in people)
    assert max(p["birth_date"] for p in people) <= dt.date(2024, 2, 29)
