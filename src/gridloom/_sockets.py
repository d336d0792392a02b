"""Sending on a plain TCP stream without the checkpoint ``send_all`` ends with, for the two
ends of a model request on this machine: gridloom's HTTP/1.1 client
(:mod:`gridloom.clients._wire`) and the simulated endpoint's server
(:mod:`gridloom.simulated._http11`).

``trio.SocketStream.send_all`` ends with a checkpoint of its own even when the kernel took every
byte at once (a pass through the scheduler), and goes through a conflict detector, a memoryview
and an error translation. A request, and an answer, is one small write that the kernel always
takes at once: that pass was a quarter of the client's task steps per model request. Here the
bytes are first written straight to the descriptor trio already made non-blocking
(``os.write``); only what the kernel did not take goes through ``send_all``, which waits for
room as usual. Reading stays with ``receive_some``: it tries the read first and waits only when
nothing is there, and the wait for an answer is the checkpoint every exchange keeps. TLS
streams, and systems that are not POSIX (where a socket is no file descriptor), keep
``send_all`` for everything.
"""

from __future__ import annotations

import os

import trio

__all__ = ["descriptor", "send"]

#: Whether a socket may be written with ``os.write``.
DIRECT = os.name == "posix"


def descriptor(stream: trio.abc.Stream) -> int:
    """The descriptor of a plain TCP ``stream`` to write directly, else -1."""
    if DIRECT and isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    return -1


async def send(stream: trio.abc.Stream, fd: int, data: bytes) -> None:
    """``stream.send_all(data)``, with what the kernel takes at once written straight to
    ``fd`` (:func:`descriptor`; -1: all through the stream). Errors are the stream's:
    ``trio.BrokenResourceError`` when the peer has gone."""
    if fd >= 0:
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if sent == len(data):
            return
        await stream.send_all(memoryview(data)[sent:])
        return
    await stream.send_all(data)
