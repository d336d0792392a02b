"""LLM cells/s with and without a Python-lint validator beside the model column.

Runs against the simulated endpoint (real sockets, real clock, a fixed latency per request,
50 ms by default, 32 requests in flight): an ``llm_text`` column alone, then the same with a
``code`` column of Python snippets checked by the ``python`` validator (``ast`` + ``ruff``),
per value (one ruff process each) and with ``batch: true`` (one per row group). The LLM rate
is the number of LLM cells over the time from the run's start to the last LLM cell's end,
stamped by an async column right after it (on the loop, no thread). A probe task sleeping
5 ms at a time records how late the loop wakes it (largest and 99th-percentile lag): a
validator that blocked the loop would show there. The simulated endpoint runs in this
process, so at low latency the LLM rate is CPU-bound and shares the CPUs with the linter;
at a realistic latency (``--latency 0.2``) it is bound by the model alone.

    python bench/validators.py [-n ROWS] [--latency SECONDS]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import trio

import _harness
from gridloom.config import structure_pipeline

gl = _harness.load_gridloom()
STAMPS: list[float] = []

SNIPPETS = [
    "import os\n\n\ndef f(x):\n    return x + 1\n",
    "def g(:\n    pass\n",
    "values = [i * i for i in range(10)]\nprint(sum(values))\n",
]


async def stamp(row: dict[str, Any], ctx: Any) -> int:
    """When this row's LLM cell was done (on the trio loop)."""
    STAMPS.append(time.perf_counter())
    return len(row["text"])


def config(validator: str, latency: float = 0.05) -> gl.PipelineConfig:
    columns: list[dict[str, Any]] = [
        {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
        {"name": "text", "llm_text": {"model": "w", "prompt": "Two lines on {{ topic }}."}},
        {
            "name": "stamp",
            "custom": {"function": stamp, "dtype": "int"},
            "depends_on": ["text"],
        },
    ]
    if validator != "none":
        check = {"kind": "python", "target": "code", "rules": ["F", "E"]}
        columns += [
            {"name": "code", "category": {"values": SNIPPETS}},
            {"name": "check", "validate": {**check, "batch": validator == "batch"}},
        ]
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {"default": {"latency": {"fixed": latency}}},
                }
            ],
            "models": [
                {"alias": "w", "provider": "sim", "model": "w-8b", "max_parallel_requests": 32}
            ],
            "columns": columns,
            "run": {"seed": 1, "row_group_size": 200, "progress": "off"},
        }
    )


async def probe(lags: list[float]) -> None:
    """Sleeps 5 ms at a time, recording how late each wake-up is."""
    while True:
        asked = time.perf_counter()
        await trio.sleep(0.005)
        lags.append(time.perf_counter() - asked - 0.005)


async def measure(
    rows: int, validator: str, latency: float = 0.05
) -> tuple[float, float, float, float]:
    """(LLM cells/s, whole run seconds, largest loop lag, 99th-percentile loop lag)."""
    STAMPS.clear()
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, lags)
            start = time.perf_counter()
            result = await gl.acreate(config(validator, latency), num_records=rows, output_dir=out)
            total = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    assert result.num_rows == rows, result
    lags.sort()
    return rows / (max(STAMPS) - start), total, lags[-1], lags[int(len(lags) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rows", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    args = parser.parse_args()
    rows, latency = args.rows, args.latency
    print(f"rows: {rows}, simulated latency {latency * 1000:g} ms, 32 requests in flight")
    trio.run(measure, 100, "batch")  # warm up: first imports, ruff's first start
    base = None
    for label, validator in [
        ("llm_text alone", "none"),
        ("+ python validator, per value", "cell"),
        ("+ python validator, batch", "batch"),
    ]:
        rate, total, worst, p99 = trio.run(measure, rows, validator, latency)
        base = base or rate
        print(
            f"{label:32} {rate:7.1f} LLM cells/s (x{rate / base:.3f}), run {total:5.2f} s,"
            f" loop lag max {worst * 1000:5.1f} ms, p99 {p99 * 1000:5.1f} ms"
        )


if __name__ == "__main__":
    main()
