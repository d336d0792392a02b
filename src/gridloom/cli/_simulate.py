"""``gridloom simulate``: serve the simulated endpoint until a stop signal."""

from __future__ import annotations

import signal
import sys

import attrs
import click
import trio

from ..config import LatencyConfig, SimulatedModel, SimulationConfig
from ..run import STOP_SIGNALS, signal_name
from ._output import EXIT_FAILED, Out
from ._stdout import write_json

__all__ = ["simulate"]


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@click.command(short_help="Serve the simulated OpenAI-compatible endpoint.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--latency",
    type=float,
    default=0.5,
    show_default=True,
    help="Median latency in seconds (lognormal, see --sigma).",
)
@click.option(
    "--sigma",
    type=click.FloatRange(min=0),
    default=0.3,
    show_default=True,
    help="Spread of the lognormal latency; 0 makes every latency exactly --latency.",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=None,
    help="Concurrent requests served per model; beyond it, 429.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests answered 503.",
)
@click.option(
    "--tool-turns",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Rounds of tool results after which a model offered tools (tool_choice auto)"
    " answers in text instead of calling them.",
)
@click.option(
    "--tool-calls-per-turn",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Tool calls in one answer that calls tools (parallel tool calls).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds latencies and faults.")
@click.option(
    "--max-connections",
    type=click.IntRange(1, 65536),
    default=None,
    help="Connections served at once (default 4096); one more is answered 503 and closed. A"
    " client keeps one per request in flight.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON lines on stdout: one when ready (with the URL), one when stopped.",
)
def simulate(
    port: int,
    latency: float,
    sigma: float,
    capacity: int | None,
    error_rate: float,
    tool_turns: int,
    tool_calls_per_turn: int,
    seed: int,
    max_connections: int | None,
    as_json: bool,
) -> None:
    """Serve the simulated OpenAI-compatible endpoint on 127.0.0.1 until Ctrl-C.

    It speaks /v1/chat/completions (streaming, n, tools, JSON schema),
    /v1/embeddings, /v1/models and Anthropic's /v1/messages (streaming, tools);
    point any OpenAI or Anthropic client (or a gridloom provider of type openai or
    anthropic) at it. Unsupported endpoints and parameters get a 400 that says so.
    SIGINT or SIGTERM stops it at once (exit 0): idle connections are closed,
    requests in progress get 0.1 s to finish.

    \b
    Example:
      gridloom simulate --port 8000 --latency 0.2 --capacity 8
      gridloom simulate --port 0 --json --latency 1 --sigma 0
      gridloom simulate --tool-turns 3 --tool-calls-per-turn 2
      gridloom simulate --port 0 --latency 1 --sigma 0 --max-connections 4096
    """
    out = Out("simulate", as_json)
    model = SimulatedModel(
        latency=LatencyConfig(median=latency, sigma=sigma if latency else 0.0),
        capacity=capacity,
        error_503_rate=error_rate,
        tool_turns=tool_turns,
        tool_calls_per_turn=tool_calls_per_turn,
    )
    config = SimulationConfig(seed=seed, default=model)
    try:
        signum = trio.run(_simulate, config, port, max_connections, out)
    except KeyboardInterrupt:  # before the signal receiver was open
        signum = signal.SIGINT
    except Exception as exc:
        found = _leaves(exc)
        error = found[0] if len(found) == 1 else exc
        out.fail(EXIT_FAILED, f"cannot serve on port {port}: {error}", kind=type(error).__name__)
    if as_json:
        stopped = {
            "ok": True,
            "command": "simulate",
            "event": "stopped",
            "signal": signal_name(signum),
        }
        write_json(stopped, indent=None)


async def _simulate(config: SimulationConfig, port: int, connections: int | None, out: Out) -> int:
    # The server loads only for this command; it serves alone in this process, so the
    # collector is tuned as for a run (gridloom.run._gc).
    from ..run._gc import collector_for_run
    from ..simulated import default_limits, serve_simulated

    limits = default_limits(config)
    if connections is not None:
        limits = attrs.evolve(limits, max_connections=connections)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals, collector_for_run():
        async with serve_simulated(config, port=port, grace=0.1, limits=limits) as server:
            if out.as_json:
                ready = {
                    "ok": True,
                    "command": "simulate",
                    "event": "ready",
                    "url": server.url,
                    "host": server.host,
                    "port": server.port,
                }
                write_json(ready, indent=None)
            else:
                click.echo(f"gridloom simulated endpoint: {server.url}  (Ctrl-C to stop)")
            sys.stdout.flush()
            async for signum in signals:
                return signum
    return signal.SIGINT  # pragma: no cover - the receiver never ends by itself
