"""Sharded runs on a real local Ray cluster: a head node and a second worker node started on
this machine (so cross-node paths are real), output to a folder and to an S3 protocol server.

These tests start real processes (Ray nodes, a driver killed mid-run) and wait on them with
real time; each wait is bounded by a deadline, never a fixed sleep that decides the outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import gridloom as gl
from gridloom.errors import ClusterError, ConfigError, StorageError

# Ray 2.5x+ can authenticate its nodes with a token (RAY_AUTH_MODE=token, ~/.ray/auth_token);
# the test cluster lives on 127.0.0.1 for one module, so its nodes and this driver run without
# (on a fresh machine there is no token to share). Ray reads the mode when it is imported.
os.environ["RAY_AUTH_MODE"] = "disabled"
pytest.importorskip("ray")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROWS = 120
GROUP = 20
#: The row whose custom cell kills its worker (in the last row group).
KILL_ROW = 110


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


class Cluster:
    """The local two-node cluster: its address and the environment its nodes run with."""

    def __init__(self, address: str) -> None:
        self.address = address


def _stop(node: subprocess.Popen[bytes]) -> None:
    """Stop one node started with ``ray start --block`` (its own processes only: ``ray stop``
    would stop every Ray process on the machine)."""
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=60)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a node in the foreground (``--block``), in its own process group."""
    return subprocess.Popen(
        [_ray_bin(), "start", "--block", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    probe = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False);"
        "print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster(s3_server: Any) -> Iterator[Cluster]:
    """A head node and one worker node (1 CPU each), stopped at the end of the module. The
    nodes start with the S3 server's endpoint and keys in their environment, as workers of a
    real cluster get their object store's credentials."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL_S3=s3_server.url,
        AWS_ENDPOINT_URL=s3_server.url,
        AWS_ACCESS_KEY_ID="gridloom-test-key",
        AWS_SECRET_ACCESS_KEY="gridloom-test-secret",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        RAY_USAGE_STATS_ENABLED="0",
    )
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    nodes = [_start(["--head", "--port", str(port), "--include-dashboard=false", *common], env)]
    try:
        deadline = time.monotonic() + 120
        while _alive_nodes(address, env) < 1:
            assert time.monotonic() < deadline, "the head node did not start"
            time.sleep(0.5)
        nodes.append(_start(["--address", address, *common], env))
        while _alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, "the worker node did not join"
            time.sleep(0.5)
        yield Cluster(address)
    finally:
        for node in reversed(nodes):
            _stop(node)


def _pipeline(
    tmp: Path, *, kill_once: bool = False, kill_always: bool = False, fail_every: int = 0
) -> dict[str, Any]:
    """Samplers, three model columns on two models, an expression and a custom function;
    the function logs each row it scores (``calls.log``) and can kill its own worker process
    (once, or every time) at row ``KILL_ROW``."""
    # A module name of this test's own: the test process keeps modules it imported.
    module = "shard_fn_" + "".join(c if c.isalnum() else "_" for c in tmp.name)
    (tmp / f"{module}.py").write_text(
        "import os, signal\n"
        "from pathlib import Path\n"
        f"MARK = Path({str(tmp / 'killed')!r})\n"
        f"CALLS = Path({str(tmp / 'calls.log')!r})\n"
        f"ONCE, ALWAYS, ROW, FAIL = {kill_once!r}, {kill_always!r}, {KILL_ROW}, {fail_every}\n"
        "def score(row, ctx):\n"
        "    if FAIL and ctx.row_id % FAIL == 3:\n"
        "        raise ValueError('a row this column refuses')\n"
        "    with CALLS.open('a') as log:\n"
        "        log.write(f'{ctx.row_id}\\n')\n"
        "    if ctx.row_id == ROW and (ALWAYS or (ONCE and not MARK.exists())):\n"
        "        MARK.write_text('x')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return len(row['summary']) % 7\n"
    )
    return {
        "providers": [
            {
                "name": "sim",
                "type": "simulated",
                "simulation": {"default": {"latency": {"median": 0.01, "sigma": 0.2}}},
            }
        ],
        "models": [
            {"alias": "writer", "provider": "sim", "model": "w-8b", "max_parallel_requests": 8},
            {"alias": "judge", "provider": "sim", "model": "j-70b", "max_parallel_requests": 5},
        ],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "deserts", "glaciers"]}},
            {"name": "level", "uniform": {"low": 1, "high": 9}},
            {"name": "summary", "llm_text": {"model": "writer", "prompt": "About {{ topic }}."}},
            {
                "name": "facts",
                "llm_structured": {
                    "model": "writer",
                    "prompt": "Facts on {{ topic }} at level {{ level }}.",
                    "schema": {
                        "type": "object",
                        "properties": {"fact": {"type": "string"}, "n": {"type": "integer"}},
                        "required": ["fact", "n"],
                    },
                },
            },
            {"name": "fact", "expression": "{{ facts.fact }}"},
            {
                "name": "quality",
                "llm_judge": {
                    "model": "judge",
                    "prompt": "Rate: {{ summary }}",
                    "rubrics": [{"name": "clarity", "scores": {"1": "bad", "5": "good"}}],
                },
            },
            {
                "name": "score",
                "custom": {"function": f"{module}:score", "dtype": "int"},
                "depends_on": ["summary"],
            },
        ],
        "run": {"row_group_size": GROUP, "seed": 11, "progress": "off"},
    }


def _local(tmp: Path, cfg: dict[str, Any]) -> pa.Table:
    result = gl.create(cfg, num_records=ROWS, output_dir=tmp / "one", base_dir=tmp)
    assert result.status == "complete"
    return result.table


def test_a_sharded_run_writes_the_same_dataset_as_one_machine(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three shards over two nodes write, row for row and value for value, the dataset a
    one-machine run writes, and the metadata shows every row group and each shard."""
    cfg = _pipeline(tmp_path)
    expected = _local(tmp_path, cfg)
    out = tmp_path / "sharded"
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=out,
        base_dir=tmp_path,
        ray_address=cluster.address,
        shards=3,
    )
    assert result.status == "complete"
    assert result.table.equals(expected)
    assert gl.open_run(out).table.equals(expected)
    meta = gl.storage.read_run_metadata(out)
    assert meta["status"] == "complete"
    assert sorted(int(i) for i in meta["row_groups"]) == list(range(ROWS // GROUP))
    shards = meta["summary"]["shards"]
    assert sorted(s["shard"] for s in shards) == [0, 1, 2]
    assert sorted(g for s in shards for g in s["row_groups"]) == list(range(ROWS // GROUP))


def test_an_in_memory_seed_table_reaches_every_shard(cluster: Cluster, tmp_path: Path) -> None:
    """A seed dataset given as an Arrow table (no file: it lives in the driver's memory) is
    sent to the shards' workers, which are other processes on two nodes: the sharded run
    writes what one machine writes, every seed row once."""
    seed = pa.table({"city": [f"city-{i}" for i in range(ROWS)], "size": list(range(ROWS))})
    sim = {"latency": {"median": 0.01, "sigma": 0.2}}
    cfg = (
        gl.PipelineBuilder(seed=5)
        .provider("sim", type="simulated", simulation={"default": sim})
        .model("writer", provider="sim", model="w-8b", max_parallel_requests=8)
        .seed_dataset(seed, order="ordered")
        .llm_text("blurb", model="writer", prompt="About {{ city }}.")
        .expression("label", "{{ city }}:{{ size }}")
        .run(row_group_size=GROUP, progress="off")
        .build()
    )
    expected = gl.create(cfg, num_records=ROWS, output_dir=tmp_path / "one")
    assert expected.status == "complete"
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=tmp_path / "sharded",
        ray_address=cluster.address,
        shards=2,
    )
    assert result.status == "complete"
    assert result.table.equals(expected.table)
    assert sorted(result.table.column("size").to_pylist()) == list(range(ROWS))
    shards = gl.storage.read_run_metadata(tmp_path / "sharded")["summary"]["shards"]
    assert sorted(s["shard"] for s in shards) == [0, 1]


def test_rows_dropped_are_replaced_by_a_round_of_shards_as_on_one_machine(
    cluster: Cluster, tmp_path: Path
) -> None:
    """With fill_to_target, the rows a column drops are replaced after the planned row
    groups by a second round of shards: the same top-up groups, and the same dataset, as a
    one-machine run."""
    cfg = _pipeline(tmp_path, fail_every=17)
    cfg["run"]["fill_to_target"] = True
    expected = _local(tmp_path, cfg)
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=tmp_path / "topped-up",
        base_dir=tmp_path,
        ray_address=cluster.address,
        shards=2,
    )
    assert result.status == "complete"
    assert result.num_rows == ROWS
    assert result.table.equals(expected)
    groups = sorted(g for s in result.extras["shards"] for g in s["row_groups"])
    assert groups[-1] >= ROWS // GROUP  # a top-up group, after the planned ones


def test_shards_split_each_models_cap(cluster: Cluster, tmp_path: Path) -> None:
    """Each shard's limiter cap is its share of the model's max_parallel_requests: the
    shares add up to the global cap exactly."""
    cfg = _pipeline(tmp_path)
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=tmp_path / "caps",
        base_dir=tmp_path,
        ray_address=cluster.address,
        shards=3,
    )
    shards = result.extras["shards"]
    assert len(shards) == 3
    for alias, cap in (("writer", 8), ("judge", 5)):
        caps = sorted(s["caps"][alias] for s in shards)
        assert sum(caps) == cap
        assert caps[-1] - caps[0] <= 1
        for shard in shards:  # the limiter of a shard that sent requests had its share
            throttle = shard["models"].get(alias, {}).get("throttle", {}).get("chat")
            if throttle is not None:
                assert throttle["cap"] == shard["caps"][alias]
    merged = result.extras["models"]["writer"]
    assert merged["requests"] == sum(s["models"]["writer"]["requests"] for s in shards)
    assert merged["requests"] == 2 * ROWS


def test_output_on_an_s3_server(
    cluster: Cluster, tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards write to an S3 protocol server; the run reads back through s3:// equal to the
    one-machine dataset, and ``inspect`` works on the URI."""
    s3_server.set_env(monkeypatch)
    cfg = _pipeline(tmp_path)
    expected = _local(tmp_path, cfg)
    uri = s3_server.bucket("sharded-run") + "/quick"
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=uri,
        base_dir=tmp_path,
        ray_address=cluster.address,
        shards=2,
    )
    assert result.status == "complete"
    assert gl.open_run(uri).table.equals(expected)
    info = gl.storage.inspect_run(uri)
    assert info.rows_on_disk == ROWS
    assert info.problems == ()


def test_the_driver_checks_the_code_a_sharded_run_resumes_with(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A sharded run resumed after an edit of its custom function's module is refused by the
    driver, naming the column, before any shard starts; with accept_code_change the shards
    (which never check the code) generate the rest, and the change is recorded."""
    cfg = _pipeline(tmp_path)
    out = tmp_path / "edited"
    where: dict[str, Any] = {"base_dir": tmp_path, "ray_address": cluster.address, "shards": 2}
    first = gl.create(cfg, num_records=ROWS - 2 * GROUP, output_dir=out, **where)
    assert first.status == "complete"
    (module,) = tmp_path.glob("shard_fn_*.py")
    module.write_text(module.read_text() + "# edited\n")
    with pytest.raises(StorageError, match="Python code of column 'score' changed"):
        gl.create(cfg, num_records=ROWS, output_dir=out, resume=True, **where)
    assert gl.storage.read_run_metadata(out)["status"] == "complete"
    result = gl.create(
        cfg, num_records=ROWS, output_dir=out, resume=True, accept_code_change=True, **where
    )
    assert result.status == "complete"
    assert result.num_rows == ROWS
    (change,) = gl.storage.read_run_metadata(out)["code_changes"]
    assert list(change["columns"]) == ["score"]
    assert change["row_groups_before"] == [[0, ROWS // GROUP - 3]]


def test_a_worker_killed_mid_shard_is_retried_from_its_commits(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The worker scoring row 110 (the last row group) kills itself once: Ray restarts its
    shard, which takes up its row groups again but skips those it had committed — only the
    killed row group is scored twice — and the dataset still equals the one-machine run."""
    expected = _local(tmp_path, _pipeline(tmp_path))
    (tmp_path / "calls.log").unlink()  # the local run's calls
    cfg = _pipeline(tmp_path, kill_once=True)
    # One row group at a time per shard: the killer had committed the one before row 110's.
    cfg["run"]["max_row_groups_in_flight"] = 1
    result = gl.create(
        cfg,
        num_records=ROWS,
        output_dir=tmp_path / "killed-run",
        base_dir=tmp_path,
        ray_address=cluster.address,
        shards=2,
    )
    assert (tmp_path / "killed").exists()  # the kill happened
    assert result.status == "complete"
    assert result.table.equals(expected)
    calls = Counter(int(line) for line in (tmp_path / "calls.log").read_text().split())
    assert set(calls) == set(range(ROWS))
    twice = {row for row, n in calls.items() if n > 1}
    killed_group = KILL_ROW // GROUP
    assert KILL_ROW in twice
    assert {row // GROUP for row in twice} == {killed_group}
    killer = next(s for s in result.extras["shards"] if killed_group in s["row_groups"])
    skipped = set(killer["row_groups"]) - set(killer["row_groups_generated"])
    assert skipped  # committed before the kill, not generated again


def test_a_shard_that_keeps_dying_stops_the_run_naming_it(cluster: Cluster, tmp_path: Path) -> None:
    """A shard whose worker dies on every attempt ends the run with one error naming the
    shard, its row groups and the cause; the run is recorded failed, and resumable."""
    cfg = _pipeline(tmp_path, kill_always=True)
    cfg["run"]["ray"] = {"max_retries": 1}
    out = tmp_path / "dying"
    with pytest.raises(
        ClusterError, match=r"shard [01] of 2 \(row groups? [0-9, -]+\) failed: "
    ) as info:
        gl.create(
            cfg,
            num_records=ROWS,
            output_dir=out,
            base_dir=tmp_path,
            ray_address=cluster.address,
            shards=2,
        )
    assert "\n" not in str(info.value)
    meta = gl.storage.read_run_metadata(out)
    assert meta["status"] == "failed"


class _Driver:
    """The CLI as a sharded run's driver, in a process of its own (2 shards on the cluster),
    killed or interrupted by a test once its shards have committed some row groups."""

    def __init__(self, cluster: Cluster, tmp: Path, cfg: dict[str, Any], name: str) -> None:
        import yaml

        config = tmp / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        self.cluster = cluster
        self.out = tmp / name
        self.log = tmp / f"{name}.log"
        self.env = {**os.environ, "GRIDLOOM_PROGRESS": "off"}
        cmd = [sys.executable, "-m", "gridloom", "create", str(config), "-n", str(ROWS)]
        cmd += ["-o", str(self.out), "--ray", cluster.address, "--shards", "2"]
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=sink)

    def commits(self) -> int:
        """Row groups the shards have committed so far."""
        folder = self.out / "_commits"
        return len(list(folder.glob("*.json"))) if folder.is_dir() else 0

    def wait_for_commits(self, count: int) -> None:
        """Wait (bounded) until ``count`` row groups are committed, the driver still running."""
        deadline = time.monotonic() + 120
        while self.commits() < count and self.proc.poll() is None:
            assert time.monotonic() < deadline, "no commits in time"
            time.sleep(0.05)
        assert self.proc.poll() is None, self.log.read_text()

    def resume(self) -> subprocess.CompletedProcess[str]:
        """``gridloom resume OUT --ray ADDRESS``, to its end."""
        cmd = [sys.executable, "-m", "gridloom", "resume", str(self.out)]
        return subprocess.run(
            [*cmd, "--ray", self.cluster.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _slow(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with slower answers and one row group at a time, so a test can stop the run
    between commits."""
    cfg["providers"][0]["simulation"]["default"]["latency"] = {"median": 0.2}
    cfg["run"]["max_row_groups_in_flight"] = 1
    return cfg


def test_a_killed_driver_is_resumed_with_ray(cluster: Cluster, tmp_path: Path) -> None:
    """The driver (the CLI) killed with SIGKILL mid-run leaves committed row groups; `gridloom
    resume OUT --ray` generates only the rest, and the dataset equals the one-machine run."""
    cfg = _slow(_pipeline(tmp_path))
    expected = _local(tmp_path, cfg)
    driver = _Driver(cluster, tmp_path, cfg, "driver-killed")
    driver.wait_for_commits(2)
    driver.proc.send_signal(signal.SIGKILL)
    driver.proc.wait(timeout=30)
    assert 2 <= driver.commits() < ROWS // GROUP
    resumed = driver.resume()
    assert resumed.returncode == 0, resumed.stderr
    assert gl.open_run(driver.out).table.equals(expected)


def test_ctrl_c_stops_the_shards_and_records_an_interrupted_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGINT to the driver stops its shards, keeps what they committed, records the run as
    interrupted, exits 130 with the resume command; the resume then completes it."""
    driver = _Driver(cluster, tmp_path, _slow(_pipeline(tmp_path)), "interrupted")
    driver.wait_for_commits(1)
    driver.proc.send_signal(signal.SIGINT)
    assert driver.proc.wait(timeout=60) == 130, driver.log.read_text()
    assert "resume with: gridloom create" in driver.log.read_text()
    meta = gl.storage.read_run_metadata(driver.out)
    assert meta["status"] == "interrupted"
    assert 1 <= len(meta["row_groups"]) < ROWS // GROUP
    resumed = driver.resume()
    assert resumed.returncode == 0, resumed.stderr
    assert gl.open_run(driver.out).num_rows == ROWS


def test_more_shards_than_row_groups_is_one_clear_line(cluster: Cluster, tmp_path: Path) -> None:
    """Asking for more shards than row groups fails before any request, in one line."""
    with pytest.raises(ConfigError, match="9 shards but only 6 row groups") as info:
        gl.create(
            _pipeline(tmp_path),
            num_records=ROWS,
            output_dir=tmp_path / "x",
            base_dir=tmp_path,
            ray_address=cluster.address,
            shards=9,
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x" / "metadata.json").exists()


def test_an_unreachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    """An address where no cluster answers fails with one line naming it."""
    port = _free_port()
    cfg = _pipeline(tmp_path)
    cfg["run"]["ray"] = {"address": f"127.0.0.1:{port}"}
    cfg["run"]["executor"] = "ray"
    with pytest.raises(ClusterError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        gl.create(cfg, num_records=ROWS, output_dir=tmp_path / "x", base_dir=tmp_path)
    assert not (tmp_path / "x").exists()
