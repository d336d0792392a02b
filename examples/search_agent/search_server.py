"""The recipe's search tools as an MCP server (stdio), written with the ``mcp`` package:
``search`` (BM25-ranked articles of corpus.jsonl, with ids and snippets) and ``read`` (an
article by id), over an SQLite FTS5 index built in memory at start-up.

    python examples/search_agent/search_server.py            # serves MCP on stdin/stdout

gridloom starts it once per run (``tools: [{mcp: {command: [python, search_server.py]}}]``),
shares one session among all trajectories, and stops it when the run ends. Point the
recipe at any other MCP search server (a web search, your own index) the same way.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

CORPUS = Path(__file__).resolve().parent / "corpus.jsonl"
WORD = re.compile(r"\w+")

app = MCPServer("gridloom-search-agent-corpus")
db = sqlite3.connect(":memory:", check_same_thread=False)


def build_index() -> None:
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, body)")
    with CORPUS.open() as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    db.executemany(
        "INSERT INTO docs (doc_id, title, body) VALUES (?, ?, ?)",
        ((row["id"], row["title"], row["text"]) for row in rows),
    )
    db.commit()


@app.tool()
def search(query: str, limit: int = 5) -> str:
    """Search the encyclopedia by keywords; returns the best matching articles' ids, titles
    and snippets. Read a whole article with read."""
    words = WORD.findall(query)[:32]
    if not words:
        return json.dumps({"results": [], "note": "the query holds no words"})
    match = " OR ".join('"' + word + '"' for word in words)
    rows = db.execute(
        "SELECT doc_id, title, snippet(docs, 2, '', '', ' ... ', 20) FROM docs"
        " WHERE docs MATCH ? ORDER BY rank LIMIT ?",
        (match, max(1, min(int(limit), 10))),
    ).fetchall()
    results = [{"id": i, "title": t, "snippet": s} for i, t, s in rows]
    return json.dumps({"results": results})


@app.tool()
def read(id: str) -> str:
    """Read a whole article by the id a search returned."""
    row = db.execute("SELECT title, body FROM docs WHERE doc_id = ?", (id,)).fetchone()
    if row is None:
        raise ToolError(f"no article has the id {id!r}")
    return f"{row[0]}\n\n{row[1]}"


if __name__ == "__main__":
    build_index()
    app.run()
