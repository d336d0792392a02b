"""Damage to a committed part that leaves its parquet footer readable: bytes flipped inside
its pages, as a bad sector or a stray write would; and the reference run those tests damage
copies of (shared by the resume, export, inspect and part-size tests)."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, settings

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.storage import Location

#: The damaged-run tests' pipeline: rows, and rows per row group.
ROWS = 60
GROUP = 10


def damage_settings(examples: int) -> settings:
    """Hypothesis settings of a test that damages copies of a module-scoped reference run
    (``examples`` of them; no deadline: each copies and reads a run)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


def pipeline() -> gl.PipelineConfig:
    """Samplers and an expression that drops about one row in ten (the groups have dropped
    files too)."""
    return structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 0, "high": 30, "convert_to": "int"}},
                {"name": "q", "expression": {"template": "{{ 300 // (n % 10) }}", "dtype": "int"}},
            ],
            "run": {"seed": 9, "row_group_size": GROUP, "allow_drops": 0.5, "progress": "off"},
        }
    )


def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of :func:`pipeline` (with dropped rows), for a module's tests to copy
    and damage."""
    out = tmp_path_factory.mktemp("ref") / "run"
    result = gl.create(pipeline(), num_records=ROWS, output_dir=out)
    assert result.num_dropped > 0
    return out


def pages(raw: bytes) -> range:
    """The offsets of a parquet file's pages: after the leading magic, before the footer
    (whose length is in the 4 bytes before the trailing magic)."""
    footer = len(raw) - 8 - int.from_bytes(raw[-8:-4], "little")
    return range(4, footer)


def flip(path: Path, offset: int, mask: int) -> None:
    """XOR the byte at ``offset`` of ``path`` with ``mask`` (non-zero), in place."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def flip_in_pages(path: Path, data: st.DataObject) -> int:
    """Flip bits of one byte, drawn from ``path``'s pages (its footer still reads); return its
    offset."""
    raw = path.read_bytes()
    offset = data.draw(st.sampled_from(pages(raw)), label="offset")
    flip(path, offset, data.draw(st.integers(1, 255), label="mask"))
    assert pq.read_metadata(path).num_rows >= 0  # the footer reads
    return offset


def damage_silently(path: Path) -> int:
    """Flip one bit in the middle of ``path``'s pages such that the file still decodes, to
    other values (pyarrow writes no page checksums); return its offset."""
    raw = path.read_bytes()
    table = pq.read_table(pa.BufferReader(raw))
    span = pages(raw)
    middle = (span.start + span.stop) // 2
    for offset in [*range(middle, span.stop), *range(middle - 1, span.start - 1, -1)]:
        damaged = bytearray(raw)
        damaged[offset] ^= 0x01
        try:
            other = pq.read_table(pa.BufferReader(bytes(damaged)))
        except (OSError, pa.ArrowException, ValueError, IndexError, EOFError):
            continue
        if other.schema.equals(table.schema) and not other.equals(table):
            path.write_bytes(bytes(damaged))
            return offset
    raise AssertionError(f"no one-bit damage of {path} decodes to other values")


def flip_part_at(location: Location, rel: str, data: st.DataObject) -> bytes:
    """:func:`flip_in_pages` for the part ``rel`` of a run at any location (a bucket of the
    S3 server included); return its bytes as they were, to put back."""
    raw = location.read_bytes(rel, limit=1 << 26)
    assert raw is not None
    damaged = bytearray(raw)
    damaged[data.draw(st.sampled_from(pages(raw)), label="offset")] ^= data.draw(
        st.integers(1, 255), label="mask"
    )
    location.write_bytes(rel, bytes(damaged))
    return raw
