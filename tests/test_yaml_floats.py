"""Plain YAML floats with an exponent and no dot (``1e15``, ``-2E-3``, ``+1e5``) are numbers
in a config file, as YAML 1.2 reads them and as the docs write them; PyYAML's YAML 1.1 rules
read them as text, so a numeric field said "expected a number, got str '1e15'". Quoted, they
stay text, and a string spelt so is written quoted, so it loads back as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.config import dump_config, load_config
from gridloom.config._io import read_config_document
from gridloom.kinds.category import CategoryColumn

#: A float with an exponent as YAML 1.2 writes it, dot or not.
EXPONENT_FLOATS = st.from_regex(
    r"\A[-+]?(?:[0-9]{1,3}(?:\.[0-9]{0,3})?|\.[0-9]{1,3})[eE][-+]?[0-9]{1,3}\Z"
)


def _doc(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("written", "value"),
    [("1e15", 1e15), ("1e308", 1e308), ("-2E-3", -2e-3), ("+1e5", 1e5), (".5e3", 500.0)],
)
def test_an_exponent_float_without_a_dot_is_a_number(
    tmp_path: Path, written: str, value: float
) -> None:
    """Read as the float it spells, in a typed number field and in free-form values."""
    path = _doc(tmp_path / "f.yaml", f"unused: [{written}, '{written}']\n")
    assert read_config_document(path)["unused"] == [value, written]
    cfg = load_config(
        _doc(
            tmp_path / "p.yaml",
            f"columns:\n  - {{name: u, uniform: {{low: -1e300, high: {written}}}}}\n",
        )
    )
    assert cfg.columns[0].high == value  # type: ignore[attr-defined]


def test_the_documented_poisson_bound_loads_as_written(tmp_path: Path) -> None:
    """`mean: 1e15`, the bound the docs give, was refused as text."""
    path = _doc(tmp_path / "p.yaml", "columns:\n  - {name: p, poisson: {mean: 1e15}}\n")
    assert load_config(path).columns[0].mean == 1e15  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["08", "1e", "e5", "1e1.5", "1_0e5", "0x1e5"])
def test_other_plain_scalars_keep_their_reading(tmp_path: Path, text: str) -> None:
    """Only exponent floats change: what YAML 1.1 reads as text or an integer stays so."""
    path = _doc(tmp_path / "f.yaml", f"unused: {text}\n")
    assert read_config_document(path)["unused"] == yaml.safe_load(text)


def test_pyyaml_itself_is_unchanged() -> None:
    """Only gridloom's config loader reads 1e15 as a number, not PyYAML's own loaders."""
    assert yaml.safe_load("1e15") == "1e15"
    assert yaml.load("1e15", Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) == "1e15"


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=EXPONENT_FLOATS)
def test_exponent_floats_unquoted_are_numbers_and_as_strings_round_trip(
    tmp_path: Path, text: str
) -> None:
    """Unquoted, any such spelling loads as ``float(text)``; as a category's text value it
    dumps quoted and loads back as the same text."""
    path = _doc(tmp_path / "f.yaml", f"unused: {text}\n")
    assert read_config_document(path)["unused"] == float(text)
    column = CategoryColumn(name="c", values=(text, 1.5))
    written = tmp_path / "c.yaml"
    cfg = load_config({"columns": [{"name": "c", "category": {"values": [text, 1.5]}}]})
    assert cfg.columns[0] == column
    dump_config(cfg, written)
    assert load_config(written) == cfg
