"""``gridloom validate``."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..run import Run, default_signals
from ._group import json_option
from ._output import Out, check_config_file

__all__ = ["validate"]


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@json_option
def validate(config: Path, as_json: bool) -> None:
    """Check CONFIG without generating anything; print the execution graph.

    Loads and compiles the pipeline (references, cycles, templates, custom
    functions, the seed dataset's columns) without sending a request.

    \b
    Example:
      gridloom validate examples/people.yaml
      gridloom validate examples/people.yaml --json
    """
    out = Out("validate", as_json)
    check_config_file(out, config)
    try:
        # Nothing to save: SIGINT/SIGTERM end the process at once, even in a C call.
        with default_signals():
            graph = Run(config).validate()
    except ConfigError as exc:
        out.config_error(exc, config)
    nodes = graph.describe()
    if as_json:
        schema = {field.name: str(field.type) for field in graph.schema}
        out.emit(
            {
                "config": str(config),
                "valid": True,
                "depth": graph.depth(),
                "nodes": nodes,
                "schema": schema,
            }
        )
        return
    click.echo(f"{config}: valid — {len(nodes)} nodes, dependency depth {graph.depth()}")
    for node in nodes:
        deps = ", ".join(node["depends_on"]) or "-"  # type: ignore[arg-type]
        line = f"  {node['node']:<24} {node['granularity']:<5}  after: {deps}"
        if "skip_when" in node:
            line += f"  skip when: {node['skip_when']}"
        click.echo(line)
