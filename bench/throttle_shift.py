"""Capacity that changes mid-run: 8, then 16 from t = 60 s, then 4 from t = 200 s.

Runs in virtual time (trio's ``MockClock``, the simulated endpoint mounted in-process), so it
takes seconds; 32 workers keep the demand above every capacity. Reports goodput per phase as a
fraction of that phase's capacity bound and plots the AIMD limit against the capacity.

    python bench/throttle_shift.py
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ((0.0, 60.0, 8), (60.0, 200.0, 16), (200.0, 280.0, 4))
LATENCY = 1.0


async def run() -> dict[str, Any]:
    from gridloom.clients import (
        ChatRequest,
        Message,
        OpenAIClient,
        ThrottledModelClient,
        build_http_client,
    )
    from gridloom.config import (
        CapacityStep,
        LatencyConfig,
        ModelConfig,
        ProviderConfig,
        SimulatedModel,
        SimulationConfig,
        ThrottleConfig,
    )
    from gridloom.simulated import SimulatedApp
    from gridloom.throttle import ThrottleRegistry

    steps = [CapacityStep(at=start, capacity=cap) for start, _, cap in PHASES[1:]]
    model = SimulatedModel(
        latency=LatencyConfig(fixed=LATENCY), capacity=PHASES[0][2], capacity_schedule=steps
    )
    app = SimulatedApp(SimulationConfig(default=model))
    provider = ProviderConfig(name="sim", type="simulated")
    alias = ModelConfig(alias="m", provider="sim", model="m", max_parallel_requests=32)
    http = build_http_client(
        provider, [alias], transport=httpx.ASGITransport(app=app), base_url="http://sim/v1"
    )
    registry = ThrottleRegistry(ThrottleConfig())
    chat = registry.limiter("sim", "m", "chat", 32)
    client = ThrottledModelClient(
        OpenAIClient(http, provider=provider, api_key=None),
        chat=chat,
        embedding=registry.limiter("sim", "m", "embedding", 32),
    )
    request = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))
    end = PHASES[-1][1]

    async def worker() -> None:
        while trio.current_time() < end:
            await client.chat(request)

    async with trio.open_nursery() as nursery:
        for _ in range(32):
            nursery.start_soon(worker)
    timeline = app.timeline()
    phases = []
    for start, stop, capacity in PHASES:
        entries = [e for e in timeline if start <= e.start < stop]
        served = sum(1 for e in entries if e.status == 200)
        phases.append(
            {
                "from_s": start,
                "to_s": stop,
                "capacity": capacity,
                "goodput_fraction": round(served / (stop - start) / (capacity / LATENCY), 4),
                "responses_429": sum(1 for e in entries if e.status == 429),
            }
        )
    stats = chat.statistics()
    return {
        "phases": phases,
        "probes": stats.probes,
        "final_limit": stats.limit,
        "history": chat.controller.history(),
        "refused": [e.start for e in timeline if e.status == 429],
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = report["history"]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(
        [t for t, _, _ in history], [lim for _, lim, _ in history], where="post", label="AIMD limit"
    )
    edges = [p["from_s"] for p in report["phases"]] + [report["phases"][-1]["to_s"]]
    caps = [p["capacity"] for p in report["phases"]]
    ax.step(
        edges,
        caps + caps[-1:],
        where="post",
        color="grey",
        linestyle="--",
        label="endpoint capacity",
    )
    ax.plot(report["refused"], [0.5] * len(report["refused"]), "rx", label="429")
    ax.set_xlabel("seconds (virtual)")
    ax.set_ylabel("requests")
    fractions = ", ".join(f"{p['goodput_fraction']:.2f}" for p in report["phases"])
    ax.set_title(f"capacity 8 → 16 → 4 under constant demand: goodput per phase {fractions}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    report = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    RESULTS.mkdir(exist_ok=True)
    stem = f"throttle-shift-{dt.date.today().isoformat()}-{platform.node()}"
    plot(report, RESULTS / f"{stem}.png")
    summary = {k: v for k, v in report.items() if k not in ("history", "refused")} | {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
