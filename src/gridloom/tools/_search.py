"""Local full-text search over a file's rows, as two tools: ``search`` (BM25-ranked rows with
their ids and a snippet) and ``<name>_read`` (a row's whole text by id). The index is SQLite
FTS5 from Python's standard library, built when the run opens the source, in a temporary
folder removed when it closes: nothing to install or serve."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import trio

from ..clients._types import ToolSpec
from ..storage._text_tables import TextTableError, read_text_table
from ._base import Tool, ToolError, ToolSource, ToolSourceError

__all__ = ["MAX_SEARCH_FILE_BYTES", "SearchSource"]

#: The largest file a search source indexes (1 GiB).
MAX_SEARCH_FILE_BYTES = 1024**3
#: The longest query accepted (characters) and the most words kept from it.
_MAX_QUERY = 1000
_MAX_QUERY_WORDS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    if suffix == ".csv":
        return read_text_table(path, "csv")
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_text_table(path, "jsonl")
    raise ToolSourceError(f"search seed {path.name!r}: expected a .parquet, .csv or .jsonl file")


class SearchSource(ToolSource):
    """Full-text search over ``path``'s ``field`` (see the module docstring).

    Args:
        path: the file (already resolved against the config's folder).
        field: the text column indexed and read.
        id_field: the column holding row ids (default: the row number).
        title_field: a column shown with each result.
        name: the search tool's name; the read tool is ``<name>_read``.
        max_results: most results per search.
    """

    def __init__(
        self,
        path: Path,
        field: str,
        *,
        id_field: str | None = None,
        title_field: str | None = None,
        name: str = "search",
        max_results: int = 5,
    ) -> None:
        self.path = path
        self.field = field
        self.id_field = id_field
        self.title_field = title_field
        self.name = name
        self.max_results = max_results
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def key(self) -> Hashable:
        return ("search", str(self.path), self.field, self.id_field, self.title_field, self.name)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:
        with tempfile.TemporaryDirectory(prefix="gridloom-search-") as folder:
            db = await trio.to_thread.run_sync(self._index, Path(folder) / "index.db")
            self._db = db
            try:
                yield [_SearchTool(self), _ReadTool(self)]
            finally:
                self._db = None
                with self._lock:
                    db.close()

    def _index(self, db_path: Path) -> sqlite3.Connection:
        """Read the file and build the FTS5 index (in a worker thread)."""
        where = f"search seed {self.path.name!r}"
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise ToolSourceError(f"{where}: cannot be read: {exc.strerror or exc}") from None
        if size > MAX_SEARCH_FILE_BYTES:
            raise ToolSourceError(f"{where}: larger than {MAX_SEARCH_FILE_BYTES} bytes")
        try:
            table = _read_table(self.path)
        except ToolSourceError:
            raise
        except TextTableError as exc:
            raise ToolSourceError(f"{where}: {exc}") from None
        except Exception as exc:
            raise ToolSourceError(f"{where}: {type(exc).__name__}: {exc}") from None
        for column in (self.field, self.id_field, self.title_field):
            if column is not None and column not in table.column_names:
                known = ", ".join(table.column_names)
                raise ToolSourceError(f"{where} has no column {column!r} (columns: {known})")
        texts = table.column(self.field).to_pylist()
        ids = (
            [str(v) for v in table.column(self.id_field).to_pylist()]
            if self.id_field is not None
            else [str(i) for i in range(len(texts))]
        )
        titles = (
            table.column(self.title_field).to_pylist()
            if self.title_field is not None
            else [""] * len(texts)
        )
        db = sqlite3.connect(db_path, check_same_thread=False)
        db.execute("CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, body)")
        db.executemany(
            "INSERT INTO docs (rowid, doc_id, title, body) VALUES (?, ?, ?, ?)",
            (
                (n, i, "" if t is None else str(t), "" if b is None else str(b))
                for n, (i, t, b) in enumerate(zip(ids, titles, texts, strict=True), start=1)
            ),
        )
        # Reading by id looks the row up here (the first row of a repeated id wins).
        db.execute("CREATE TABLE ids (doc_id TEXT PRIMARY KEY, rid INTEGER)")
        db.executemany(
            "INSERT OR IGNORE INTO ids (doc_id, rid) VALUES (?, ?)",
            ((i, n) for n, i in enumerate(ids, start=1)),
        )
        db.commit()
        return db

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the index (from a worker thread, one query at a time)."""
        db = self._db
        if db is None:
            raise ToolError("the search index is closed")
        with self._lock:
            return list(db.execute(sql, params).fetchall())


def _match(query: str) -> str:
    """``query`` as an FTS5 expression: its words, each quoted, any of them (so text that is
    not FTS5 syntax never fails)."""
    words = _WORD.findall(query[:_MAX_QUERY])[:_MAX_QUERY_WORDS]
    if not words:
        raise ToolError("the query holds no words to search for")
    return " OR ".join('"' + word.replace('"', "") + '"' for word in words)


class _SearchTool(Tool):
    def __init__(self, source: SearchSource) -> None:
        self.source = source
        self.spec = ToolSpec(
            name=source.name,
            description=(
                "Search the documents by keywords; returns the best matches with their ids and"
                f" a snippet. Read a whole document with {source.name}_read."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "keywords to search for"},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": source.max_results,
                        "description": f"most results (up to {source.max_results})",
                    },
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        )

    async def call(self, arguments: Mapping[str, Any]) -> str:
        limit = int(arguments.get("limit", self.source.max_results))
        match = _match(str(arguments["query"]))
        sql = (
            "SELECT doc_id, title, snippet(docs, 2, '', '', ' ... ', 24) FROM docs"
            " WHERE docs MATCH ? ORDER BY rank LIMIT ?"
        )
        rows = await trio.to_thread.run_sync(self.source.query, sql, (match, limit))
        results = [
            {"id": doc_id, **({"title": title} if title else {}), "snippet": snippet}
            for doc_id, title, snippet in rows
        ]
        return json.dumps({"results": results}, ensure_ascii=False)


class _ReadTool(Tool):
    def __init__(self, source: SearchSource) -> None:
        self.source = source
        self.spec = ToolSpec(
            name=f"{source.name}_read",
            description="Read a whole document by the id a search returned.",
            parameters={
                "type": "object",
                "properties": {"id": {"type": "string", "description": "a document id"}},
                "required": ["id"],
                "additionalProperties": False,
            },
        )

    async def call(self, arguments: Mapping[str, Any]) -> str:
        doc_id = str(arguments["id"])
        sql = "SELECT title, body FROM docs WHERE rowid = (SELECT rid FROM ids WHERE doc_id = ?)"
        rows = await trio.to_thread.run_sync(self.source.query, sql, (doc_id,))
        if not rows:
            raise ToolError(f"no document has the id {doc_id!r}")
        title, body = rows[0]
        return f"{title}\n\n{body}" if title else str(body)
