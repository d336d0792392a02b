"""Long records in CSV and JSONL files (seed datasets, search sources): values of several MiB
are read exactly, wherever they fall against pyarrow's read blocks; a record over the bound
(64 MiB) is refused before any request, naming the file, its line and the bound."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import SeedDatasetConfig, SimulationConfig, structure_pipeline
from gridloom.errors import ConfigError
from gridloom.generators import SeedDatasetGenerator
from gridloom.simulated import serve_simulated
from gridloom.tools._search import SearchSource

MIB = 1024**2
#: The documented bound on one record (docs/configuration.md, seed datasets).
BOUND = 64 * MIB
#: Pieces long values are repeated from: line breaks, quotes, commas, multi-byte text.
PIECES = st.text(
    alphabet=st.sampled_from(list('abc xyz,"\n\r\t\\éß日本🙂')), min_size=1, max_size=12
)


def _long(piece: str, size: int) -> str:
    """About ``size`` bytes of text: "v" (so CSV never infers a number) then ``piece`` over
    and over."""
    unit = len(piece.encode())
    return "v" + piece * (size // unit + 1)


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write(path: Path, fmt: str, rows: list[dict[str, Any]], newline: str = "\n") -> Path:
    """``rows`` (``id`` an int, ``text`` a str) as CSV (every text quoted) or JSONL."""
    if fmt == "csv":
        lines = ["id,text"] + [f"{row['id']},{_quoted(row['text'])}" for row in rows]
    else:
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


@dataclasses.dataclass(frozen=True)
class Seed:
    """A seed file's rows, drawn small (the long values are built from a piece and a size,
    so that a failing example prints in a few lines): ``shorts`` as rows, with each of
    ``longs`` (a place, a piece, a size in bytes) inserted in turn."""

    shorts: tuple[str, ...]
    longs: tuple[tuple[int, str, int], ...]
    fmt: str
    newline: str

    def rows(self) -> list[dict[str, Any]]:
        texts = list(self.shorts)
        for place, piece, size in self.longs:
            texts.insert(min(place, len(texts)), _long(piece, size))
        return [{"id": i, "text": text} for i, text in enumerate(texts)]


@st.composite
def seeds_with_long_values(draw: st.DrawFn) -> Seed:
    """Short rows with one to three values of 0.5 to 8 MiB at random places (so their
    records start and end anywhere against the 1 MiB blocks), CSV (LF or CRLF) or JSONL
    (JSON escapes line breaks inside values, so CRLF is tried in CSV only)."""
    count = draw(st.integers(0, 40))
    shorts = tuple(f"s{i}" + draw(st.text(alphabet="abc ,\n", max_size=20)) for i in range(count))
    longs = tuple(
        (draw(st.integers(0, count + 2)), draw(PIECES), draw(st.integers(MIB // 2, 8 * MIB)))
        for _ in range(draw(st.integers(1, 3)))
    )
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    newline = draw(st.sampled_from(["\n", "\r\n"])) if fmt == "csv" else "\n"
    return Seed(shorts, longs, fmt, newline)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=seeds_with_long_values())
def test_long_values_round_trip_exactly(
    tmp_path_factory: pytest.TempPathFactory, case: Seed
) -> None:
    """Every row of a seed with values of 0.5 to 8 MiB (line breaks, quotes and commas in
    them) among short rows is read exactly as written, CSV and JSONL alike."""
    rows, fmt, newline = case.rows(), case.fmt, case.newline
    folder = tmp_path_factory.mktemp("seed")
    path = write(folder / f"seed.{fmt}", fmt, rows, newline)
    table = SeedDatasetGenerator(SeedDatasetConfig(path=str(path))).table()
    assert table.to_pylist() == rows


def _over_the_bound(tmp_path: Path, fmt: str) -> Path:
    """Two short rows, then (the third row) a value just over 64 MiB: in CSV a quoted field of
    short lines (so only its quotes tell where the record starts), in JSONL one line."""
    piece = "x" * 99 + ("\n" if fmt == "csv" else " ")
    rows = [
        {"id": 0, "text": "short"},
        {"id": 1, "text": "also short"},
        {"id": 2, "text": piece * (BOUND // len(piece) + 10)},
        {"id": 3, "text": "after"},
    ]
    return write(tmp_path / f"big.{fmt}", fmt, rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_record_over_the_bound_fails_before_any_request(tmp_path: Path, fmt: str) -> None:
    """A record just over 64 MiB is a configuration error on ``seed_dataset.path`` naming
    the file, the line the record starts on, the bound and what to do; the model is never
    asked and nothing is written."""
    path = _over_the_bound(tmp_path, fmt)
    out = tmp_path / "out"
    async with serve_simulated(SimulationConfig()) as server:
        config = structure_pipeline(
            {
                "providers": [{"name": "p", "endpoint": server.url}],
                "models": [{"alias": "m", "provider": "p", "model": "sim"}],
                "seed_dataset": {"path": str(path)},
                "columns": [{"name": "s", "llm_text": {"model": "m", "prompt": "{{ text }}"}}],
            }
        )
        with pytest.raises(ConfigError) as info:
            await gl.acreate(config, num_records=2, output_dir=out)
        assert server.app.timeline() == []
    message = str(info.value)
    assert info.value.field == "seed_dataset.path"
    assert str(path) in message
    what = "the row starting on line 4" if fmt == "csv" else "line 3"  # CSV: after its header
    assert f"{what} is longer than 64 MiB (67,108,864 bytes)" in message
    assert "parquet" in message
    assert "straddl" not in message
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_search_reads_a_corpus_with_a_long_document(tmp_path: Path, fmt: str) -> None:
    """A search source over a CSV or JSONL corpus with a 3 MiB document (line breaks in it)
    finds the document by a word near its end and reads it back whole."""
    long_text = "Chapter one.\n" + "Some long prose here. " * (3 * MIB // 22) + "\nzanzibar"
    rows = [
        {"id": 0, "text": "The Nile is the longest river in Africa."},
        {"id": 1, "text": long_text},
        {"id": 2, "text": "Mount Everest is the highest mountain."},
    ]
    path = write(tmp_path / f"corpus.{fmt}", fmt, rows)
    async with SearchSource(path, "text", id_field="id").open() as (search, read):
        hits = json.loads(await search.call({"query": "zanzibar"}))["results"]
        assert [hit["id"] for hit in hits] == ["1"]
        assert await read.call({"id": "1"}) == long_text
        river = json.loads(await search.call({"query": "river"}))["results"]
        assert [hit["id"] for hit in river] == ["0"]


def _longer(row: dict[str, Any], fmt: str, newline: str, bound: int) -> bool:
    """Whether ``row`` as ``write`` puts it holds a record longer than ``bound`` as the
    reader measures it: a line (without its break), or in CSV a quoted field (from its
    opening quote to its closing one)."""
    if fmt == "csv":
        field = _quoted(row["text"]).encode()
        line = f"{row['id']},".encode() + field + newline[:-1].encode()  # "\r" of a CRLF
        lines = line.split(b"\n")
        return len(field) - 1 > bound or max(len(part) for part in lines) > bound
    return len(json.dumps(row, ensure_ascii=False).encode()) > bound


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=seeds_with_long_values(), bound=st.sampled_from([MIB, 2 * MIB, 3 * MIB]))
def test_records_over_a_bound_are_refused_at_the_first(
    tmp_path_factory: pytest.TempPathFactory, case: Seed, bound: int
) -> None:
    """With the bound lowered to 1 to 3 MiB, a seed is read exactly when no record is longer
    than the bound, and otherwise refused naming the line of the first that is, wherever the
    records fall against pyarrow's blocks (a record of up to twice a block may fit them)."""
    from gridloom.storage import _text_tables

    rows, fmt, newline = case.rows(), case.fmt, case.newline
    path = write(tmp_path_factory.mktemp("seed") / f"seed.{fmt}", fmt, rows, newline)
    first = next((at for at, row in enumerate(rows) if _longer(row, fmt, newline, bound)), None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_text_tables, "MAX_RECORD_BYTES", bound)
        if first is None:
            assert _text_tables.read_text_table(path, fmt).to_pylist() == rows
            return
        with pytest.raises(_text_tables.RecordTooLong) as info:
            _text_tables.read_text_table(path, fmt)
    head = 1 if fmt == "csv" else 0
    text_lines = [row["text"].count("\n") if fmt == "csv" else 0 for row in rows[:first]]
    assert info.value.line == 1 + head + first + sum(text_lines)
    assert f"longer than {bound // MIB} MiB ({bound:,} bytes)" in str(info.value)


@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    bound=st.integers(0, 30),
    final_break=st.booleans(),
)
def test_the_first_long_line_is_found(lengths: list[int], bound: int, final_break: bool) -> None:
    """The scan for a line longer than the bound finds the first one (or none), with or
    without a final line break."""
    from gridloom.storage._text_tables import _long_line

    data = b"\n".join(b"x" * n for n in lengths) + (b"\n" if final_break else b"")
    starts = [sum(lengths[:at]) + at for at in range(len(lengths))]
    expected = next((s for s, n in zip(starts, lengths, strict=True) if n > bound), None)
    assert _long_line(data, bound) == expected


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=seeds_with_long_values())
def test_a_file_of_long_records_is_read_at_most_twice(
    tmp_path_factory: pytest.TempPathFactory, case: Seed
) -> None:
    """After pyarrow first refuses a long record, the next block tried holds the file's
    longest line or quoted field: pyarrow reads the file at most twice (not once per
    doubling of its block), and the rows are read exactly."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    from gridloom.storage import _text_tables

    rows = case.rows()
    path = write(tmp_path_factory.mktemp("seed") / f"seed.{case.fmt}", case.fmt, rows, case.newline)
    blocks: list[int] = []

    def read(size: int) -> Any:
        blocks.append(size)
        if case.fmt == "csv":
            options = pa_csv.ReadOptions(block_size=size)
            parse = pa_csv.ParseOptions(newlines_in_values=True)
            return pa_csv.read_csv(path, read_options=options, parse_options=parse)
        return pa_json.read_json(path, read_options=pa_json.ReadOptions(block_size=size))

    table = _text_tables._Blocks(path, case.fmt).read(read)
    assert table.to_pylist() == rows
    assert len(blocks) <= 2, blocks
