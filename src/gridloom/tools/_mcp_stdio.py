"""The stdio transport to an MCP server, owned by gridloom rather than the SDK's so that the
run knows the server's exit code, keeps a bounded tail of its stderr (never the terminal),
bounds every message it reads, and stops the server's whole process group however the run
ends (a normal end, an error, a cancellation on SIGINT).

Messages are newline-delimited JSON-RPC, as the MCP stdio transport specifies; they cross to
the SDK's :class:`mcp.ClientSession` through anyio memory streams (the SDK runs on anyio,
which runs on trio).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

__all__ = ["MAX_MESSAGE_BYTES", "StdioServer", "open_stdio_server"]

#: The longest message (one line of stdout) a server may send.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: How much of the server's stderr is kept (its tail).
STDERR_TAIL_BYTES = 4096
#: Seconds a server has to exit after its stdin closes, before it is terminated.
EXIT_GRACE = 2.0
#: Seconds between SIGTERM and SIGKILL to the server's process group.
KILL_AFTER = 2.0
_CHUNK = 65536


class StdioServer:
    """A running stdio server: its process, the tail of its stderr, and why its connection
    ended (if it has)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.exited = trio.Event()
        self.broken: str | None = None
        self._stderr = bytearray()

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited."""
        return self.process.returncode

    def keep_stderr(self, data: bytes | bytearray) -> None:
        """Add ``data`` to the stderr tail, keeping the last :data:`STDERR_TAIL_BYTES`."""
        self._stderr += data
        del self._stderr[:-STDERR_TAIL_BYTES]

    def last_stderr_line(self, limit: int = 200) -> str:
        """The last non-empty line the server wrote to stderr (cut to ``limit``), or ``""``."""
        lines = self._stderr.decode("utf-8", "replace").splitlines()
        for line in reversed(lines):
            if line.strip():
                line = line.strip()
                return line if len(line) <= limit else line[: limit - 3] + "..."
        return ""


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def _stop_group(process: trio.Process) -> None:
    """How a cancelled server is stopped: SIGTERM to its process group, SIGKILL later."""
    _signal_group(process.pid, signal.SIGTERM)
    await trio.sleep(KILL_AFTER)
    _signal_group(process.pid, signal.SIGKILL)


@asynccontextmanager
async def open_stdio_server(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None
) -> AsyncIterator[
    tuple[
        StdioServer,
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """Start the server (in a new session, so its children can be stopped with it) and yield
    it with the streams a :class:`mcp.ClientSession` reads and writes.

    Leaving the context closes the server's stdin, gives it :data:`EXIT_GRACE` seconds to
    exit (none when leaving on an exception or a cancellation), then stops its process group
    (SIGTERM, SIGKILL :data:`KILL_AFTER` seconds later); this runs shielded and bounded in
    time, also under cancellation.

    Raises:
        OSError: the program could not be started.
    """
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    try:
        async with _serving(argv, env, cwd, read_send, write_receive) as server:
            yield server, read_receive, write_send
    finally:
        for stream in (read_send, read_receive, write_send, write_receive):
            stream.close()


@asynccontextmanager
async def _serving(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None,
    read_send: MemoryObjectSendStream[SessionMessage | Exception],
    write_receive: MemoryObjectReceiveStream[SessionMessage],
) -> AsyncIterator[StdioServer]:
    pid: int | None = None
    try:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    list(argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                    env=dict(env),
                    cwd=cwd,
                    start_new_session=True,
                    deliver_cancel=_stop_group,
                )
            )
            pid = process.pid
            server = StdioServer(process)
            nursery.start_soon(_read_stdout, server, read_send)
            nursery.start_soon(_write_stdin, server, write_receive, read_send)
            nursery.start_soon(_read_stderr, server)
            nursery.start_soon(_watch_exit, server)
            grace = EXIT_GRACE
            try:
                yield server
            except BaseException:
                grace = 0.0  # an error or a cancellation (SIGINT): stop the server at once
                raise
            finally:
                with trio.CancelScope(shield=True):
                    write_receive.close()
                    read_send.close()
                    if process.stdin is not None:
                        await process.stdin.aclose()
                    with trio.move_on_after(grace):
                        await server.exited.wait()
                    nursery.cancel_scope.cancel()  # stops the process group if still running
    finally:
        if pid is not None:
            # Children that outlived the server (or ignored SIGTERM) go with its group.
            _signal_group(pid, signal.SIGKILL)


async def _watch_exit(server: StdioServer) -> None:
    await server.process.wait()
    server.exited.set()


async def _read_stdout(
    server: StdioServer, sink: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    stdout = server.process.stdout
    assert stdout is not None
    buffer = bytearray()
    async with sink:
        try:
            while data := await stdout.receive_some(_CHUNK):
                buffer += data
                *lines, rest = buffer.split(b"\n")
                buffer = bytearray(rest)
                limit = MAX_MESSAGE_BYTES
                if len(buffer) > limit or any(len(line) > limit for line in lines):
                    # The session cannot tell which request it answered: end the connection.
                    server.broken = f"sent a message longer than {limit} bytes"
                    return
                for line in lines:
                    if line.strip():
                        await sink.send(_parse(bytes(line)))
        except (trio.ClosedResourceError, trio.BrokenResourceError, anyio.ClosedResourceError):
            return
        except anyio.BrokenResourceError:  # the session stopped reading
            return


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as exc:
        return exc
    return SessionMessage(message)


async def _write_stdin(
    server: StdioServer,
    source: MemoryObjectReceiveStream[SessionMessage],
    reader_sink: MemoryObjectSendStream[SessionMessage | Exception],
) -> None:
    stdin = server.process.stdin
    assert stdin is not None
    try:
        async with source:
            async for message in source:
                text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await stdin.send_all(text.encode("utf-8") + b"\n")
    except (trio.ClosedResourceError, trio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        # The server stopped reading (or the transport is closing): end the session's
        # reads, so that no request waits forever.
        await reader_sink.aclose()


async def _read_stderr(server: StdioServer) -> None:
    stderr = server.process.stderr
    assert stderr is not None
    try:
        while data := await stderr.receive_some(_CHUNK):
            server.keep_stderr(data)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        return
