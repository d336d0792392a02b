"""The search-agent recipe (examples/search_agent/) end to end against the simulated endpoint:
riddles, rollouts through the example MCP search server (a real subprocess), the judge, SFT
records exported as JSONL; and no server process left behind, also after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

import gridloom as gl

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "search_agent"
ROWS = 24


def servers() -> list[psutil.Process]:
    """Running processes of the example's MCP server."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(str(part).endswith("search_server.py") for part in cmdline):
            found.append(process)
    return found


def test_the_recipe_makes_sft_records_from_searched_trajectories(tmp_path: Path) -> None:
    """Every row's record holds a trajectory that searched the corpus through the MCP server
    (tool results are the server's JSON or its error lines), the path's expected answer, the
    agent's answer and counts, and a 0/1 judgement; the export is JSONL of the same records;
    the server is gone when the run returns."""
    out = tmp_path / "out"
    result = gl.create(EXAMPLE / "pipeline.yaml", num_records=ROWS, output_dir=out)
    assert result.status == "complete"
    assert result.num_rows == ROWS
    rows = result.table.to_pylist()
    assert set(rows[0]) == {"messages", "expected", "answer", "turns", "tool_calls", "correct"}
    for row in rows:
        messages = row["messages"]
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        assert messages[-1]["role"] == "assistant"
        assert messages[-1]["tool_calls"] == []
        assert row["answer"] == messages[-1]["content"].strip()
        assert (row["turns"], row["tool_calls"]) == (4, 6)  # the example's simulated agent
        results = [m for m in messages if m["role"] == "tool"]
        assert len(results) == 6
        for message in results:
            assert message["name"] in ("search", "read")
            if message["content"].startswith("error: "):
                assert "no article has the id" in message["content"]
            elif message["name"] == "search":
                assert "results" in json.loads(message["content"])
        assert row["correct"] in (0, 1)
    assert not servers()
    exported = tmp_path / "sft.jsonl"
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridloom",
            "export",
            str(out),
            "--format",
            "jsonl",
            "-o",
            str(exported),
        ],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0, code.stderr
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(records) == ROWS
    assert records[0]["messages"][1]["role"] == "user"


def test_the_corpus_files_are_what_make_corpus_writes(tmp_path: Path) -> None:
    """The shipped corpus and paths are exactly the generator's output, and each path's hops
    are facts stated in the corpus, ending at its answer."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(EXAMPLE))
    import random

    docs, paths = make_corpus.world(random.Random(20261202))
    shipped = [json.loads(line) for line in (EXAMPLE / "corpus.jsonl").read_text().splitlines()]
    shipped_paths = [
        json.loads(line) for line in (EXAMPLE / "paths.jsonl").read_text().splitlines()
    ]
    assert shipped == docs
    assert shipped_paths == paths
    text = " ".join(doc["text"] for doc in docs)
    for path in paths[:50]:
        assert path["hops"][-1].endswith(f"rises on {path['answer']}")
        river = path["hops"][-1].split(" rises on ")[0].removeprefix("the ")
        assert f"The {river} rises on {path['answer']}" in text


def test_ctrl_c_stops_the_run_and_its_mcp_server(tmp_path: Path) -> None:
    """SIGINT to `gridloom create` while trajectories are in flight ends the process (exit
    130) and leaves no MCP server process behind."""
    config: dict[str, Any] = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    config["providers"][0]["simulation"]["default"]["latency"] = {"fixed": 0.5}
    config["seed_dataset"]["path"] = str(EXAMPLE / "paths.jsonl")
    tool = config["columns"][1]["llm_agent"]["tools"][0]["mcp"]
    tool["cwd"] = str(EXAMPLE)
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "GRIDLOOM_PROGRESS": "off"}
    log = tmp_path / "stderr.txt"
    with (
        log.open("wb") as stderr,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridloom",
                "create",
                str(path),
                "-n",
                "300",
                "-o",
                str(tmp_path / "o"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 60
            while not servers_of(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert servers_of(process.pid), "the MCP server never started"
            time.sleep(1.0)  # trajectories in flight
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 130, log.read_text()[-2000:]
    deadline = time.monotonic() + 5
    while servers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not servers()


def servers_of(pid: int) -> list[psutil.Process]:
    """The example's MCP server processes started by ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [
        child
        for child in children
        if any(str(part).endswith("search_server.py") for part in child.cmdline())
    ]


@pytest.mark.parametrize("name", ["pipeline.yaml"])
def test_the_recipe_validates(name: str) -> None:
    """The recipe's config validates; the agent column depends on the riddle and the judge on
    the agent's answer."""
    graph = gl.validate(EXAMPLE / name)
    depends = {entry["node"]: entry["depends_on"] for entry in graph.describe()}
    assert "riddle" in depends["rollout"]
    assert "rollout" in depends["verdict"]
