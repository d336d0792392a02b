"""Live progress: the bar display in a terminal, plain lines in a pipe, the pure computations
behind both, and the end-of-run summary."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import gridloom as gl
from gridloom.engine import NodeProgress, SchedulerStatistics
from gridloom.progress import (
    ColumnProgress,
    ModelProgress,
    ProgressReporter,
    ProgressSnapshot,
    eta_seconds,
    format_duration,
    format_line,
    rate,
    render_summary,
    reporting,
    resolve_mode,
    take_snapshot,
)

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"
COLUMNS = ("topic", "audience", "summary", "facts", "first_fact", "quality")
#: Escape sequences that move the cursor or erase (a redraw starts a new line after them).
MOVES = re.compile(r"\x1b\[[0-9;?]*[ABCDEFGHJK]")
#: Every other CSI sequence (colours, cursor visibility) and OSC sequences.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def screen_lines(raw: str) -> list[str]:
    """What a terminal showed, line by line, every frame of a redraw included."""
    text = ANSI.sub("", MOVES.sub("\n", raw.replace("\r", "\n")))
    return [line for line in text.splitlines() if line.strip()]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRIDLOOM_PROGRESS", "COLUMNS")}
    return {**env, **extra}


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run ``python -m gridloom ARGS`` with a pseudo-terminal (120 x 40) as its stdin, stdout
    and stderr; return its exit code and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridloom", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def run_in_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def quickstart(tmp_path: Path, **run: Any) -> Path:
    """A copy of the quickstart example with extra ``run`` settings."""
    text = QUICKSTART.read_text()
    assert "run: {row_group_size: 100," in text
    extra = "".join(f"{key}: {value}, " for key, value in run.items())
    config = tmp_path / "quickstart.yaml"
    config.write_text(text.replace("run: {", "run: {" + extra))
    return config


# ------------------------------------------------------------------------------- end to end


def test_bar_display_in_a_terminal(tmp_path: Path) -> None:
    """In a terminal, GRIDLOOM_PROGRESS=bar draws a bar per column and a line per model; the
    last frame shows every column at 60/60."""
    args = ["create", str(QUICKSTART), "-n", "60", "-o", str(tmp_path / "out"), "--overwrite"]
    code, raw = run_in_terminal(args, _env(GRIDLOOM_PROGRESS="bar"))
    assert code == 0, raw
    assert "\x1b[" in raw  # drawn with colours and cursor moves
    lines = screen_lines(raw)
    text = "\n".join(lines)
    for column in COLUMNS:
        drawn = [line for line in lines if line.startswith(column + " ") and "━" in line]
        assert drawn, f"no bar for {column}:\n{text}"
        assert " 60/60 " in drawn[-1], drawn[-1]
    for alias in ("writer", "judge"):
        last = [line for line in lines if line.startswith(alias + " ") and "limit" in line][-1]
        assert re.search(r"limit \d+ · in flight 0 · requests \d+ · refused 0", last), last
    heads = [line for line in lines if line.startswith("gridloom ")]
    assert heads[-1].startswith("gridloom 60/60 rows"), heads[-1]
    assert "60 of 60 rows written to " in text


def test_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    """Piped, the default (auto) display is plain lines on stderr, without escape codes, and a
    final line with the totals; stdout is left to the command."""
    config = quickstart(tmp_path, progress_interval_seconds=0.3)
    proc = run_in_pipe(["create", str(config), "-n", "60", "-o", str(tmp_path / "out")], _env())
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert lines, "no progress line"
    assert all(line.startswith("gridloom: ") for line in lines), proc.stderr
    final = lines[-1]
    assert final.startswith("gridloom: complete · 60/60 rows · topic 60 done · "), final
    assert "quality 60 done" in final
    assert re.search(r"writer limit \d+ in flight 0 refused 0", final), final
    assert re.search(r"· [\d.,]+ rows/s · in [\d.]+ s$", final), final
    periodic = lines[:-1]
    assert periodic, "no periodic line within a run of about 2 s at a 0.3 s interval"
    assert all(re.search(r"/60 rows · .* · ETA \S+( \w+)*$", line) for line in periodic)
    assert "gridloom:" not in proc.stdout
    assert "60 of 60 rows written to " in proc.stdout


def test_off_prints_nothing(tmp_path: Path) -> None:
    """GRIDLOOM_PROGRESS=off, even in a terminal: nothing but the command's report."""
    config = tmp_path / "pipeline.yaml"
    config.write_text("columns:\n  - {name: n, uniform: {low: 0, high: 9}}\n")
    args = ["create", str(config), "-n", "20", "-o", str(tmp_path / "out")]
    code, raw = run_in_terminal(args, _env(GRIDLOOM_PROGRESS="off"))
    assert code == 0, raw
    lines = screen_lines(raw)
    assert lines[0].startswith("20 of 20 rows written to ")
    assert lines[-1] == "ended: complete: every row asked for was written"
    assert not any(line.startswith("gridloom:") for line in lines)  # no progress line
    assert "━" not in raw  # no bar


def _pipeline(**run: Any) -> gl.PipelineConfig:
    return (
        gl.PipelineBuilder(seed=3)
        .uniform("n", 0, 100, convert_to="int")
        .expression("twice", "{{ n * 2 }}")
        .run(row_group_size=10, **run)
        .build()
    )


def test_the_config_setting_and_preview_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: ``progress: off`` prints nothing, ``log`` prints its final line on stderr, a
    preview prints nothing unless asked, and GRIDLOOM_PROGRESS overrides the config."""
    monkeypatch.delenv("GRIDLOOM_PROGRESS", raising=False)
    gl.create(_pipeline(progress="off"), num_records=25, output_dir=tmp_path / "off")
    assert capsys.readouterr() == ("", "")
    gl.create(_pipeline(progress="log"), num_records=25, output_dir=tmp_path / "log")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("gridloom: complete · 25/25 rows · n 25 done · twice 25 done · ")
    gl.preview(_pipeline(), num_records=5)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("GRIDLOOM_PROGRESS", "log")
    gl.preview(_pipeline(progress="off"), num_records=5)
    assert capsys.readouterr().err.startswith("gridloom: complete · 5/5 rows")


# ------------------------------------------------------------------------------- the reporter


def _stats(*nodes: tuple[str, int, int], dropped: int = 0) -> SchedulerStatistics:
    return SchedulerStatistics(
        row_groups_in_flight=1,
        row_groups_written=0,
        tasks_submitted=0,
        tasks_waiting_on_model=0,
        tasks_ready=0,
        cells_done=sum(done for _, done, _ in nodes),
        cells_failed=sum(failed for _, _, failed in nodes),
        rows_dropped=dropped,
        retries=0,
        cells_deferred=0,
        salvage_rounds=0,
        cells_salvaged=0,
        rows_abandoned=0,
        nodes=tuple(
            NodeProgress(name=name, outputs=(name,), done=done, failed=failed)
            for name, done, failed in nodes
        ),
        peak_row_groups_in_flight=1,
        peak_tasks_submitted=0,
        peak_tasks_waiting_on_model=0,
    )


async def test_a_failing_display_never_reaches_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A reporter whose snapshots fail logs one warning and stops; the run's body goes on."""
    calls = 0
    failed = trio.Event()

    def statistics() -> SchedulerStatistics:
        nonlocal calls
        calls += 1
        if calls > 1:
            failed.set()
            raise RuntimeError("broken snapshot")
        return _stats(("a", 0, 0))

    stream = io.StringIO()
    reporter = ProgressReporter(
        "log", statistics=statistics, total=10, interval=0.01, stream=stream
    )
    with caplog.at_level(logging.WARNING, logger="gridloom.progress"):
        with trio.fail_after(10):
            async with reporting(reporter):
                await failed.wait()
                await trio.sleep(0.05)  # a few more polls, had it gone on
        reporter.finish("complete")
    warnings = [r for r in caplog.records if "progress display failed" in r.getMessage()]
    assert len(warnings) == 1
    assert calls == 2  # it stopped polling after the failure
    assert stream.getvalue() == ""


async def test_a_virtual_clock_does_not_drive_the_reporter(autojump_clock: Any) -> None:
    """On an autojump clock the reporter stops after its first tick: its wake-ups never make
    virtual time run ahead while the run waits."""
    stream = io.StringIO()
    reporter = ProgressReporter(
        "log", statistics=lambda: _stats(("a", 1, 0)), total=10, interval=1.0, stream=stream
    )
    async with reporting(reporter):
        await trio.sleep(1000)
    assert stream.getvalue() == ""


# -------------------------------------------------------------------- pure computations


def test_take_snapshot_counts_finished_rows() -> None:
    """Rows finished = rows done by the column furthest behind + rows dropped, at most the
    total."""
    stats = _stats(("topic", 100, 0), ("summary", 40, 2), ("quality", 30, 1), dropped=3)
    snapshot = take_snapshot(stats, time=5.0, total=100)
    assert snapshot.rows == 33
    assert snapshot.rows_dropped == 3
    assert snapshot.columns[1] == ColumnProgress(name="summary", done=40, failed=2)
    done = _stats(("topic", 100, 0), ("summary", 97, 3), ("quality", 97, 0), dropped=3)
    assert take_snapshot(done, time=9.0, total=100).rows == 100
    assert take_snapshot(_stats(), time=0.0, total=10).rows == 0


def test_rate_over_the_recent_window() -> None:
    """The rate runs from the oldest sample within the window to the newest."""
    samples = [(0.0, 0.0), (5.0, 100.0), (10.0, 300.0), (15.0, 400.0)]
    assert rate(samples, window=10.0) == pytest.approx((400 - 100) / 10)
    assert rate(samples, window=100.0) == pytest.approx(400 / 15)
    # Only the newest sample in the window: the one just before it is used.
    assert rate(samples, window=1.0) == pytest.approx(100 / 5)
    assert rate([(0.0, 0.0), (0.5, 50.0)]) is None  # spans less than a second
    assert rate([(3.0, 10.0)]) is None
    assert rate([(0.0, 10.0), (2.0, 10.0)]) == 0.0


def test_eta_from_remaining_and_rate() -> None:
    """ETA = remaining / rate; 0 when nothing remains; unknown without a positive rate."""
    assert eta_seconds(3800, 212.0) == pytest.approx(17.92, abs=0.01)
    assert eta_seconds(0, None) == 0.0
    assert eta_seconds(-2, 10.0) == 0.0
    assert eta_seconds(10, None) is None
    assert eta_seconds(10, 0.0) is None


def test_format_duration() -> None:
    """Durations read naturally at every scale."""
    assert format_duration(4.24) == "4.2 s"
    assert format_duration(17.9) == "18 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(7620) == "2 h 07 min"
    assert format_duration(None) == "?"
    assert format_duration(float("inf")) == "?"


def _snapshot(**overrides: Any) -> ProgressSnapshot:
    values: dict[str, Any] = {
        "time": 5.7,
        "total": 5000,
        "rows": 1200,
        "rows_dropped": 3,
        "columns": (ColumnProgress(name="summary", done=1250, failed=3),),
        "models": (
            ModelProgress(alias="writer", limit=16, in_flight=14, requests=1300, rate_limited=3),
        ),
    }
    return ProgressSnapshot(**{**values, **overrides})


def test_plain_line_format() -> None:
    """The log line: rows, each column, each model, the rate and the ETA."""
    line = format_line(_snapshot(), 212.0)
    assert line == (
        "gridloom: 1,200/5,000 rows · summary 1,250 done 3 failed · "
        "writer limit 16 in flight 14 refused 3 · 212 rows/s · ETA 18 s"
    )
    quiet = _snapshot(columns=(ColumnProgress(name="topic", done=9, failed=0),), models=())
    expected = "gridloom: 1,200/5,000 rows · topic 9 done · ? rows/s · ETA ?"
    assert format_line(quiet, None) == expected
    final = format_line(_snapshot(rows=5000, time=23.6), 211.9, status="complete")
    assert final.startswith("gridloom: complete · 5,000/5,000 rows · summary")
    assert final.endswith("· 212 rows/s · in 24 s")


def test_mode_resolution(caplog: pytest.LogCaptureFixture) -> None:
    """auto: bar on a terminal, log elsewhere, off for a preview; the environment overrides
    the config; an invalid environment value is ignored with a warning."""
    assert resolve_mode("auto", env={}, terminal=True) == "bar"
    assert resolve_mode("auto", env={}, terminal=False) == "log"
    assert resolve_mode("auto", env={}, terminal=True, preview=True) == "off"
    assert resolve_mode("log", env={}, terminal=True, preview=True) == "log"
    assert resolve_mode("bar", env={"GRIDLOOM_PROGRESS": "off"}, terminal=True) == "off"
    assert resolve_mode("off", env={"GRIDLOOM_PROGRESS": "BAR"}, terminal=False) == "bar"
    assert resolve_mode("auto", env={"GRIDLOOM_PROGRESS": "auto"}, terminal=False) == "log"
    with caplog.at_level(logging.WARNING, logger="gridloom.progress"):
        assert resolve_mode("log", env={"GRIDLOOM_PROGRESS": "loud"}, terminal=True) == "log"
    assert "GRIDLOOM_PROGRESS='loud'" in caplog.text


def test_render_summary() -> None:
    """The end-of-run summary: rows, a table of columns, a table of models, retries, and why
    the run ended."""
    summary = {
        "status": "stopped",
        "stop_reason": "model 'judge' failed 9 of its last 10 requests",
        "num_records": 100,
        "num_rows": 60,
        "num_dropped": 2,
        "wall_time": 12.5,
        "rows_per_second": 4.8,
        "columns": {
            "topic": {"done": 62, "failed": 0, "dropped": 0},
            "quality": {"done": 60, "failed": 2, "dropped": 0},
        },
        "models": {
            "judge": {
                "requests": 1234,
                "input_tokens": 56789,
                "output_tokens": 4321,
                "rate_limited": 7,
                "transport_retries": {"ProviderUnavailable": 3, "ConnectionFailed": 2},
                "failed": 9,
                "mean_latency": 0.25,
                "p95_latency": 0.61,
            },
        },
        "invocation": {"retries": 11, "salvage_rounds": 1},
        "drop_examples": [
            {
                "column": "quality",
                "error_type": "InvalidOutput",
                "rows": 2,
                "row_id": 17,
                "message": "column 'quality': not valid JSON\n(line 1)",
            }
        ],
    }
    assert render_summary(summary).splitlines() == [
        "60 of 100 rows written, 2 dropped, in 12.5 s (4.8 rows/s)",
        "",
        "  column   done  failed  dropped",
        "  topic      62       0        0",
        "  quality    60       2        0",
        "",
        "dropped rows, by reason:",
        "  quality · InvalidOutput · 2 rows",
        "    row 17: not valid JSON (line 1)",
        "",
        "  model  requests  tokens in  tokens out  refused  retries  errors  mean latency"
        "  p95 latency",
        "  judge     1,234     56,789       4,321        7        5       9        0.25 s"
        "       0.61 s",
        "",
        "cell retries 11 · salvage rounds 1",
        "ended: stopped early: model 'judge' failed 9 of its last 10 requests",
    ]


def test_render_summary_of_a_real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``render_summary`` takes a RunResult's summary as it is."""
    monkeypatch.setenv("GRIDLOOM_PROGRESS", "off")
    result = gl.create(_pipeline(), num_records=25, output_dir=tmp_path / "o")
    text = render_summary(result.summary)
    assert text.startswith(f"25 of 25 rows written to {tmp_path / 'o'}, 0 dropped, in ")
    assert "  twice     25       0        0" in text
    assert "cell retries 0 · salvage rounds 0" in text
    assert "dropped rows" not in text
    assert text.endswith("ended: complete: every row asked for was written")


@pytest.mark.parametrize(
    ("rows", "ended"),
    [
        (
            100,
            "complete: every row asked for was written"
            " (3 dropped rows replaced, run.fill_to_target)",
        ),
        (97, "complete (3 rows dropped, within run.allow_drops)"),
    ],
)
def test_the_ending_line_says_where_dropped_rows_went(rows: int, ended: str) -> None:
    """A complete run with dropped rows says they were replaced when every row asked for was
    written (fill_to_target), and that they were let go by allow_drops when rows are missing."""
    summary = {"status": "complete", "num_records": 100, "num_rows": rows, "num_dropped": 3}
    assert render_summary(summary).splitlines()[-1] == f"ended: {ended}"


@pytest.mark.parametrize("width", [60, 80, 100, 160])
@pytest.mark.parametrize("total", [60, 12_345, 10_000_000])
def test_bar_lines_fit_the_terminal(width: int, total: int) -> None:
    """No line of the bar display is cut at the terminal's width (80 columns used to cut
    every column line): bars shrink, then long names are cut, then the ETA and the rate go,
    and the failed count stays."""
    long = "a_rather_long_column_name_for_a_judge"
    reporter = ProgressReporter("bar", statistics=lambda: _stats(), total=total)
    snapshot = ProgressSnapshot(
        time=5.0,
        total=total,
        rows=total // 3,
        rows_dropped=total // 9,
        columns=(
            ColumnProgress(name="topic", done=total, failed=0),
            ColumnProgress(name=long, done=total // 2, failed=total // 9),
        ),
        models=(
            ModelProgress(alias="writer", limit=64, in_flight=12, requests=99, rate_limited=3),
        ),
    )
    for final in (False, True):
        # The display is one unwrapped Text, cut with an ellipsis at the terminal's width.
        lines = reporter._renderable(snapshot, final=final, width=width).plain.splitlines()  # type: ignore[union-attr]
        assert len(lines) == 4
        for line in lines if width >= 80 else lines[1:3]:
            assert len(line) <= width, line
        assert lines[2].endswith(f"{total // 9:,} failed"), lines[2]
        assert "━" in lines[1]
        if width >= 160:
            assert long in lines[2]  # cut only when needed
            assert "/s" in lines[2]


def test_the_final_frame_shows_rates_that_agree() -> None:
    """On the final frame every rate is an average over the run: the columns' rates agree with
    the head's rows/s when every column is done."""
    reporter = ProgressReporter("bar", statistics=lambda: _stats(), total=500)
    snapshot = ProgressSnapshot(
        time=10.0,
        total=500,
        rows=500,
        rows_dropped=0,
        columns=(
            ColumnProgress(name="a", done=500, failed=0),
            ColumnProgress(name="b", done=500, failed=0),
        ),
    )
    text = reporter._renderable(snapshot, final=True, width=120).plain  # type: ignore[union-attr]
    assert "50 rows/s" in text
    assert text.count(" 50/s") == 2, text
