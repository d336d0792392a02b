"""A small HTTP/1.1 server for the simulated endpoint: h11 on trio streams, ASGI to the app.

The simulated endpoint is the harness every benchmark measures gridloom against, and it
shares the machine with the engine, so its own cost per request matters: this server does
only what the simulated app needs, at about a quarter of a general-purpose server's CPU.

- HTTP/1.1 with keep-alive; one request at a time per connection (no pipelining).
- The app sees ``http`` scopes only. ``receive()`` gives the whole request body once; called
  again, it waits until the client closes the connection and then reports
  ``http.disconnect`` (a hanging answer uses that to end when the client gives up). Bytes
  read meanwhile are kept for the connection's next request.
- An app raising :class:`~gridloom.simulated._asgi.DroppedConnection` has its connection
  closed without an answer; any other exception before the response starts is a 500.
- Stopping closes the listeners and the idle keep-alive connections at once; a connection
  with a request in progress answers it with ``Connection: close`` and closes (it never starts
  another), for up to ``grace`` seconds, after which it is cancelled and closed.
- Status lines carry the standard reason phrase (``HTTP/1.1 200 OK``).
"""

from __future__ import annotations

import functools
import http
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import h11
import trio

from ._asgi import DroppedConnection, Message, Scope

__all__ = ["serve_http", "serve_listeners"]

_LOGGER = logging.getLogger("gridloom.simulated.server")

#: Largest request head or body accepted, in bytes.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024

App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

_CLOSE = (b"connection", b"close")
_REASONS = {status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}


def _reason(status: int) -> bytes:
    """The standard reason phrase of ``status`` (empty for a code without one)."""
    return _REASONS.get(status, b"")


class _Closed(Exception):
    """The client closed the connection (between or during requests)."""


class _Activity:
    """Counts requests in progress and lets the server wait until there are none; knows the
    connections waiting for a request (idle), and on :meth:`stop` ends them."""

    def __init__(self) -> None:
        self.busy = 0
        self.stopping = False
        self._idle: trio.Event | None = None
        #: The cancel scopes of the connections waiting for their next request.
        self.waiting: set[trio.CancelScope] = set()

    def stop(self) -> None:
        """No more requests: end every connection that waits for its next one."""
        self.stopping = True
        for scope in self.waiting:
            scope.cancel()

    def begin(self) -> None:
        self.busy += 1

    def end(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        if self.busy:
            self._idle = trio.Event()
            await self._idle.wait()


class _Connection:
    def __init__(
        self, stream: trio.abc.Stream, app: App, server: tuple[str, int], activity: _Activity
    ):
        self.stream = stream
        self.app = app
        self.server = server
        self.activity = activity
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)

    async def _event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed from None
            self.h11.receive_data(bytes(data))

    async def serve(self) -> None:
        """Answer requests until the client or the server closes the connection (or the
        server stops while the connection waits for a request)."""
        # One scope per connection, in ``activity.waiting`` only between requests: stopping
        # cancels it there and never in the middle of an answer.
        waiting = self.activity.waiting
        with trio.CancelScope() as scope:
            try:
                while not self.activity.stopping:
                    waiting.add(scope)
                    try:
                        event = await self._event()
                    except h11.RemoteProtocolError:
                        return
                    if not isinstance(event, h11.Request):  # closed, or not a request
                        return
                    waiting.discard(scope)
                    self.activity.begin()
                    try:
                        if not await self._request(event):
                            return
                    finally:
                        self.activity.end()
                    if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                        return
                    self.h11.start_next_cycle()
            finally:
                waiting.discard(scope)

    async def _request(self, request: h11.Request) -> bool:
        """Read the body of ``request`` and answer it; whether the connection may go on."""
        chunks: list[bytes] = []
        while True:
            part = await self._event()
            if isinstance(part, h11.Data):
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                return await self._answer(request, b"".join(chunks))
            else:
                return False

    async def _answer(self, request: h11.Request, body: bytes) -> bool:
        """Run the app for one request; whether the connection may carry another."""
        target = bytes(request.target)
        path, _, query = target.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
            "client": None,
            "server": self.server,
        }
        delivered = False
        started: list[Message] = []
        finished = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            # A client waiting for its answer sends nothing more, except that it may close the
            # connection. Bytes that do arrive are kept for the next request: the answer may
            # already be out, and the client's next request already in, before this task is
            # cancelled.
            try:
                while data := await self.stream.receive_some(_READ_SIZE):
                    self.h11.receive_data(bytes(data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal finished
            kind = message["type"]
            if kind == "http.response.start":
                started.append(message)
                return
            if kind != "http.response.body" or not started or finished:
                raise RuntimeError(f"unexpected ASGI message {kind!r}")
            out = b""
            if len(started) == 1:
                head = started[0]
                started.append(head)  # marks the head as sent
                out = self.h11.send(self._head(head["status"], head.get("headers", []))) or b""
            data = message.get("body", b"")
            if data:
                out += self.h11.send(h11.Data(data=data)) or b""
            if not message.get("more_body", False):
                finished = True
                out += self.h11.send(h11.EndOfMessage()) or b""
            await self.stream.send_all(out)

        try:
            await self.app(scope, receive, send)
        except DroppedConnection:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Closed):
            return False
        except Exception:
            _LOGGER.exception("simulated app failed on %s %s", scope["method"], scope["path"])
            if started:
                return False
            error = b'{"error":{"message":"internal error","type":"server_error"}}'
            head = self._head(500, [(b"content-type", b"application/json"), _CLOSE])
            await self.stream.send_all(
                (self.h11.send(head) or b"")
                + (self.h11.send(h11.Data(data=error)) or b"")
                + (self.h11.send(h11.EndOfMessage()) or b"")
            )
            return False
        return finished

    def _head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> h11.Response:
        """The response head; once the server is stopping, it says ``Connection: close``."""
        fields = list(headers)
        if self.activity.stopping and _CLOSE not in fields:
            fields.append(_CLOSE)
        return h11.Response(status_code=status, headers=fields, reason=_reason(status))


async def serve_connection(
    stream: trio.abc.Stream, app: App, server: tuple[str, int], activity: _Activity
) -> None:
    """Answer requests on ``stream`` until either side ends the connection, then close it."""
    try:
        await _Connection(stream, app, server, activity).serve()
    except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_http(
    app: App,
    host: str,
    port: int,
    *,
    shutdown: trio.Event,
    grace: float = 3.0,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown`` is set; reports the bound (host, port)
    to ``task_status`` once listening. Then stops as described above."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    sockname = listeners[0].socket.getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    await serve_listeners(
        app, listeners, bound, shutdown=shutdown, grace=grace, task_status=task_status
    )


async def serve_listeners(
    app: App,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    bound: tuple[str, int],
    *,
    shutdown: trio.Event,
    grace: float = 3.0,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_http` on listeners already open (the ASGI ``server`` is ``bound``)."""
    activity = _Activity()

    async with trio.open_nursery() as handlers:

        async def handle(stream: trio.abc.Stream) -> None:
            await serve_connection(stream, app, bound, activity)

        async with trio.open_nursery() as acceptors:
            acceptors.start_soon(
                functools.partial(
                    trio.serve_listeners, handle, list(listeners), handler_nursery=handlers
                )
            )
            task_status.started(bound)
            await shutdown.wait()
            acceptors.cancel_scope.cancel()
        activity.stop()
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        with trio.move_on_after(grace):
            await activity.wait_idle()
        handlers.cancel_scope.cancel()
