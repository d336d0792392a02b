"""Serving the simulated endpoint over real sockets on loopback, with hypercorn's trio worker."""

from __future__ import annotations

import functools
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from ..config import SimulationConfig
from ._app import SimulatedApp
from ._asgi import DroppedConnection, Message

__all__ = ["SimulatedServer", "run_simulator", "serve_simulated"]

#: hypercorn's error log goes here; it says nothing unless logging is configured for it.
_LOGGER = logging.getLogger("gridloom.simulated.server")


@attrs.frozen(kw_only=True)
class SimulatedServer:
    """A running simulated endpoint.

    Attributes:
        url: the API base URL, e.g. ``http://127.0.0.1:8123/v1``.
        host: the loopback address it is bound to.
        port: the port it listens on (the real one when 0 was asked for).
        app: the app it serves; read :meth:`SimulatedApp.statistics` and
            :meth:`SimulatedApp.timeline` from it.
    """

    url: str
    host: str
    port: int
    app: SimulatedApp


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the simulated endpoint binds to loopback only, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"the simulated endpoint binds to loopback only, not {host!r}")
    return str(address)


class _DroppingApp:
    """Serves ``app`` through hypercorn, turning an injected dropped connection into a closed
    socket.

    hypercorn answers 500 when an app fails before starting its response, so instead the
    response is started with a body length that is never sent: hypercorn then closes the
    connection and the client sees it break (``httpx.RemoteProtocolError``).
    """

    def __init__(self, app: SimulatedApp):
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        async def app_send(message: Message) -> None:
            await send(message)  # type: ignore[arg-type]

        try:
            await self.app(scope, receive, app_send)  # type: ignore[arg-type]
        except DroppedConnection:
            headers = [(b"content-length", b"1"), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})


def _hypercorn_config(host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = _LOGGER
    config.graceful_timeout = 3.0
    # Room for bursts of new connections (a run may open hundreds at once); hypercorn's
    # default backlog of 100 makes the kernel reset the surplus.
    config.backlog = 4096
    return config


@asynccontextmanager
async def serve_simulated(
    config: SimulationConfig, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SimulatedServer]:
    """Serve a :class:`SimulatedApp` over HTTP on loopback for the duration of the block.

    Example::

        async with serve_simulated(SimulationConfig()) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                await client.post("/chat/completions", json={...})

    Args:
        config: the behaviour of each model.
        host: a loopback address (``127.0.0.1``, ``::1`` or ``localhost``).
        port: the port; 0 picks a free one (read it from the yielded server).

    Yields:
        The running server; it stops (gracefully) when the block ends. An exception raised in
        the block comes out as itself, not wrapped in an exception group.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    address = _loopback(host)
    app = SimulatedApp(config)
    shutdown = trio.Event()
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(
                serve,
                _DroppingApp(app),
                _hypercorn_config(address, port),
                shutdown_trigger=shutdown.wait,
            )
        )
        bound = binds[0].removeprefix("http://")
        bound_host, _, bound_port = bound.rpartition(":")
        try:
            yield SimulatedServer(
                url=f"http://{bound}/v1",
                host=bound_host.strip("[]"),
                port=int(bound_port),
                app=app,
            )
        except Exception as exc:
            # Re-raised below, outside the nursery, so that it is not wrapped in a group.
            failure = exc
        finally:
            shutdown.set()
    if failure is not None:
        raise failure


def run_simulator(config: SimulationConfig, *, port: int, host: str = "127.0.0.1") -> None:
    """Serve the simulated endpoint until Ctrl-C or SIGTERM (the ``gridloom simulate`` command).

    Prints the base URL once the server is ready; returns after a graceful stop. Call it from
    the main thread (it handles the signals).

    Args:
        config: the behaviour of each model.
        port: the port to listen on (0 picks a free one).
        host: a loopback address.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    _loopback(host)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve_simulated(config, host=host, port=port) as server:
                print(f"gridloom simulated endpoint: {server.url}  (Ctrl-C to stop)", flush=True)
                async for _ in signals:
                    break

    trio.run(main)
