"""Plain TCP sockets read and written through their descriptors, for the two ends of a model
request on this machine: gridloom's HTTP/1.1 client (:mod:`gridloom.clients._wire`) and the
simulated endpoint's server (:mod:`gridloom.simulated._http11`).

``trio.SocketStream.send_all`` and ``receive_some`` each end with a checkpoint of their own (a
pass through the scheduler, even when the socket never made the task wait) and go through a
conflict detector, a memoryview and an error translation. A request and its answer are one
write and one read on each side, so those passes were a third of the client's task steps.
Here the descriptor trio already made non-blocking is written with ``os.write`` and read with
``os.read``; the caller waits (``trio.lowlevel.wait_readable`` / ``wait_writable``, each a
checkpoint) only where the kernel says it must. TLS streams, and systems that are not POSIX
(where a socket is no file descriptor), keep the stream.

Errors are the ``OSError`` the system call raised (``ConnectionResetError``,
``BrokenPipeError``...); each caller turns them into its own.
"""

from __future__ import annotations

import os

import trio

__all__ = ["descriptor", "read_now", "write_all"]

#: Whether a socket may be read and written with ``os.read``/``os.write``.
DIRECT = os.name == "posix"


def descriptor(stream: trio.abc.Stream) -> int:
    """The descriptor of a plain TCP ``stream`` to read and write directly, else -1."""
    if DIRECT and isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    return -1


async def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; wait for room only when the kernel's buffer is full (so no
    checkpoint when it is not)."""
    view = memoryview(data)
    sent, size = 0, len(data)
    while sent < size:
        try:
            sent += os.write(fd, view[sent:])
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)


def read_now(fd: int, size: int) -> bytes | None:
    """Up to ``size`` bytes that are there now (``b""``: the peer closed), or ``None`` if
    there are none yet."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
