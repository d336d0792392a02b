"""``gridloom check-models``: one tiny request to each model a config uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..run import Run, StopSignals, signal_exit, signal_name
from ._group import json_option
from ._output import EXIT_FAILED, Out, check_config_file
from ._signals import run_stoppable

__all__ = ["check_models"]


@click.command("check-models", short_help="Send one tiny request to each model CONFIG uses.")
@click.argument("config", type=click.Path(path_type=Path))
@json_option
def check_models(config: Path, as_json: bool) -> None:
    """Send one tiny request to each model CONFIG uses; report latency or the error.

    The models are checked at once, each within its own timeout: models that never
    answer take one timeout in all, not one each.

    Under each model a line says which transport its provider uses and why: fast
    (gridloom's HTTP/1.1 transport), httpx (httpx's own: for a proxy, from the provider's
    proxy setting or from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY, or for http2) or asgi (the
    simulated endpoint in-process). Exits 1 when any model fails.

    \b
    Example:
      gridloom check-models examples/quickstart.yaml
      gridloom check-models examples/quickstart.yaml --json
    """
    out = Out("check-models", as_json)
    check_config_file(out, config)

    async def work(signals: StopSignals) -> list[dict[str, Any]]:
        return await Run(config, signals=signals).check_models()

    outcome = run_stoppable(out, work)
    if outcome.signum is not None:
        name = signal_name(outcome.signum)
        out.fail(signal_exit(outcome.signum), f"interrupted by {name}", kind="Interrupted")
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config)
    if outcome.error is not None:
        out.error(outcome.error, file=config)
    results = outcome.result
    assert results is not None
    failed = [row for row in results if not row["ok"]]
    if as_json:
        doc = {"config": str(config), "models": results}
        if failed:
            message = f"{len(failed)} of {len(results)} models failed: " + "; ".join(
                f"{row['alias']}: {row['error']}" for row in failed
            )
            out.fail(EXIT_FAILED, message, kind="ModelCheckFailed", file=config, extra=doc)
        out.emit(doc)
        return
    if not results:
        click.echo(f"{config}: no column uses a model")
    for row in results:
        where = f"{row['alias']} ({row['provider']}/{row['model']})"
        if row["ok"]:
            click.echo(f"  ok    {where:<40} {row['latency_s'] * 1000:8.1f} ms")
            if "note" in row:
                click.echo(f"        note: {row['note']}")
        else:
            click.echo(f"  FAIL  {where:<40} {row['error']}")
        click.echo(f"        transport: {row['transport']} ({row['transport_reason']})")
    if failed:
        sys.exit(EXIT_FAILED)
