"""Tools an ``llm_agent`` column offers its model: one-key mappings naming their source::

    tools:
      - {python: "mytools:lookup"}                       # a Python function
      - {mcp: {command: [python, server.py]}}            # an MCP server's tools (stdio)
      - {mcp: {url: "http://127.0.0.1:8000/mcp"}}        # ... or streamable HTTP
      - {search: {seed: corpus.parquet, field: text}}    # full-text search over a file

What can be checked without starting anything is checked here, at load; a Python function's
schema is derived when the pipeline is validated, an MCP server's tools are listed when the
run starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ._schema_refs import ref_problem
from ._urls import check_url
from ._validators import function_path, int64, positive, text, to_tuple

__all__ = [
    "TOOL_KINDS",
    "McpTool",
    "PythonTool",
    "SearchTool",
    "ToolConfig",
    "check_tool_name",
]

#: What a tool's name may hold (OpenAI's and Anthropic's common rule).
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_tool_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a name both APIs accept for a tool."""
    if not _TOOL_NAME.fullmatch(name):
        raise ValueError(f"tool name {name!r} must be 1 to 64 letters, digits, '_' or '-'")


def _optional_name(_inst: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_tool_name(value)


def _object_schema(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValueError(f"{attribute.name} must be a JSON Schema of type object")
    problem = ref_problem(value)
    if problem is not None:
        raise ValueError(problem)


@frozen(kw_only=True)
class ToolConfig:
    """Base of the tool kinds: ``kind`` is the key a tool is written under; ``shorthand``
    the one field whose value that key holds directly."""

    kind: ClassVar[str] = ""
    shorthand: ClassVar[str | None] = None
    #: The key holds the shorthand field's value only when it is not a mapping.
    shorthand_only: ClassVar[bool] = False


@frozen(kw_only=True)
class PythonTool(ToolConfig):
    """``{python: "package.module:function"}``: a Python function, sync or async, as a tool.

    The function takes keyword arguments and returns the result (text, or any JSON-able
    value, sent as JSON). Its arguments' JSON Schema is derived from its type hints (``str``,
    ``int``, ``float``, ``bool``, lists, ``Literal``, optional values; parameters with
    defaults are optional) and its description from its docstring's first paragraph, unless
    given here. A sync function runs in a worker thread. An exception it raises goes back to
    the model as the tool's result.

    Attributes:
        function: the import path ``package.module:function`` (or, from Python, the callable).
        name: the tool's name (default: the function's name).
        description: what the tool does (default: the docstring's first paragraph).
        parameters: the JSON Schema of the arguments (default: derived from the type hints);
            only a local `$ref` is followed (nothing is fetched).
    """

    kind: ClassVar[str] = "python"
    shorthand: ClassVar[str | None] = "function"
    function: str | Callable[..., Any] = attrs.field(validator=function_path)
    name: str | None = attrs.field(default=None, validator=_optional_name)
    description: str | None = attrs.field(default=None, validator=attrs.validators.optional(text))
    parameters: dict[str, Any] | None = attrs.field(default=None, validator=_object_schema)


def _mcp_url(_inst: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    check_url(
        value,
        field="url",
        schemes=("http", "https"),
        example="http://127.0.0.1:8000/mcp",
        credentials=(
            "the run's config.yaml would show them; send them as headers read from"
            " environment variables (headers_env)"
        ),
    )


@frozen(kw_only=True)
class McpTool(ToolConfig):
    """``{mcp: {command: [...]}}`` or ``{mcp: {url: ...}}``: the tools of an MCP server.

    The run starts a stdio server's process (or connects to a streamable-HTTP server) once,
    lists its tools, shares one session among all cells, and stops the process when the run
    ends, however it ends. Needs the ``mcp`` extra (``pip install 'gridloom[mcp]'``).

    Attributes:
        command: a stdio server: the program and its arguments.
        url: a streamable-HTTP server's endpoint (``http://`` or ``https://``; no
            credentials in it, neither ``user:password@`` nor a query parameter named like
            one such as ``?token=``: put them in ``headers_env``).
        env: environment variables for a stdio server, besides a minimal inherited set.
        cwd: the stdio server's working folder (relative to the config file's folder).
        headers_env: HTTP headers whose values are read from environment variables (header
            name to variable name), so secrets stay out of the config.
        tools: the server's tools to offer (all of them when empty).
        startup_timeout: seconds the server has to start and list its tools.
        call_timeout: seconds one tool call may take.
        max_concurrent_calls: this server's tool calls in flight at once, over all cells.
    """

    kind: ClassVar[str] = "mcp"
    command: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    url: str | None = attrs.field(default=None, validator=attrs.validators.optional(_mcp_url))
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    headers_env: dict[str, str] = attrs.field(factory=dict)
    tools: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    startup_timeout: float = attrs.field(default=30.0, validator=positive)
    call_timeout: float = attrs.field(default=60.0, validator=positive)
    max_concurrent_calls: int = attrs.field(
        default=8, validator=[int64, attrs.validators.ge(1), attrs.validators.le(1024)]
    )

    def __attrs_post_init__(self) -> None:
        if bool(self.command) == (self.url is not None):
            raise ValueError("an mcp tool needs exactly one of command (stdio) or url (HTTP)")
        if self.command and any(not isinstance(part, str) or not part for part in self.command):
            raise ValueError("command must be a list of non-empty strings")


@frozen(kw_only=True)
class SearchTool(ToolConfig):
    """``{search: {seed: corpus.parquet, field: text}}``: full-text search over a file's
    rows, and reading a row by its id, as two tools (SQLite FTS5 from Python's standard
    library: nothing to install or serve).

    The run indexes the file once (in a temporary database removed at its end); the search
    tool takes ``{query, limit?}`` and returns the best-ranked rows (BM25) with their ids and
    a snippet; the read tool takes ``{id}`` and returns the row's whole text.

    Attributes:
        seed: a parquet, CSV or JSONL file (relative to the config file's folder), read as
            a seed dataset's file is: a quoted CSV field may hold line breaks, and a
            document (a JSONL line, a CSV row) may be up to 64 MiB.
        field: the text column searched and read.
        id_field: a column holding each row's id (default: the row number).
        title_field: a column shown with each result (a title).
        name: the search tool's name; the read tool is ``<name>_read``.
        max_results: most results one search returns.
    """

    kind: ClassVar[str] = "search"
    seed: str = attrs.field(validator=attrs.validators.and_(attrs.validators.min_len(1), text))
    field: str = attrs.field(validator=attrs.validators.min_len(1))
    id_field: str | None = None
    title_field: str | None = None
    name: str = attrs.field(default="search", validator=_optional_name)
    max_results: int = attrs.field(
        default=5, validator=[int64, attrs.validators.ge(1), attrs.validators.le(100)]
    )


#: Tool kinds by the key they are written under.
TOOL_KINDS: dict[str, type[ToolConfig]] = {
    cls.kind: cls for cls in (PythonTool, McpTool, SearchTool)
}
