"""An MCP server for gridloom's tests (stdio by default, ``--http PORT`` for streamable HTTP,
with ``--json`` for JSON answers rather than event streams).

Tools: ``echo``, ``add``, ``fail`` (raises), ``sleep`` (for hung calls), ``exit`` (ends the
process mid-run), ``probe`` (reports how many calls were in flight at once), ``picture``
(non-text content), ``record`` (structured content only), ``big`` (a long result),
``secret_env`` (reads the environment), ``where`` (the working folder), ``shout`` (writes
to stderr), ``header`` (an HTTP request header it received) and ``bad_schema`` (declared
with an input schema that is not a valid JSON Schema).

Start-up modes for the failure tests: ``--die-at-start`` (writes a line to stderr and exits
with code 3), ``--mute`` (never reads its stdin, so it never answers ``initialize``) and
``--spawn-child PIDFILE`` (starts a long-lived child process that ignores SIGTERM and writes
its pid to PIDFILE, to check that the whole process tree is stopped).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import time

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import CallToolResult

_state = {"in_flight": 0, "max_in_flight": 0}
_reached = anyio.Event()


def _bad_schema(x: int) -> int:
    """A tool whose declared input schema is broken."""
    return x


_BAD = Tool.from_function(_bad_schema, name="bad_schema").model_copy(
    update={"parameters": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}}
)

app = MCPServer("gridloom-test-server", tools=[_BAD])


@app.tool()
def echo(text: str) -> str:
    """Return the text as it came."""
    return text


@app.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@app.tool()
def fail(message: str) -> str:
    """Raise an error with the message (the server sends it as the tool's error)."""
    raise ToolError(message)


@app.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "awake"


@app.tool()
def exit(code: int) -> str:
    """End the server's process at once."""
    sys.stdout.flush()
    os._exit(code)


@app.tool()
async def probe(target: int) -> int:
    """Wait until ``target`` calls are in flight (or 0.3 s), then return the most seen."""
    global _reached
    _state["in_flight"] += 1
    _state["max_in_flight"] = max(_state["max_in_flight"], _state["in_flight"])
    try:
        if _state["in_flight"] >= target:
            _reached.set()
        with anyio.move_on_after(0.3):
            await _reached.wait()
        await anyio.sleep(0.05)  # lets any call beyond the limit arrive and be counted
        return _state["max_in_flight"]
    finally:
        _state["in_flight"] -= 1
        if _state["in_flight"] == 0:
            _reached = anyio.Event()


@app.tool()
def picture() -> Image:
    """Return a one-pixel PNG."""
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
    )
    return Image(data=png, format="png")


@app.tool()
def record(name: str) -> CallToolResult:
    """Return a structured record, with no text content."""
    return CallToolResult(content=[], structured_content={"name": name, "length": len(name)})


@app.tool()
def big(size: int) -> str:
    """Return ``size`` characters."""
    return "x" * size


@app.tool()
def secret_env(variable: str) -> str:
    """Return an environment variable's value (to check ``env`` reaches the server)."""
    return os.environ.get(variable, "<unset>")


@app.tool()
def where() -> str:
    """Return the server's working folder."""
    return os.getcwd()


@app.tool()
def shout(size: int) -> str:
    """Write ``size`` bytes to stderr, then answer (stderr must not reach the terminal)."""
    sys.stderr.write("e" * size + "\nlast words\n")
    sys.stderr.flush()
    return "done"


@app.tool()
def header(name: str, ctx: Context) -> str:
    """Return an HTTP request header the server received (over streamable HTTP)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get(name, "<none>")) if headers is not None else "<no request>"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="HTTP: JSON answers, not SSE")
    parser.add_argument("--die-at-start", action="store_true")
    parser.add_argument("--mute", action="store_true")
    parser.add_argument("--spawn-child", default=None)
    args = parser.parse_args()
    if args.die_at_start:
        print("starting...", file=sys.stderr)
        print("fatal: the test server was told to die", file=sys.stderr)
        sys.exit(3)
    if args.mute:
        print("muted: not reading stdin", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    if args.spawn_child:
        # The child ignores SIGTERM: only the SIGKILL to the server's group stops it.
        code = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        with open(args.spawn_child, "w") as file:
            file.write(str(child.pid))
    if args.http is not None:
        app.run("streamable-http", host="127.0.0.1", port=args.http, json_response=args.json)
    else:
        app.run()


if __name__ == "__main__":
    main()
