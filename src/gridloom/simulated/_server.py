"""Serving the simulated endpoint over real sockets on loopback (gridloom's small HTTP/1.1
server, :mod:`._http11`)."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import signal
from collections.abc import AsyncIterator

import attrs
import trio

from .._attrs import frozen
from ..config import SimulationConfig
from ._app import SimulatedApp
from ._http11 import ServerLimits, serve_http

__all__ = ["SimulatedServer", "default_limits", "run_simulator", "serve_simulated"]

#: Bytes a multipart form adds around an uploaded file (its boundaries and part heads).
_FORM_OVERHEAD = 64 * 1024


def default_limits(config: SimulationConfig) -> ServerLimits:
    """:class:`ServerLimits`'s defaults, with a body limit that admits a batch upload of
    ``config.batch.max_file_bytes`` (larger than an ordinary request)."""
    limits = ServerLimits()
    upload = config.batch.max_file_bytes + _FORM_OVERHEAD
    if upload > limits.max_body_bytes:
        limits = attrs.evolve(
            limits,
            max_body_bytes=upload,
            max_buffered_bytes=max(limits.max_buffered_bytes, upload),
        )
    return limits


@frozen(kw_only=True)
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


@contextlib.asynccontextmanager
async def serve_simulated(
    config: SimulationConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float = 3.0,
    limits: ServerLimits | None = None,
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
        grace: when the block ends, seconds that requests in progress get to finish (idle
            keep-alive connections are closed at once, and no connection starts a new
            request); then they are cut.
        limits: the timeouts and sizes the HTTP server holds clients to (default:
            :class:`ServerLimits`'s defaults, with a body limit that admits a batch upload
            of ``config.batch.max_file_bytes``).

    Yields:
        The running server; it stops (gracefully) when the block ends. An exception raised in
        the block comes out as itself, not wrapped in an exception group.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    address = _loopback(host)
    if limits is None:
        limits = default_limits(config)
    app = SimulatedApp(config)
    shutdown = trio.Event()
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        bound_host, bound_port = await nursery.start(
            functools.partial(
                serve_http, app, address, port, shutdown=shutdown, grace=grace, limits=limits
            )
        )
        netloc = f"[{bound_host}]" if ":" in bound_host else bound_host
        netloc += f":{bound_port}"
        try:
            yield SimulatedServer(
                url=f"http://{netloc}/v1", host=bound_host, port=bound_port, app=app
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
