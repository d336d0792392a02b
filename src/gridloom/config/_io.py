"""Reading and writing pipeline configs as YAML or JSON files, and the config hash.

Relative paths inside a config (``seed_dataset.path``) are kept exactly as written, so a dump
reproduces the file. Whoever opens those paths resolves them against the config file's folder,
which :func:`load_config_with_base` returns alongside the config::

    cfg, base = load_config_with_base("pipelines/people.yaml")
    seed_path = base / cfg.seed_dataset.path   # an absolute path stays absolute

Reading is bounded, so a hostile file fails fast with a :class:`~gridloom.errors.ConfigError`
instead of exhausting memory or the stack: a config file is at most :data:`MAX_CONFIG_BYTES`,
lists and mappings nest at most :data:`MAX_NESTING` levels, a document holds at most
:data:`MAX_CONFIG_VALUES` values, YAML aliases add at most :data:`MAX_ALIAS_NODES` values
(each counted as if written out: a "billion laughs" document stops there) and never refer to a
list or mapping that contains them. YAML is read with a safe loader whose only tags are the
plain ones (no Python objects, no ``!!binary``, ``!!set``, ``!!omap`` or ``!!pairs``). A
key given twice in one mapping, YAML or JSON, is refused with its field path and both lines
(see :mod:`._unique_keys`), rather than the later value silently replacing the earlier.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from ._converter import structure_pipeline, unstructure_pipeline
from ._document import MAX_CONFIG_VALUES, MAX_NESTING
from ._issues import describe
from ._models import PipelineConfig
from ._unique_keys import DuplicateKey, DuplicateKeyFound, check_json_pairs, json_duplicate
from ._unique_keys import yaml_duplicate as _yaml_duplicate
from ._urls import redact_url

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_NESTING",
    "config_hash",
    "dump_config",
    "load_config",
    "load_config_with_base",
    "read_config_document",
    "redacted_headers",
]

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

#: The largest config file read, in bytes (16 MiB).
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Values YAML aliases may add to a document, each alias counted as the list or mapping it
#: stands for written out in full.
MAX_ALIAS_NODES = 100_000

# libyaml's parser when PyYAML has it; the pure-Python one otherwise.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader that knows only the plain tags, reports a value it cannot build
    (``2024-13-01``, an integer of 5,000 digits) as a YAML error at its place, and refuses a
    key given twice in one mapping (:class:`_DuplicateKeyError`)."""

    def construct_document(self, node: yaml.Node) -> Any:
        found = _yaml_duplicate(node, lambda key: self.construct_object(key, deep=True))
        if found is not None:
            raise _DuplicateKeyError(found)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None


class _DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives a key twice."""

    def __init__(self, found: DuplicateKey):
        super().__init__(found.describe())
        self.found = found


def _refuse_tag(_loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag!r} is not allowed in a config", node.start_mark
    )


for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)

#: Floats with an exponent, written as YAML 1.2 allows (``1e15``, ``-2E-3``, ``+1e5``,
#: ``.5e3``): YAML 1.1, which PyYAML follows, wants a dot and a signed exponent
#: (``1.0e+15``) and reads these as text. Other plain scalars keep YAML 1.1's reading
#: (``yes``/``no`` stay booleans: a choice spelt so is still accepted, see ``_scalars``).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
# The dumper resolves alike, so a string spelt so is written quoted and reads back as text.
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


class _Frame:
    """A list or mapping being read: its anchor and the values it holds so far."""

    __slots__ = ("anchor", "size")

    def __init__(self, anchor: str | None) -> None:
        self.anchor = anchor
        self.size = 1


def _check_yaml_events(text: str) -> None:
    """Walk the YAML event stream of ``text`` once, before anything is built from it.

    Raises:
        ValueError: nesting deeper than :data:`MAX_NESTING`, more than
            :data:`MAX_CONFIG_VALUES` values, aliases adding more than
            :data:`MAX_ALIAS_NODES`, or an alias inside the list or mapping it names; the
            message ends with the place.
        yaml.YAMLError: the text is not YAML.
    """
    frames: list[_Frame] = []
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    values = aliased = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            if any(frame.anchor == event.anchor for frame in frames):
                problem = f"alias *{event.anchor} is inside the list or mapping it refers to"
                raise ValueError(f"{problem}{_at(event)}")
            size = sizes.get(event.anchor, 1) if event.anchor is not None else 1
            aliased += size
            if aliased > MAX_ALIAS_NODES:
                raise ValueError(
                    f"aliases stand for more than {MAX_ALIAS_NODES:,} values (each counts as"
                    f" what it refers to, written out){_at(event)}"
                )
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(frames) >= MAX_NESTING:
                raise ValueError(
                    f"lists and mappings nest more than {MAX_NESTING} levels deep{_at(event)}"
                )
            frames.append(_Frame(event.anchor))
            size = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = frames.pop()
            if frame.anchor is not None:
                sizes[frame.anchor] = frame.size
            if frames:
                frames[-1].size += frame.size
            continue
        else:
            continue
        values += size
        if values > MAX_CONFIG_VALUES:
            raise ValueError(f"the config holds more than {MAX_CONFIG_VALUES:,} values{_at(event)}")
        if frames and not isinstance(event, yaml.CollectionStartEvent):
            frames[-1].size += size


def _at(event: yaml.Event) -> str:
    mark = event.start_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> PipelineConfig:
    """Load a pipeline from a ``.yaml``/``.yml``/``.json`` file or an already parsed mapping.

    Args:
        source: a path to a config file, or the parsed document itself.

    Raises:
        ConfigError: the file is missing, unreadable or not a regular file, does not parse,
            goes past a reading limit (see the module's docstring), or describes an invalid
            pipeline. File problems name the file.
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


def read_config_document(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The parsed document of a config file, read with the limits :func:`load_config` reads
    it with (size, nesting, values, aliases, plain tags), not yet turned into a pipeline.

    Raises:
        ConfigError: the file cannot be read, does not parse, goes past a limit, or its top
            level is not a mapping.
    """
    return _read_document(Path(path))


def _read_document(path: Path) -> Mapping[str, Any]:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"config file {str(path)!r}: unsupported extension {path.suffix!r}"
            " (use .yaml, .yml or .json)"
        )
    text = _read_text(path)
    data: Any
    try:
        data = _parse_json(path, text) if fmt == "json" else _parse_yaml(path, text)
    except (RecursionError, MemoryError):  # pragma: no cover - the limits come first
        raise ConfigError(f"config file {str(path)!r} is too complex to be read") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping, got {describe(data)}"
        )
    return data


def _read_text(path: Path) -> str:
    """The text of the config file ``path``: a regular file of at most MAX_CONFIG_BYTES, UTF-8
    with or without a byte order mark."""
    where = f"config file {str(path)!r}"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where} is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{where} has {info.st_size:,} bytes; a config file may have at most"
                f" {MAX_CONFIG_BYTES:,} (16 MiB)"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where} not found") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:  # it grew since stat
        raise ConfigError(f"{where} has more than {MAX_CONFIG_BYTES:,} bytes (16 MiB)")
    # A byte order mark (Windows editors write one) is no part of the text: YAML skips it,
    # json.loads would refuse it.
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{where} cannot be read: it is not UTF-8 text (line {line})") from None


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=check_json_pairs)
    except DuplicateKeyFound as exc:
        found = json_duplicate(text) or DuplicateKey(key=exc.key)
        raise _duplicate_error(path, found) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid JSON: {exc.msg}"
            f" at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"config file {str(path)!r} is refused: lists and mappings nest more than"
            f" {MAX_NESTING} levels deep"
        ) from None
    except ValueError as exc:  # an integer too long to convert, for instance
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {exc}") from None


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        _check_yaml_events(text)
        return yaml.load(text, Loader=_Loader)  # a safe loader: see _Loader
    except _DuplicateKeyError as exc:
        raise _duplicate_error(path, exc.found) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML: {_yaml_problem(exc)}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"config file {str(path)!r} is refused: {exc}") from None


def _duplicate_error(path: Path, found: DuplicateKey) -> ConfigError:
    return ConfigError(
        f"config file {str(path)!r} is refused: {found.describe()}", field=found.field
    )


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
            credentials — and the credentials of a provider's ``proxy`` URL, for a copy
            written next to the data. API keys never appear in a config in the first place:
            providers name the environment variable holding them.

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
            if provider.get("proxy"):
                provider["proxy"] = redact_url(provider["proxy"])
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


def redacted_headers(cfg: PipelineConfig) -> dict[str, list[str]]:
    """The headers of each provider whose value reads :data:`REDACTED` (a run's saved
    ``config.yaml`` keeps header names only), by provider name; providers without any are
    left out. A run from such a config would send that text as the value."""
    found = {
        provider.name: [name for name, value in provider.headers.items() if value == REDACTED]
        for provider in cfg.providers
    }
    return {name: headers for name, headers in found.items() if headers}


#: The run settings that change what is generated (the random streams derive from both).
_OUTPUT_RUN_FIELDS = ("seed", "row_group_size")
#: Model settings that change how requests are made, not what comes back.
_EXECUTION_MODEL_FIELDS = frozenset(
    {
        "max_parallel_requests",
        "max_tokens_param",
        "timeout",
        "max_response_bytes",
        "batch",
        "batch_max_size",
        "batch_wait",
        "cache",
        "price",
    }
)


def config_hash(cfg: PipelineConfig) -> str:
    """SHA-256 (hex) of what decides the pipeline's *output*, stable across runs and processes.

    Two pipelines that load to equal objects have the same hash, however they were written.
    Settings that change only how a run executes are left out, so a run can be resumed with
    other limits: ``run``'s concurrency limits and scheduling mode, models'
    ``max_parallel_requests``, ``max_tokens_param`` (how the limit is spelled on the wire: a
    run stopped by a 400 refusing ``max_tokens`` resumes with it changed), ``timeout``,
    ``max_response_bytes``, ``batch*``,
    ``cache`` and ``price``, model-calling columns' ``cache``, and providers' endpoints,
    key variables, headers, extra body fields and HTTP settings (only their names and types
    count). A custom function that
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
    by_name = {column.name: column for column in cfg.columns}
    for item in data.get("columns", []):
        column = by_name.get(item.get("name"))
        params = item.get(column.kind) if column is not None else None
        if column is not None and isinstance(params, dict):
            for key in getattr(type(column), "execution_fields", ()):
                params.pop(key, None)
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
