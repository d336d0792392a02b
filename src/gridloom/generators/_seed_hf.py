"""Seed rows from a Hugging Face dataset: ``seed_dataset.path: hf://org/name``.

Read through the ``datasets`` package (the ``hf`` extra, imported only here), so its local
cache and offline mode (``HF_DATASETS_OFFLINE=1``, ``HF_HUB_OFFLINE=1``) apply. The name after
``hf://`` may also be a folder a dataset was saved to with ``save_to_disk`` (relative to the
config's folder), read with ``load_from_disk``. Every problem is a
:class:`~gridloom.errors.ConfigError` on ``seed_dataset.path``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config._models import SeedDatasetConfig
from ..errors import ConfigError

__all__ = ["HF_SCHEME", "MAX_HF_SEED_BYTES", "is_hf_path", "read_hf"]

#: The prefix of a Hugging Face dataset's path.
HF_SCHEME = "hf://"
#: The most Arrow data a Hugging Face seed dataset may hold, in bytes (2 GiB).
MAX_HF_SEED_BYTES = 2 * 1024**3
_FIELD = "seed_dataset.path"
#: Files ``save_to_disk`` leaves in a folder (a dataset, a dataset dict).
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_hf_path(path: str) -> bool:
    """Whether ``path`` names a Hugging Face dataset."""
    return path.startswith(HF_SCHEME)


def _saved_folder(name: str, base_dir: Path | None) -> Path | None:
    try:
        folder = Path(name).expanduser()
    except RuntimeError:
        return None
    if not folder.is_absolute() and base_dir is not None:
        folder = base_dir / folder
    if folder.is_dir() and any((folder / marker).is_file() for marker in _SAVED_MARKERS):
        return folder
    return None


def _load(config: SeedDatasetConfig, name: str, base_dir: Path | None) -> Any:
    try:
        datasets: Any = importlib.import_module("datasets")
    except ImportError:
        raise ConfigError(
            "a hf:// seed dataset needs the datasets package: pip install 'gridloom[hf]'",
            field=_FIELD,
        ) from None
    split = config.split or "train"
    folder = _saved_folder(name, base_dir)
    try:
        if folder is not None:
            loaded = datasets.load_from_disk(str(folder))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ConfigError(
                        f"the dataset saved in {str(folder)!r} has no split {split!r}"
                        f" (it has {sorted(loaded)})",
                        field="seed_dataset.split",
                    )
                loaded = loaded[split]
            return loaded
        return datasets.load_dataset(
            name, name=config.config, split=split, revision=config.revision
        )
    except ConfigError:
        raise
    except Exception as exc:  # datasets raises many types: missing, offline, bad split
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot load the Hugging Face dataset {name!r}: {message}", field=_FIELD
        ) from exc


def read_hf(config: SeedDatasetConfig, base_dir: Path | None) -> pa.Table:
    """The rows of the Hugging Face dataset ``config.path`` names (all of its columns).

    Raises:
        ConfigError: the ``datasets`` package is missing, the dataset (or its split) cannot be
            loaded — it does not exist, or is not cached while offline — or it holds more than
            :data:`MAX_HF_SEED_BYTES`.
    """
    name = config.path[len(HF_SCHEME) :]
    if not name:
        raise ConfigError("hf:// needs a dataset name, as in hf://org/name", field=_FIELD)
    dataset = _load(config, name, base_dir)
    size = int(dataset.data.nbytes)
    if size > MAX_HF_SEED_BYTES:
        raise ConfigError(
            f"the Hugging Face dataset {name!r} holds {size:,} bytes; at most"
            f" {MAX_HF_SEED_BYTES:,} (2 GiB) are read",
            field=_FIELD,
        )
    table: pa.Table = dataset.with_format("arrow")[:]
    return table.replace_schema_metadata(None)
