"""``gridloom cache stats|prune|clear``, and the ``--no-cache`` option of the commands that
run a pipeline."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._output import EXIT_CONFIG, EXIT_FAILED, Out

if TYPE_CHECKING:
    from ..clients import CacheStats

__all__ = ["cache", "no_cache_option", "parse_duration", "parse_size"]

_NO_CACHE_HELP = (
    "Neither read nor write the response cache (docs/cache.md); GRIDLOOM_NO_CACHE=1 does the same."
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def no_cache_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--no-cache`` flag of a command that runs a pipeline (passed as ``no_cache``)."""
    return click.option("--no-cache", "no_cache", is_flag=True, help=_NO_CACHE_HELP)(fn)


def parse_size(text: str) -> int:
    """Bytes from ``500M``, ``2G``, ``1.5GiB``, ``1048576`` (binary units).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (e.g. 500M, 2G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit[:1].lower()])


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``15m``, ``12h``, ``30d``, ``2w``.

    Raises:
        ValueError: not a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 12h, 30d)")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit.lower()]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop returns


def _show(stats: CacheStats) -> None:
    click.echo(f"response cache {stats.path}")
    click.echo(f"  entries   {stats.entries:,}")
    click.echo(f"  records   {_human(stats.bytes)} of {_human(stats.max_bytes)} allowed")
    click.echo(f"  on disk   {_human(stats.file_bytes)}")


@click.command(short_help="Show, prune or clear the response cache.")
@click.argument("action", type=click.Choice(["stats", "prune", "clear"]))
@click.option(
    "--max-bytes",
    "max_bytes",
    default=None,
    help="prune: shrink the cache to this size (500M, 2G, ...), least recently read first;"
    " default: the cache's bound (2G).",
)
@click.option(
    "--older-than",
    "older_than",
    default=None,
    help="prune: also remove entries not read for this long (12h, 30d, ...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
def cache(action: str, max_bytes: str | None, older_than: str | None, as_json: bool) -> None:
    """Show (stats), shrink (prune) or empty (clear) the response cache.

    The cache is one SQLite file, $GRIDLOOM_CACHE_DIR/responses.sqlite3
    (default ~/.cache/gridloom/responses.sqlite3), shared by every run on this
    machine; docs/cache.md explains what it keys on. Runs may use it while
    these commands run. A file that cannot be opened exits 1 naming it; runs
    go on without it (or pass --no-cache). clear removes a damaged file (not
    a SQLite database, or a corrupt one) with SQLite's -wal/-shm/-journal
    files beside it, and nothing else.

    \b
    Example:
      gridloom cache stats
      gridloom cache prune --max-bytes 500M --older-than 30d --json
      gridloom cache clear
    """
    import sqlite3  # with the cache's module: a command that does not use the cache skips both

    from ..clients._cache import WITHOUT_IT, CacheUnavailable, ResponseCache, default_cache_path

    out = Out("cache", as_json)
    try:
        limit = None if max_bytes is None else parse_size(max_bytes)
        age = None if older_than is None else parse_duration(older_than)
    except ValueError as exc:
        out.fail(EXIT_CONFIG, str(exc), kind="UsageError")
    if action != "prune" and (limit is not None or age is not None):
        out.fail(EXIT_CONFIG, "--max-bytes and --older-than apply to prune only", kind="UsageError")
    path = default_cache_path()
    if action == "stats" and not path.exists():
        _report(out, action, _empty(path), removed=None)
        return
    try:
        store = ResponseCache(path)
    except CacheUnavailable as exc:
        if action == "clear" and _clear_damaged(out, path):
            return
        out.fail(EXIT_FAILED, str(exc), kind="CacheUnavailable", file=path)
    with store:
        removed: int | None = None
        failure: sqlite3.Error | None = None
        try:
            if action == "prune":
                removed = store.prune_sync(max_bytes=limit, older_than=age)
            elif action == "clear":
                removed = store.clear_sync()
            stats = store.stats_sync()
        except sqlite3.Error as exc:  # locked by a run past the busy timeout, or damaged
            failure = exc
    if failure is not None:
        if action == "clear" and _clear_damaged(out, path):
            return
        message = f"response cache {str(path)!r} failed the {action} ({failure}); {WITHOUT_IT}"
        out.fail(EXIT_FAILED, message, kind="CacheUnavailable", file=path)
    _report(out, action, stats, removed=removed)


def _clear_damaged(out: Out, path: Path) -> bool:
    """``clear`` of a cache file SQLite cannot use: when it is damaged (not merely locked),
    remove it and SQLite's files beside it and report it (true); else false."""
    from ..clients._cache import damage_of, remove_cache_files

    damage = damage_of(path)
    if damage is None:
        return False
    try:
        files = remove_cache_files(path)
    except OSError as exc:
        message = f"response cache {str(path)!r} is damaged ({damage}) and cannot be removed"
        out.fail(EXIT_FAILED, f"{message} ({exc})", kind="CacheUnavailable", file=path)
    if out.as_json:
        out.emit(
            {
                "action": "clear",
                "removed": None,
                "removed_files": [str(f) for f in files],
                "damaged": damage,
                "stats": _empty(path).as_dict(),
            }
        )
    else:
        click.echo(
            f"removed the damaged response cache {path} ({damage})"
            + "".join(f" and {f.name}" for f in files[1:])
            + "; the next run starts a new one"
        )
        _show(_empty(path))
    return True


def _empty(path: Path) -> CacheStats:
    from ..clients._cache import DEFAULT_MAX_BYTES, CacheStats

    return CacheStats(
        path=str(path),
        entries=0,
        bytes=0,
        file_bytes=0,
        max_bytes=DEFAULT_MAX_BYTES,
        oldest_access=None,
        newest_access=None,
    )


def _report(out: Out, action: str, stats: CacheStats, *, removed: int | None) -> None:
    if out.as_json:
        out.emit({"action": action, "removed": removed, "stats": stats.as_dict()})
        return
    if removed is not None:
        click.echo(f"removed {removed:,} entries")
    _show(stats)
