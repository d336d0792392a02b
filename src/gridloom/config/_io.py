"""Reading and writing pipeline configs as YAML or JSON files, and the config hash.

Relative paths inside a config (``seed_dataset.path``) are kept exactly as written, so a dump
reproduces the file. Whoever opens those paths resolves them against the config file's folder,
which :func:`load_config_with_base` returns alongside the config::

    cfg, base = load_config_with_base("pipelines/people.yaml")
    seed_path = base / cfg.seed_dataset.path   # an absolute path stays absolute
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from ._converter import structure_pipeline, unstructure_pipeline
from ._issues import describe
from ._models import PipelineConfig

__all__ = ["config_hash", "dump_config", "load_config", "load_config_with_base"]

ConfigFormat = Literal["yaml", "json"]
_SUFFIXES: dict[str, ConfigFormat] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


# libyaml's emitter when PyYAML has it (about ten times faster; every run writes its config).
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """SafeDumper that keeps NEL (U+0085) intact.

    PyYAML writes it raw inside plain or single-quoted scalars, where a reader takes it for a
    line break; double quotes make the emitter escape it.
    """


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if "\x85" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> PipelineConfig:
    """Load a pipeline from a ``.yaml``/``.yml``/``.json`` file or an already parsed mapping.

    Args:
        source: a path to a config file, or the parsed document itself.

    Raises:
        ConfigError: the file is missing or unreadable, does not parse, or describes an
            invalid pipeline. File problems name the file.
    """
    cfg, _base = load_config_with_base(source)
    return cfg


def load_config_with_base(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[PipelineConfig, Path]:
    """Like :func:`load_config`, also returning the folder relative paths are resolved against.

    Returns:
        The pipeline and the base folder: the config file's folder (absolute), or the current
        working directory when ``source`` is a mapping.
    """
    if isinstance(source, Mapping):
        return structure_pipeline(source), Path.cwd()
    path = Path(source)
    data = _read_document(path)
    try:
        cfg = structure_pipeline(data)
    except ConfigError as exc:
        exc.add_note(f"in config file {str(path)!r}")
        raise
    return cfg, path.resolve().parent


def _read_document(path: Path) -> Mapping[str, Any]:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"config file {str(path)!r}: unsupported extension {path.suffix!r}"
            " (use .yaml, .yml or .json)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config file {str(path)!r} cannot be read: {reason}") from None
    data: Any
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not valid JSON: {exc.msg}"
                f" at line {exc.lineno}, column {exc.colno}"
            ) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not valid YAML: {_yaml_problem(exc)}"
            ) from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping, got {describe(data)}"
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
        return problem
    return str(exc)


def dump_config(
    cfg: PipelineConfig,
    path: str | os.PathLike[str] | None = None,
    *,
    format: ConfigFormat | None = None,
    strict: bool = True,
    redact: bool = False,
) -> str:
    """Write a pipeline as YAML or JSON text, and to a file when ``path`` is given.

    The file is replaced atomically: the text goes to a temporary file in the same folder,
    which is flushed, synced and renamed over ``path``.

    Args:
        cfg: the pipeline.
        path: where to write; nothing is written when ``None``.
        format: ``yaml`` or ``json``; by default taken from the suffix of ``path`` (``.json``
            means JSON), else YAML.
        strict: refuse what could not be loaded back (a lambda as a custom function). With
            ``strict=False`` such a function is written by name, for a record of what ran
            (a run's ``config.yaml``) rather than a file to load again.
        redact: replace every provider header value with ``<redacted>`` — headers may carry
            credentials — for a copy written next to the data. API keys never appear in a
            config in the first place: providers name the environment variable holding them.

    Returns:
        The text written.

    Raises:
        ConfigError: the pipeline holds something a config file cannot (see
            :func:`~gridloom.config.unstructure_pipeline`); JSON also needs string mapping keys.
    """
    if format is None:
        suffix = Path(path).suffix.lower() if path is not None else ""
        format = _SUFFIXES.get(suffix, "yaml")
    data = unstructure_pipeline(cfg, strict=strict)
    if redact:
        for provider in data.get("providers", []):
            provider["headers"] = dict.fromkeys(provider.get("headers", {}), REDACTED)
    if format == "json":
        _check_json_keys(data, "")
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    elif format == "yaml":
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    else:
        raise ConfigError(f"unknown config format {format!r} (use 'yaml' or 'json')")
    if path is not None:
        _write_atomically(Path(path), text)
    return text


def _check_json_keys(data: Any, where: str) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"JSON cannot hold the non-string mapping key {key!r}; write YAML instead",
                    field=where or None,
                )
            _check_json_keys(value, f"{where}.{key}" if where else key)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_json_keys(item, f"{where}[{index}]")


def _write_atomically(path: Path, text: str) -> None:
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


#: What a redacted header value reads as.
REDACTED = "<redacted>"

#: The run settings that change what is generated (the random streams derive from both).
_OUTPUT_RUN_FIELDS = ("seed", "row_group_size")
#: Model settings that change how requests are made, not what comes back.
_EXECUTION_MODEL_FIELDS = frozenset({"max_parallel_requests", "timeout"})


def config_hash(cfg: PipelineConfig) -> str:
    """SHA-256 (hex) of what decides the pipeline's *output*, stable across runs and processes.

    Two pipelines that load to equal objects have the same hash, however they were written.
    Settings that change only how a run executes are left out, so a run can be resumed with
    other limits: ``run``'s concurrency limits and scheduling mode, models'
    ``max_parallel_requests`` and ``timeout``, and providers' endpoints, key variables,
    headers and extra body fields (only their names and types count). A custom function that
    is not importable by its name (a lambda, a local function) counts by its
    ``module:qualname`` only, so the hash works for any pipeline built in Python.
    """
    data = unstructure_pipeline(cfg, strict=False)
    run = data.get("run", {})
    data["run"] = {key: run.get(key) for key in _OUTPUT_RUN_FIELDS}
    data["models"] = [
        {k: v for k, v in model.items() if k not in _EXECUTION_MODEL_FIELDS}
        for model in data.get("models", [])
    ]
    data["providers"] = [
        {"name": p["name"], "type": p.get("type")} for p in data.get("providers", [])
    ]
    canonical = json.dumps(
        _hashable(data),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _hashable(data: Any) -> Any:
    """Non-string mapping keys become tagged strings, so ``sort_keys`` can order them."""
    if isinstance(data, dict):
        return {
            (key if isinstance(key, str) else "\x00" + json.dumps(key)): _hashable(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_hashable(item) for item in data]
    return data
