"""MCP servers as a tool source: :class:`McpSource` starts a stdio server (or connects to a
streamable-HTTP one), lists its tools within ``startup_timeout``, shares one session among
all the cells that call them, bounds the calls in flight and their time, and stops the
server's processes when the run ends, however it ends.

Needs the ``mcp`` extra; the SDK is imported here only, and this module only when an ``mcp``
tool is used (``import gridloom`` never imports it).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import jsonschema
import mcp_types
import trio
from mcp import ClientSession, MCPError
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp_types.jsonrpc import CONNECTION_CLOSED

from ..clients._types import ToolSpec
from ..config._schema_refs import ref_problem
from ..config._tools import McpTool, check_tool_name
from ._base import Tool, ToolError, ToolSource, ToolSourceError
from ._mcp_http import http_client, missing_header_variable
from ._mcp_result import render_result
from ._mcp_stdio import MAX_MESSAGE_BYTES, StdioServer, open_stdio_server

__all__ = ["McpSource", "McpToolAdapter"]

#: The most tools a server may list (over all pages), and pages read.
MAX_TOOLS = 1000
MAX_PAGES = 100
#: The longest tool description passed on to the model.
MAX_DESCRIPTION_CHARS = 4096
#: Seconds a stdio server that closed its connection has to report its exit code.
EXIT_REPORT_WAIT = 1.0


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_name(config: McpTool) -> str:
    """How messages name the server: the program (and script) of a stdio server, the
    scheme, host, port and path of an HTTP one — never arguments, env or headers."""
    if config.url is not None:
        parts = urlsplit(config.url)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # not a number: the connection will say so
            port = ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    words = [os.path.basename(config.command[0])]
    if len(config.command) > 1 and not config.command[1].startswith("-"):
        words.append(os.path.basename(config.command[1]))
    return " ".join(words)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a valid JSON Schema of type object, or ``None``."""
    if not isinstance(schema, dict):
        return "its input schema is not an object"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # an unknown $schema
            validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
    except DeprecationWarning:
        return f"its input schema names an unknown $schema {_one_line(repr(schema['$schema']), 80)}"
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the schema"
        return f"its input schema is invalid at {where}: {_one_line(exc.message, 160)}"
    if schema.get("type") != "object":
        return "its input schema is not of type object"
    problem = ref_problem(schema)
    if problem is not None:
        return f"its input schema is unusable: {_one_line(problem, 200)}"
    return None


class McpToolAdapter(Tool):
    """One tool of an MCP server, called through its source's shared session."""

    def __init__(self, source: McpSource, spec: ToolSpec) -> None:
        self.source = source
        self.spec = spec

    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Call the tool on the server; its error, a timeout or the server's end is a
        :class:`ToolError`."""
        return await self.source.call_tool(self.spec.name, arguments)


class McpSource(ToolSource):
    """The tools of one MCP server (an ``{mcp: ...}`` entry of a column's ``tools``).

    Args:
        config: the entry's configuration.
        base_dir: the config file's folder; a relative ``cwd`` is resolved against it.
    """

    def __init__(self, config: McpTool, *, base_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.name = short_name(config)
        base = os.fspath(base_dir) if base_dir is not None else None
        #: The stdio server's working folder: ``cwd`` resolved against the config file's
        #: folder, which is also the default (so ``[python, server.py]`` finds a script
        #: beside the config); the current folder when there is no config file.
        self.cwd: str | None = base
        if config.cwd is not None:
            self.cwd = os.path.normpath(os.path.join(base or os.getcwd(), config.cwd))
        #: The stdio server's program and arguments; ``python`` (or ``python3``) is the
        #: interpreter gridloom runs in, so the server sees the same installed packages.
        self.argv: tuple[str, ...] = config.command
        if config.command and config.command[0] in ("python", "python3"):
            self.argv = (sys.executable, *config.command[1:])
        self.problems: list[str] = []
        self._session: ClientSession | None = None
        self._server: StdioServer | None = None
        self._limiter: trio.CapacityLimiter | None = None
        self._ended: str | None = None
        self._closing: trio.Event | None = None
        self._calls: set[trio.CancelScope] = set()

    @property
    def key(self) -> Hashable:
        """The server's identity — its command, folder and environment, or its URL and
        headers — and the tools kept: columns naming the same server and the same tools
        share one session (another ``tools:`` subset opens a session of its own)."""
        kept = tuple(sorted(self.config.tools))
        if self.config.url is not None:
            headers = tuple(sorted(self.config.headers_env.items()))
            return ("mcp", self.config.url, headers, kept)
        return ("mcp", self.argv, self.cwd, tuple(sorted(self.config.env.items())), kept)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:
        """Start (or connect to) the server, list its tools, and give them while open;
        leaving stops the server's processes (shielded and bounded, also when cancelled).

        The connection lives in a task of its own: if it fails mid-run (an HTTP server gone),
        the calls in flight and later fail with a :class:`ToolError`; the run goes on.

        Raises:
            ToolSourceError: the server did not start, did not list its tools within
                ``startup_timeout``, or lacks a tool named in ``tools``.
        """
        if self._closing is not None:
            raise RuntimeError(f"mcp server {self.name!r} is already open")
        self.problems = []
        self._ended = None
        self._closing = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                tools = await nursery.start(self._serve)
                try:
                    yield tools
                finally:
                    self._closing.set()
        except BaseExceptionGroup as group:
            leaf = _sole(group)
            if leaf is group:
                raise
            # The one exception, as raised (its own cause and context kept), not the group
            # the nurseries in between wrapped it in.
            chain = leaf.__cause__, leaf.__context__, leaf.__suppress_context__
            try:
                raise leaf
            finally:
                leaf.__cause__, leaf.__context__, leaf.__suppress_context__ = chain
        finally:
            self._closing = None

    async def _serve(self, *, task_status: trio.TaskStatus[list[Tool]]) -> None:
        """Hold the connection: start it, report the tools, wait for the end of the run.
        A failure after start-up ends the connection, not the run."""
        started = False
        try:
            async with AsyncExitStack() as stack:
                session = await self._connect(stack)
                failure, tools = await self._start(session)
                if failure is not None:
                    raise ToolSourceError(failure)
                self._session = session
                self._limiter = trio.CapacityLimiter(self.config.max_concurrent_calls)
                task_status.started(tools)
                started = True
                assert self._closing is not None
                await self._closing.wait()
        except ToolSourceError:
            raise
        except Exception as exc:  # an ExceptionGroup too, when it holds only Exceptions
            error = _sole(exc) if isinstance(exc, BaseExceptionGroup) else exc
            if isinstance(error, ToolSourceError):
                raise error from None
            what = f"{type(error).__name__}: {_one_line(str(error), 200)}"
            if not started:
                raise ToolSourceError(f"mcp server {self.name!r} failed to start: {what}") from None
            self._ended = f"mcp server {self.name!r} connection failed: {what}"
        finally:
            if self._ended is None:
                self._ended = f"mcp server {self.name!r} is closed"
            self._session = None
            self._server = None
            for scope in list(self._calls):
                scope.cancel()

    async def _connect(self, stack: AsyncExitStack) -> ClientSession:
        """Start the server (or open the HTTP transport) and the session, on ``stack``."""
        try:
            if self.config.url is not None:
                read, write = await stack.enter_async_context(self._http())
            else:
                env = get_default_environment() | dict(self.config.env)
                opened = open_stdio_server(self.argv, env=env, cwd=self.cwd)
                self._server, read, write = await stack.enter_async_context(opened)
        except (OSError, BaseExceptionGroup) as exc:
            error = _sole(exc) if isinstance(exc, BaseExceptionGroup) else exc
            if not isinstance(error, OSError):
                raise
            reason = error.strerror or type(error).__name__
            raise ToolSourceError(f"mcp server {self.name!r} could not start: {reason}") from None
        session = ClientSession(
            read, write, client_info=mcp_types.Implementation(name="gridloom", version="1")
        )
        return await stack.enter_async_context(session)

    def _http(self) -> AbstractAsyncContextManager[tuple[Any, Any]]:
        """The streamable-HTTP transport, with headers read from the environment."""
        missing = missing_header_variable(self.config.headers_env)
        if missing is not None:
            header, variable = missing
            raise ToolSourceError(
                f"mcp server {self.name!r}: environment variable {variable!r} "
                f"(for header {header!r}) is not set"
            )
        client = http_client(
            self.config.headers_env,
            connect_timeout=self.config.startup_timeout,
            limit=MAX_MESSAGE_BYTES,
        )
        url = self.config.url or ""

        @asynccontextmanager
        async def transport() -> AsyncIterator[tuple[Any, Any]]:
            async with (
                client,
                streamable_http_client(
                    url, http_client=client, max_sse_event_size=MAX_MESSAGE_BYTES
                ) as streams,
            ):
                yield streams

        return transport()

    async def _start(self, session: ClientSession) -> tuple[str | None, list[Tool]]:
        """Initialize and list the tools within ``startup_timeout``: (failure, tools)."""
        listed: list[mcp_types.Tool] = []
        with trio.move_on_after(self.config.startup_timeout) as scope:
            try:
                await session.initialize()
                cursor: str | None = None
                for _ in range(MAX_PAGES):
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None or len(listed) >= MAX_TOOLS:
                        break
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    return await self._end_reason(starting=True), []
                return f"mcp server {self.name!r} failed to start: {_one_line(exc.message)}", []
            except (OSError, httpx2.HTTPError, anyio.BrokenResourceError) as exc:
                return f"mcp server {self.name!r} failed to start: {_one_line(str(exc))}", []
        if scope.cancelled_caught:
            message = f"mcp server {self.name!r} did not start within "
            message += f"{self.config.startup_timeout:g} s"
            return message + self._stderr_suffix(), []
        return self._select(listed[:MAX_TOOLS])

    def _select(self, listed: list[mcp_types.Tool]) -> tuple[str | None, list[Tool]]:
        """The listed tools gridloom can offer (and ``problems`` for those left out)."""
        names = [tool.name for tool in listed]
        wanted = set(self.config.tools)
        unknown = [name for name in self.config.tools if name not in names]
        if unknown:
            known = ", ".join(_one_line(repr(name), 80) for name in names[:50]) or "none"
            if len(names) > 50:
                known += f" and {len(names) - 50} more"
            missing = ", ".join(repr(name) for name in unknown)
            return f"mcp server {self.name!r} has no tool {missing} (its tools: {known})", []
        tools: list[Tool] = []
        seen: set[str] = set()
        for tool in listed:
            if wanted and tool.name not in wanted:
                continue
            problem = self._tool_problem(tool, seen)
            if problem is not None:
                self.problems.append(
                    f"mcp server {self.name!r}: tool {_one_line(repr(tool.name), 80)} left out: "
                    + problem
                )
                continue
            seen.add(tool.name)
            description = tool.description or tool.title or ""
            spec = ToolSpec(
                name=tool.name,
                description=description[:MAX_DESCRIPTION_CHARS],
                parameters=dict(tool.input_schema),
            )
            tools.append(McpToolAdapter(self, spec))
        return None, tools

    @staticmethod
    def _tool_problem(tool: mcp_types.Tool, seen: set[str]) -> str | None:
        try:
            check_tool_name(tool.name)
        except ValueError as exc:
            return _one_line(str(exc), 160)
        if tool.name in seen:
            return "another tool of the server has the same name"
        return schema_problem(tool.input_schema)

    def _stderr_suffix(self) -> str:
        line = self._server.last_stderr_line() if self._server is not None else ""
        return f": {line}" if line else ""

    async def _end_reason(self, *, starting: bool = False) -> str:
        """Why the connection ended, in one line (waiting briefly for a stdio server's exit
        code); remembered, so later calls fail at once."""
        server = self._server
        if server is not None and server.broken is not None:
            reason = f"mcp server {self.name!r} {server.broken}"
        elif server is not None:
            with trio.move_on_after(EXIT_REPORT_WAIT):
                await server.exited.wait()
            reason = self._exit_reason(server.returncode)
        else:
            reason = f"mcp server {self.name!r} closed its connection"
        if starting:
            reason += " during start-up" + self._stderr_suffix()
        self._ended = reason
        return reason

    def _ended_now(self) -> str | None:
        """Why calls cannot go through now (the server's end), without waiting."""
        if self._ended is not None:
            return self._ended
        server = self._server
        if server is not None and server.returncode is not None:
            self._ended = self._exit_reason(server.returncode)
        return self._ended

    def _exit_reason(self, code: int | None) -> str:
        if code is None:
            return f"mcp server {self.name!r} closed its connection"
        if code < 0:
            return f"mcp server {self.name!r} was killed by signal {-code}"
        return f"mcp server {self.name!r} exited (code {code})"

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call tool ``name`` of the server (within the source's limits) and render its
        result as text.

        Raises:
            ToolError: the tool reported an error, did not answer within ``call_timeout``,
                or the server has ended.
        """
        session, limiter = self._session, self._limiter
        if session is None or limiter is None:
            raise ToolError(f"mcp server {self.name!r} is not open")
        if (ended := self._ended_now()) is not None:
            raise ToolError(ended)
        async with limiter:
            if (ended := self._ended_now()) is not None:
                raise ToolError(ended)
            ending = trio.CancelScope()  # cancelled when the connection ends
            self._calls.add(ending)
            try:
                with ending, trio.move_on_after(self.config.call_timeout):
                    return await self._call(session, name, arguments)
            finally:
                self._calls.discard(ending)
            if ending.cancelled_caught:
                raise ToolError(self._ended or f"mcp server {self.name!r} is closed")
        timeout = f"{self.config.call_timeout:g}"
        raise ToolError(
            f"tool {name!r} of mcp server {self.name!r} did not answer within {timeout} s"
        )

    async def _call(self, session: ClientSession, name: str, arguments: Mapping[str, Any]) -> str:
        try:
            result = await session.call_tool(name, dict(arguments))
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED and self._server is not None:
                raise ToolError(await self._end_reason()) from None
            # Over HTTP a request can be lost alone (an answer over the size bound): the
            # session goes on; a server gone for good ends the connection task instead.
            message = _one_line(exc.message)
            raise ToolError(f"mcp server {self.name!r}, tool {name!r}: {message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ToolError(await self._end_reason()) from None
        if result.is_error:
            raise ToolError(render_result(result) or f"tool {name!r} reported an error")
        return render_result(result)


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a chain of single-member groups holds, or the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if not isinstance(exc, BaseExceptionGroup) else group
