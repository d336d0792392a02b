"""In-memory seed tables: a pandas DataFrame or an Arrow table given as a seed dataset.

A config is plain data (it is written to YAML and hashed), so the table itself is not stored in
it: :func:`seed_path` converts it to an Arrow table, fingerprints its content and keeps it in
this process's registry under a ``memory://<fingerprint>`` path, which is what the config holds.
The fingerprint is SHA-256 over the table's schema and its Arrow IPC bytes (taken in fixed-size
row windows, so how the table happens to be chunked does not matter): ``config_hash`` covers the
content, a run's saved ``config.yaml`` names it, and resuming that run with other rows is
refused as a changed config. A table is kept for the life of the process once registered.

A sharded run's driver sends its in-memory tables to the shards' workers (each their own
process), which :func:`register` them under the same paths before running.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from ..errors import ConfigError

__all__ = [
    "MAX_MEMORY_SEED_BYTES",
    "MEMORY_SCHEME",
    "fingerprint",
    "is_memory_path",
    "lookup",
    "register",
    "seed_path",
]

#: The prefix of the path of an in-memory seed table.
MEMORY_SCHEME = "memory://"
#: The largest in-memory seed table accepted, in bytes of Arrow buffers (2 GiB).
MAX_MEMORY_SEED_BYTES = 2 * 1024**3
#: Rows per window fed to the fingerprint (bounds the copy a window's re-chunking makes).
_WINDOW_ROWS = 65_536

_lock = threading.Lock()
_tables: dict[str, Any] = {}


class _HashSink:
    """A write-only file object that feeds what is written to a SHA-256."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        return view.nbytes

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        self.closed = True


def _as_table(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, pa.RecordBatch):
        value = pa.Table.from_batches([value])
    if not isinstance(value, pa.Table):
        module = type(value).__module__.split(".", 1)[0]
        if module != "pandas" or not hasattr(value, "columns"):
            raise ConfigError(
                "a seed dataset is a path, a pandas DataFrame or a pyarrow Table,"
                f" got {type(value).__name__}",
                field="seed_dataset.path",
            )
        value = _from_pandas(value)
    table = value.replace_schema_metadata(None)
    if table.nbytes > MAX_MEMORY_SEED_BYTES:
        raise ConfigError(
            f"the in-memory seed table holds {table.nbytes:,} bytes; at most"
            f" {MAX_MEMORY_SEED_BYTES:,} (2 GiB)",
            field="seed_dataset.path",
        )
    return table


def _said(exc: BaseException) -> str:
    """``exc`` in one short line (pyarrow may quote a whole value)."""
    try:
        text = " ".join(str(exc).split()) or type(exc).__name__
    except Exception:  # a message that cannot even be shown
        text = type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _from_pandas(frame: Any) -> Any:
    """``frame`` as an Arrow table.

    Raises:
        ConfigError: a value pyarrow cannot convert (an integer beyond 64 bits, text with a
            lone surrogate, an object of no Arrow type, ...), naming its column; or a frame
            pyarrow refuses as a whole (duplicate column names).
    """
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except Exception as exc:  # pyarrow raises Arrow errors, OverflowError, UnicodeError, ...
        whole = exc
    # Which column? Converted one at a time (only once the whole frame failed).
    for index, name in enumerate(frame.columns):
        try:
            pa.Table.from_pandas(frame.iloc[:, [index]], preserve_index=False)
        except Exception as exc:
            raise ConfigError(
                f"seed column {str(name)!r} holds a value Arrow cannot store: {_said(exc)}",
                field="seed_dataset.path",
            ) from None
    raise ConfigError(
        f"cannot convert the DataFrame to an Arrow table: {_said(whole)}",
        field="seed_dataset.path",
    ) from None


def fingerprint(table: Any) -> str:
    """SHA-256 (hex) of ``table``'s schema and content, independent of its chunking."""
    import pyarrow as pa

    sink = _HashSink()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for start in range(0, table.num_rows, _WINDOW_ROWS):
            window = table.slice(start, _WINDOW_ROWS).combine_chunks()
            for batch in window.to_batches():
                writer.write_batch(batch)
    return sink.digest.hexdigest()


def seed_path(value: Any) -> Any:
    """``value`` when it is not a table; else the ``memory://`` path it is registered under.

    Raises:
        ConfigError: ``value`` is neither text, a DataFrame nor an Arrow table, cannot be
            converted, or is over :data:`MAX_MEMORY_SEED_BYTES`.
    """
    if isinstance(value, str):
        return value
    table = _as_table(value)
    path = MEMORY_SCHEME + fingerprint(table)
    with _lock:
        _tables.setdefault(path, table)
    return path


def is_memory_path(path: str) -> bool:
    """Whether ``path`` names an in-memory seed table."""
    return path.startswith(MEMORY_SCHEME)


def register(path: str, table: Any) -> None:
    """Keep ``table`` under ``path``, the ``memory://`` path another process registered it
    under (a sharded run's driver; the table comes with the shard's job).

    Raises:
        ValueError: ``path`` is not an in-memory table's path.
    """
    if not is_memory_path(path):
        raise ValueError(f"not an in-memory seed table's path: {path!r}")
    with _lock:
        _tables.setdefault(path, table)


def lookup(path: str) -> Any:
    """The Arrow table registered under ``path``.

    Raises:
        ConfigError: none is (a config naming an in-memory table was loaded in another
            process: the table must be given again).
    """
    with _lock:
        table = _tables.get(path)
    if table is None:
        raise ConfigError(
            f"the in-memory seed table {path!r} is not loaded in this process; a config file"
            " cannot carry a table: pass the same DataFrame or Arrow table again"
            " (SeedDatasetConfig(path=table) or PipelineBuilder.seed_dataset(table))",
            field="seed_dataset.path",
        )
    return table
