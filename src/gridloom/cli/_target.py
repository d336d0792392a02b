"""Where ``create`` and ``resume`` write: a local folder or a filesystem URI, and the
``--ray``/``--shards`` options that shard the run over a Ray cluster."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import StorageError
from ..storage import (
    is_remote_uri,
    is_run_directory,
    local_path,
    location_of,
    read_run_metadata,
)

__all__ = [
    "OUTPUT",
    "Output",
    "executor_overrides",
    "is_run",
    "kept_row_groups",
    "local_dir",
    "ray_hint",
    "ray_options",
    "saved_config",
    "shown",
]

#: A run's output: a local folder (a ``Path``) or a filesystem URI (a ``str``).
Output = Path | str
F = TypeVar("F", bound=Callable[..., Any])
#: The largest ``config.yaml`` read back from a remote run.
_CONFIG_LIMIT = 16 * 1024 * 1024


class _OutputType(click.ParamType[Any]):
    """A local folder (not an existing file), or a URI with a scheme (``s3://...``)."""

    name = "path|uri"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        text = os.fspath(value)
        if not text.strip():
            # An unset shell variable (-o "$OUT") would otherwise mean the current directory.
            self.fail("is empty; name a directory (. for the current one)", param, ctx)
        if is_remote_uri(text):
            return text
        try:
            path = local_path(text)  # a file:// URI is a local folder
        except StorageError as exc:
            self.fail(str(exc), param, ctx)
        if path.is_symlink() and not path.exists():
            self.fail(f"{text!r} is a symbolic link to nothing ({os.readlink(path)!r})", param, ctx)
        if path.exists() and not path.is_dir():
            self.fail(f"{text!r} is a file, not a directory", param, ctx)
        return path


OUTPUT = _OutputType()


def shown(output: Output) -> str:
    """``output`` as messages show it (a URI without credentials or query options)."""
    if isinstance(output, Path):
        return str(output)
    try:
        return location_of(output).display
    except Exception:  # a URI that does not parse: show its scheme and host only
        return output.split("?", 1)[0].rsplit("@", 1)[-1]


def ray_options(fn: F) -> F:
    """The ``--ray [ADDRESS]`` and ``--shards K`` options."""
    fn = click.option(
        "--shards",
        type=click.IntRange(min=1),
        default=None,
        help="Shards (Ray tasks) sharing the run; default: run.ray.shards, else one per CPU of"
        " the cluster. Implies --ray.",
    )(fn)
    fn = click.option(
        "--ray",
        "ray",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[ADDRESS]",
        help="Shard the run over a Ray cluster (pip install 'gridloom[ray]'): the one at"
        " ADDRESS ('auto': the one running on this machine), else run.ray.address,"
        " RAY_ADDRESS, or a new one on this machine for the run. Give it after CONFIG.",
    )(fn)
    return fn


def executor_overrides(ray: str | None, shards: int | None) -> dict[str, Any] | None:
    """What ``--ray``/``--shards`` change in the config's ``run`` (``None``: nothing)."""
    if ray is None and shards is None:
        return None
    settings: dict[str, Any] = {}
    if ray:
        settings["address"] = ray
    if shards is not None:
        settings["shards"] = shards
    return {"executor": "ray", "ray": settings}


def ray_hint(ray: str | None, shards: int | None) -> list[str]:
    """The ``--ray``/``--shards`` arguments of a command that resumes the run."""
    args: list[str] = []
    if ray is not None:
        args += ["--ray", ray] if ray else ["--ray"]
    if shards is not None:
        args += ["--shards", str(shards)]
    return args


def is_run(output: Output) -> bool:
    """Whether ``output`` holds a run (its ``metadata.json``); ``False`` when unreadable."""
    try:
        return is_run_directory(output)
    except Exception:
        return False


def kept_row_groups(output: Output) -> int:
    """Row groups the run in ``output`` has committed (0 when unreadable)."""
    try:
        groups = read_run_metadata(output).get("row_groups") or {}
        location = location_of(output)
        commits = {name for name in location.list_names("_commits") if name.endswith(".json")}
    except Exception:
        return 0
    names = {f"part-{int(i):05d}.json" for i in groups if str(i).isascii() and str(i).isdigit()}
    return len(names | commits)


def saved_config(output: Output) -> Path | None:
    """The run's saved ``config.yaml`` as a local file (a remote run's is copied to a temp
    folder that lives as long as the process), or ``None`` when there is none."""
    if isinstance(output, Path):
        config = output / "config.yaml"
        return config if config.is_file() else None
    return _fetched_config(output)


@functools.cache
def _fetched_config(output: str) -> Path | None:
    content = location_of(output).read_bytes("config.yaml", limit=_CONFIG_LIMIT)
    if content is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="gridloom-resume-"))
    config = folder / "config.yaml"
    config.write_bytes(content)
    return config


def local_dir(output: Output, config: Path) -> Path:
    """The folder a resumed run's relative paths resolve against when none was recorded:
    the run directory, or (remote) the folder its config was copied to."""
    return output if isinstance(output, Path) else config.parent
