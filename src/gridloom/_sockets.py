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
room as usual.

Reading waits first, then reads the descriptor (:func:`receive`). ``receive_some`` tries the
read first and waits only when nothing is there; but both ends read when the other side has
yet to write (an answer comes a model's latency after its request; the next request, after the
client has handled the answer), so that first read nearly always failed: a system call, an
exception caught, and the layers of trio's socket wrapper, for every answer and every request.
Waiting is the checkpoint each read had anyway. TLS streams, and systems that are not POSIX
(where a socket is no file descriptor), keep ``send_all`` and ``receive_some``.
"""

from __future__ import annotations

import os

import trio

__all__ = ["descriptor", "receive", "send"]

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


async def receive(stream: trio.abc.Stream, fd: int, max_bytes: int) -> bytes:
    """``stream.receive_some(max_bytes)``, read straight from ``fd`` (:func:`descriptor`; -1:
    through the stream) once the socket is readable: ``b""`` at the end of the stream. Errors
    are the stream's: ``trio.BrokenResourceError`` when the connection broke,
    ``trio.ClosedResourceError`` when it was closed meanwhile."""
    if fd < 0:
        return bytes(await stream.receive_some(max_bytes))
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:  # woken with nothing to read after all: wait again
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
