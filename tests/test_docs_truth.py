"""What the docs and messages promise is what the code does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gridloom as gl
from gridloom.clients import ChatRequest, Message, ModelHandle
from gridloom.config import ModelConfig, structure_pipeline

ROOT = Path(__file__).resolve().parent.parent


def texts() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "src" / "gridloom").rglob("*.py")),
    ]


def test_install_hints_with_extras_are_quoted() -> None:
    """`pip install gridloom[plot]` breaks in zsh (a glob): every hint quotes the extra."""
    unquoted = re.compile(r"pip install (?!['\"])[\w.-]+\[")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in texts()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unquoted.search(line)
    ]
    assert found == []


async def ask_the_model(row: dict[str, Any], ctx: gl.CellContext) -> str:
    """A model-bound custom function that uses ctx.model as documented."""
    handle = ctx.model
    assert isinstance(handle, ModelHandle)
    assert isinstance(handle.config, ModelConfig)
    request = ChatRequest(
        model=handle.config.model,
        messages=(Message(role="user", content=f"Say {row['n']}"),),
        max_tokens=8,
    )
    response = await handle.chat(request)
    return f"{handle.config.alias}:{len(response.text) > 0}"


async def test_ctx_model_is_the_documented_handle(tmp_path: Path, autojump_clock: Any) -> None:
    """The docs say a model-bound custom column's ctx.model is the alias's handle (await
    ctx.model.chat(...); ctx.model.config is its ModelConfig); they said ModelConfig."""
    config = structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {"default": {"latency": {"fixed": 0.1}}, "transport": "asgi"},
                }
            ],
            "models": [{"alias": "writer", "provider": "sim", "model": "w-8b"}],
            "columns": [
                {"name": "n", "uniform": {"low": 0, "high": 9, "convert_to": "int"}},
                {
                    "name": "m",
                    "custom": {"function": f"{__name__}:ask_the_model", "model": "writer"},
                    "depends_on": ["n"],
                },
            ],
            "run": {"progress": "off"},
        }
    )
    result = await gl.acreate(config, num_records=4, output_dir=tmp_path / "o")
    assert result.status == "complete"
    assert result.table.column("m").to_pylist() == ["writer:True"] * 4
    assert result.summary["models"]["writer"]["requests"] == 4
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "`ctx.model` is that alias's model handle" in documented
