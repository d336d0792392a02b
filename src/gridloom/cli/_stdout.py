"""Where a command's output goes: with ``--json`` stdout is the command's alone, and no text
gridloom prints can fail to encode.

**``--json``.** Stdout carries exactly the command's JSON (``simulate``: one document a line),
yet a command runs code that is not gridloom's: custom functions, plugins, the modules they
import, libraries writing to stdout from C. For the command's duration (:func:`json_stdout`):

- the JSON goes to a private duplicate of the file descriptor behind ``sys.stdout`` (fd 1 in
  a process of its own; an in-process runner's stream without a descriptor, such as click's
  ``CliRunner``, keeps receiving it itself);
- that descriptor, and fd 1, then point at stderr (:func:`os.dup2`), so C-level writes and
  child processes started meanwhile write to stderr (C's buffered ``printf`` output is
  flushed before the descriptors are put back);
- ``sys.stdout`` is a stream writing to ``sys.stderr``, so ``print`` keeps its order among
  the log lines; its ``isatty()`` answers for the real stdout, so the progress display's
  ``auto`` mode ("a bar when stdout and stderr are terminals") decides as before.

Everything is put back when the command returns or exits. The watchdog's abrupt exit never
returns, so :func:`write_json` flushes each document as it writes it.

**Text that cannot be encoded.** A string may hold what the output's encoding cannot: a lone
surrogate (``"\\ud800"`` in a config, a file name of non-UTF-8 bytes decoded with
``surrogateescape``, a value a custom function returned), or any non-ASCII character on an
ASCII stdout. JSON writes lone surrogates as ``\\uXXXX`` escapes (what a JSON reader turns back
into the same string), and falls back to ASCII escapes for an encoding that cannot hold the
rest; plain text on stdout (and stderr) is written with ``errors="backslashreplace"`` (stderr's
usual policy) for the command's duration (:func:`text_stdout`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["json_stdout", "json_text", "text_stdout", "write_json"]

#: Where JSON goes while :func:`json_stdout` is active (else ``sys.stdout``).
_json_stream: TextIO | None = None

#: A surrogate code point in a ``str``: always a lone one (a valid pair is one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def json_text(doc: Any, *, indent: int | None = 2, ascii_only: bool = False) -> str:
    """``doc`` as JSON text that any UTF-8 stream can take: non-ASCII characters as they are
    (``ascii_only``: escaped), lone surrogates escaped as ``\\uXXXX``, anything else JSON
    has no type for as its ``str()``."""
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only, default=str)
    return text if ascii_only else _SURROGATE.sub(_escape, text)


def write_json(doc: Any, *, indent: int | None = 2) -> None:
    """Print one JSON document (and a newline) where the command's JSON goes, and flush it.

    A stream whose encoding cannot hold the text (an ASCII stdout) gets it with every
    non-ASCII character escaped: the same document."""
    stream = _json_stream if _json_stream is not None else sys.stdout
    text = json_text(doc, indent=indent)
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeError, LookupError):
        text = json_text(doc, indent=indent, ascii_only=True)
    stream.write(text + "\n")
    stream.flush()


def _fileno(stream: object) -> int | None:
    """The file descriptor behind ``stream``; ``None`` for a stream without one."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


class _Diverted(io.TextIOBase):
    """``sys.stdout`` while :func:`json_stdout` is active: writes go to ``target`` (stderr);
    ``isatty()`` answers for the real stdout."""

    def __init__(self, target: TextIO, *, tty: bool) -> None:
        super().__init__()
        self._target = target
        self._tty = tty

    @property
    def encoding(self) -> str:  # type: ignore[override]  # typeshed: a plain attribute
        return self._target.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._target.errors

    @property
    def buffer(self) -> Any:
        """The byte stream beneath (``sys.stdout.buffer.write(b"...")``)."""
        return self._target.buffer

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._target.write(text)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self._target.fileno()


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (``fflush(NULL)``), where C code's ``printf``
    waits for the process's exit otherwise; nothing where there is no C library to ask."""
    if os.name != "posix":
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """While inside, only :func:`write_json` writes to stdout; what else is written there
    (by Python or C code, or a child process) goes to stderr."""
    global _json_stream
    if _json_stream is not None:  # already inside
        yield
        return
    real, err = sys.stdout, sys.stderr
    for stream in (real, err):
        with contextlib.suppress(Exception):
            stream.flush()
    fd = _fileno(real)
    err_fd = _fileno(err)
    if err_fd is None:
        err_fd = 2
    saved: dict[int, int] = {}  # diverted descriptor: its duplicate
    target: TextIO = real
    try:
        # sys.stdout's descriptor (fd 1 in a process of its own) and fd 1 itself
        for diverted in dict.fromkeys(d for d in (fd, 1) if d is not None and d != err_fd):
            saved[diverted] = os.dup(diverted)  # not inheritable: no child gets the JSON's fd
        if fd in saved:
            target = open(saved[fd], "w", encoding=real.encoding or "utf-8", closefd=False)  # noqa: SIM115
        for diverted in saved:
            os.dup2(err_fd, diverted)
    except (OSError, ValueError):  # a descriptor closed: divert what Python writes only
        _restore(saved)
        saved, target = {}, real
    _json_stream = target
    sys.stdout = _Diverted(err, tty=_isatty(real))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout = real
        with contextlib.suppress(Exception):
            real.flush()  # what was written to it meanwhile goes to stderr, where fd points
        _json_stream = None
        if saved:
            _flush_c_stdio()  # C code's buffered output went to stderr too
        if target is not real:
            with contextlib.suppress(Exception):
                target.close()  # flushes; the descriptor is closed by _restore
        _restore(saved)


def _restore(saved: dict[int, int]) -> None:
    """Point each diverted descriptor back where its duplicate points, and close those."""
    for diverted, duplicate in saved.items():
        with contextlib.suppress(OSError):
            os.dup2(duplicate, diverted)
        with contextlib.suppress(OSError):
            os.close(duplicate)


@contextlib.contextmanager
def text_stdout() -> Iterator[None]:
    """While inside, text ``sys.stdout`` or ``sys.stderr`` cannot encode is written escaped
    (``errors="backslashreplace"``) instead of raising."""
    with contextlib.ExitStack() as stack:
        for name in ("stdout", "stderr"):
            stack.enter_context(_escaping(getattr(sys, name)))
        yield


@contextlib.contextmanager
def _escaping(stream: object) -> Iterator[None]:
    """``stream`` (a text file) writes ``errors="backslashreplace"`` while inside."""
    errors = getattr(stream, "errors", None)
    if not isinstance(stream, io.TextIOWrapper) or errors in ("backslashreplace", None):
        yield
        return
    try:
        stream.reconfigure(errors="backslashreplace")
    except (OSError, ValueError):  # pragma: no cover - a closed or detached stream
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            stream.reconfigure(errors=errors)
