"""The example plugin (examples/plugin, installed in the test session) adds a working column
kind, ``llm_label``, used like a built-in: in YAML, the builder, validate, preview, create and
resume, through the same throttled model handle as the built-in model columns."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

# Installed by the nox tests session (and the dev setup): pip install -e ./examples/plugin
from gridloom_example_plugin import LabelGenerator, LLMLabelColumn

import gridloom as gl
from gridloom.cli import output_schema
from gridloom.config import (
    COLUMN_KINDS,
    config_hash,
    config_json_schema,
    dump_config,
    load_config,
    structure_pipeline,
)
from gridloom.config._kinds import ENTRY_POINT_GROUP, reload
from gridloom.errors import ConfigError, UnknownReferenceError
from gridloom.kinds import installed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin" / "labels.yaml"
LABELS = ("positive", "neutral", "negative")


def pipeline(**label: Any) -> gl.PipelineConfig:
    """A review and its label, on the simulated endpoint."""
    return structure_pipeline(
        {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [{"alias": "w", "provider": "sim", "model": "w-8b"}],
            "columns": [
                {"name": "topic", "category": {"values": ["tea", "rain", "maps"]}},
                {"name": "review", "llm_text": {"model": "w", "prompt": "Review {{ topic }}."}},
                {
                    "name": "mood",
                    "llm_label": {
                        "model": "w",
                        "prompt": "How does this feel? {{ review }}",
                        "labels": list(LABELS),
                        **label,
                    },
                },
                {"name": "line", "expression": "{{ topic }} is {{ mood }}"},
            ],
            "run": {"seed": 5, "row_group_size": 4, "progress": "off"},
        }
    )


def test_the_plugin_is_found_through_its_entry_point() -> None:
    """installed() names the plugin's distribution, version and entry point."""
    info = next(i for i in installed() if i.name == "llm_label")
    assert (info.distribution, info.version, info.builtin, info.problem) == (
        "gridloom-example-plugin",
        "0.1.0",
        False,
        None,
    )
    assert info.entry_point == "llm_label = gridloom_example_plugin:KIND"
    assert COLUMN_KINDS["llm_label"] is LLMLabelColumn


def test_yaml_loads_dumps_and_hashes_like_a_built_in(tmp_path: Path) -> None:
    """The example file loads to the plugin's class; dump → load is lossless and the hash
    is stable; the file validates against `gridloom schema`."""
    cfg = load_config(EXAMPLE)
    column = cfg.column("sentiment")
    assert isinstance(column, LLMLabelColumn)
    assert column.labels == LABELS
    text = dump_config(cfg)
    assert "llm_label:" in text
    again = load_config(yaml.safe_load(text))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    jsonschema.validate(yaml.safe_load(EXAMPLE.read_text()), config_json_schema())


def test_file_errors_name_the_column_and_field() -> None:
    """The plugin's own validation is reported like a built-in's, located in the file."""
    with pytest.raises(ConfigError) as error:
        pipeline(labels=["only"])
    assert (error.value.column, error.value.field) == ("mood", "llm_label.labels")
    with pytest.raises(ConfigError) as error:
        pipeline(lables=["a", "b"])
    assert "unknown key 'lables'; did you mean 'labels'?" in error.value.message


def test_the_builder_has_the_plugin_s_method() -> None:
    """``.llm_label(...)`` (and ``.add("llm_label", ...)``) build what the file does."""
    built = (
        gl.PipelineBuilder(seed=5)
        .provider("sim", type="simulated")
        .model("w", provider="sim", model="w-8b")
        .category("topic", ["tea", "rain", "maps"])
        .llm_text("review", "w", "Review {{ topic }}.")
        .llm_label("mood", "w", "How does this feel? {{ review }}", list(LABELS))
        .expression("line", "{{ topic }} is {{ mood }}")
        .run(row_group_size=4, progress="off")
        .build()
    )
    assert built == pipeline()
    by_name = gl.PipelineBuilder().add("llm_label", "m", "w", "p", ["a", "b"], temperature=0.1)
    by_name.provider("sim", type="simulated").model("w", provider="sim", model="w-8b")
    assert by_name.build().columns[0] == LLMLabelColumn(
        name="m", model="w", prompt="p", labels=("a", "b"), temperature=0.1
    )
    with pytest.raises(ConfigError) as error:
        gl.PipelineBuilder().llm_label("m", "w", "p", ["a", "a"])
    assert (error.value.column, error.value.field) == ("m", "llm_label.labels")


def test_validate_checks_the_plugin_s_templates() -> None:
    """validate compiles the plugin's generator and checks its templates' references."""
    graph = gl.validate(pipeline())
    node = graph.nodes[graph.producer["mood"]]
    assert isinstance(node.generator, LabelGenerator)
    assert node.generator.model_bound
    with pytest.raises(UnknownReferenceError) as error:
        gl.validate(pipeline(prompt="How does {{ reviw }} feel?"))
    assert (error.value.column, error.value.field) == ("mood", "llm_label.prompt")


async def test_preview_calls_the_model_through_its_handle(autojump_clock: Any) -> None:
    """Every row gets one of the labels, from requests counted against the model alias."""
    result = await gl.apreview(pipeline(), 6)
    moods = result.table.column("mood").to_pylist()
    assert len(moods) == 6
    assert set(moods) <= set(LABELS)
    assert result.table.column("line").to_pylist() == [
        f"{topic} is {mood}"
        for topic, mood in zip(result.table.column("topic").to_pylist(), moods, strict=True)
    ]
    assert result.summary["models"]["w"]["requests"] >= 12  # a review and a label per row


async def test_create_and_resume(tmp_path: Path, autojump_clock: Any) -> None:
    """A run writes the labels as text; resuming after a lost row group regenerates just it,
    with the same values."""
    out = tmp_path / "out"
    full = await gl.acreate(pipeline(), num_records=12, output_dir=out)
    assert full.status == "complete"
    assert str(full.table.schema.field("mood").type) == "string"
    assert set(full.table.column("mood").to_pylist()) <= set(LABELS)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["row_groups"]["1"]
    meta["status"] = "interrupted"
    meta_path.write_text(json.dumps(meta))
    (out / "data" / "part-00001.parquet").unlink()
    resumed = await gl.acreate(pipeline(), num_records=12, output_dir=out, resume=True)
    assert resumed.table.equals(full.table)


def test_the_cli_validates_the_example() -> None:
    """``gridloom validate examples/plugin/labels.yaml`` passes."""
    proc = subprocess.run(
        [sys.executable, "-m", "gridloom", "validate", str(EXAMPLE), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_gridloom_plugins_lists_the_example() -> None:
    """``gridloom plugins`` names the plugin's kind, its distribution and version and its
    summary; ``--json`` gives the same as documented, every kind available (exit 0)."""
    command = [sys.executable, "-m", "gridloom", "plugins"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{len(installed())} column kinds: {len(COLUMN_KINDS) - 1} built in")
    [line] = [line for line in lines if line.lstrip().startswith("llm_label")]
    assert "gridloom-example-plugin 0.1.0: One of `labels`, chosen by a model" in line
    proc = subprocess.run(
        [*command, "--plugins-only", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, output_schema("plugins"))
    assert [(k["name"], k["distribution"], k["available"]) for k in doc["kinds"]] == [
        ("llm_label", "gridloom-example-plugin", True)
    ]


def test_gridloom_schema_includes_the_plugin_kind() -> None:
    """``gridloom schema`` offers ``llm_label`` as a column kind, its fields documented."""
    proc = subprocess.run(
        [sys.executable, "-m", "gridloom", "schema"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    column = json.loads(proc.stdout)["$defs"]["Column"]["properties"]
    assert "llm_label" in column
    assert "labels" in json.dumps(column["llm_label"]) or "llm_label" in json.dumps(column)


def test_the_reference_documents_plugins_on_request() -> None:
    """docs/gen_reference.py lists the plugin's kind with --plugins, not in gridloom's own."""
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "docs" / "gen_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "### `llm_label`" not in module.render()
    with_plugins = module.render(plugins=True)
    assert "### `llm_label`" in with_plugins
    assert "*From plugin gridloom-example-plugin 0.1.0" in with_plugins


def test_without_the_plugin_its_kind_is_reported_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the plugin's entry point gone, a file using its kind fails with a ConfigError on
    that column saying a plugin may provide it (no traceback, no request)."""
    real = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    others = [ep for ep in real if ep.name != "llm_label"]
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda **kw: importlib.metadata.EntryPoints(others)
    )
    reload()
    try:
        with pytest.raises(ConfigError) as error:
            load_config(EXAMPLE)
        assert error.value.column == "sentiment"
        message = str(error.value)
        assert "'llm_label'" in message
        assert "a kind from a plugin needs its package installed" in message
    finally:
        monkeypatch.undo()
        reload()
    assert load_config(EXAMPLE).column("sentiment").kind == "llm_label"
