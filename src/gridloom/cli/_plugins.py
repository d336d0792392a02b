"""``gridloom plugins``: the column kinds installed, where each comes from, and what is wrong
with those that did not load."""

from __future__ import annotations

import click

from ..kinds import installed
from ._output import EXIT_FAILED, Out

__all__ = ["plugins"]


@click.command(short_help="List the column kinds installed (built in and from plugins).")
@click.option("--plugins-only", is_flag=True, help="List only the kinds that come from plugins.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"ok", "command": "plugins", "kinds": [...]} instead of text.',
)
def plugins(plugins_only: bool, as_json: bool) -> None:
    """List the column kinds gridloom found: its own and those of installed plugins
    (distributions declaring a `gridloom.columns` entry point; docs/plugins.md).

    Each line gives the kind key, where it comes from and the first sentence of its
    documentation. A kind that cannot be used — its plugin failed to import, declares an
    invalid kind or takes a name already registered — is listed with the problem, and the
    command then exits 1.

    \b
    Example:
      gridloom plugins
      gridloom plugins --plugins-only --json
    """
    out = Out("plugins", as_json)
    kinds = [info for info in installed() if not (plugins_only and info.builtin)]
    broken = [info for info in kinds if not info.available]
    listed = {"kinds": [info.as_dict() for info in kinds]}
    if not as_json:
        builtin = sum(info.builtin for info in kinds)
        click.echo(
            f"{len(kinds)} column kinds: {builtin} built in, {len(kinds) - builtin} from plugins"
        )
        width = max((len(info.name) for info in kinds), default=0)
        for info in kinds:
            if info.available:
                origin = "built in" if info.builtin else _package(info.distribution, info.version)
                click.echo(f"  {info.name:<{width}}  {origin}: {info.summary}")
            else:
                click.echo(f"  {info.name:<{width}}  NOT AVAILABLE ({info.origin}): {info.problem}")
    if broken:
        names = ", ".join(repr(info.name) for info in broken)
        out.fail(
            EXIT_FAILED,
            f"{len(broken)} column kind(s) not available: {names}",
            kind="PluginError",
            extra=listed,
        )
    if as_json:
        out.emit(listed)


def _package(distribution: str | None, version: str | None) -> str:
    return " ".join(part for part in (distribution, version) if part) or "a plugin"
