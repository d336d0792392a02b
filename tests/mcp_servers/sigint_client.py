"""A client for the SIGINT test: opens the echo server (which starts a child of its own),
starts calls that hang, prints ``ready`` and waits to be interrupted. Usage:
``sigint_client.py PIDFILE``."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from gridloom.config._tools import McpTool
from gridloom.tools._mcp import McpSource

SERVER = str(Path(__file__).with_name("echo_server.py"))


async def main(pidfile: str) -> None:
    config = McpTool(command=[sys.executable, SERVER, "--spawn-child", pidfile], call_timeout=600)
    async with McpSource(config).open() as tools:
        sleep = next(tool for tool in tools if tool.spec.name == "sleep")
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(sleep.call, {"seconds": 600})
            await trio.sleep(0.2)  # the calls reach the server
            print("ready", flush=True)
            await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
