"""The reporter: a trio task that polls snapshots and draws them (rich bars, or plain lines)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO

import trio

from ._snapshot import (
    RATE_WINDOW_SECONDS,
    ModelProgress,
    ProgressSnapshot,
    eta_seconds,
    format_duration,
    format_line,
    format_rate,
    model_progress,
    rate,
    resolve_mode,
    take_snapshot,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ..clients import ModelHandle
    from ..config import RunConfig
    from ..engine import SchedulerStatistics

__all__ = ["BAR_POLL_SECONDS", "ProgressReporter", "make_console", "reporting"]

log = logging.getLogger("gridloom.progress")

#: Seconds between two snapshots of the bar display: at most 8 redraws a second.
BAR_POLL_SECONDS = 0.125
#: The bar display skips a redraw when no count changed, unless this long has passed.
_IDLE_REDRAW_SECONDS = 1.0
#: A redraw waits at least this many times as long as the last one took: the display takes at
#: most about 1% of the event loop, however slow the terminal.
_COST_FACTOR = 100
#: Width of a bar, in cells, when the terminal has room; it shrinks to fit down to the least.
_BAR_WIDTH = 30
_LEAST_BAR = 6
#: Column and model names are cut to fit, never below this.
_LEAST_NAME = 8


def make_console(file: IO[str] | None = None, *, force_terminal: bool | None = None) -> Console:
    """The rich console gridloom draws on: stderr unless ``file`` is given.

    Args:
        file: where to write (default ``sys.stderr`` as it is now).
        force_terminal: draw as on a terminal (colours, cursor moves) even when ``file`` is
            not one; ``None`` asks the file.
    """
    from rich.console import Console

    return Console(file=sys.stderr if file is None else file, force_terminal=force_terminal)


class ProgressReporter:
    """Shows a run's progress from periodic snapshots (see :mod:`gridloom.progress`).

    A run starts it as a service of its nursery (``await nursery.start(reporter.serve)``) and
    calls :meth:`stop` when the work is over; :func:`reporting` does the same around a block.
    Then :meth:`finish` prints the ``log`` display's final line. Nothing it does raises into
    the run: a failure of the display is logged once and the display stops.

    Args:
        mode: ``bar`` or ``log``.
        statistics: returns the scheduler's snapshot (``scheduler.statistics``).
        models: the run's model handles by alias.
        total: rows planned in this invocation.
        interval: seconds between two ``log`` lines.
        stream: where to write (default: ``sys.stderr`` as it is when writing).
        model_lines: returns the model lines to show, instead of reading ``models``' handles
            (a sharded run's driver shows the lines its shards report).
    """

    def __init__(
        self,
        mode: Literal["bar", "log"],
        *,
        statistics: Callable[[], SchedulerStatistics],
        models: Mapping[str, ModelHandle] | None = None,
        total: int,
        interval: float = 10.0,
        stream: TextIO | None = None,
        model_lines: Callable[[], Sequence[ModelProgress]] | None = None,
    ):
        self.mode = mode
        self.total = total
        self._statistics = statistics
        self._models = dict(models or {})
        self._model_lines = model_lines
        self._interval = interval
        self._stream = stream
        self._history: deque[ProgressSnapshot] = deque()
        self._started = 0.0
        self._broken = False
        self._live: Live | None = None
        self._drawn: tuple[ProgressSnapshot, float] | None = None
        self._cost = 0.0
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._scope = trio.CancelScope()

    @classmethod
    def for_run(
        cls,
        run: RunConfig,
        *,
        statistics: Callable[[], SchedulerStatistics],
        models: Mapping[str, ModelHandle],
        total: int,
        preview: bool = False,
    ) -> ProgressReporter | None:
        """The reporter that ``run.progress`` (or ``GRIDLOOM_PROGRESS``) asks for; ``None``
        for ``off``.

        Args:
            run: the run settings (``progress``, ``progress_interval_seconds``).
            statistics: returns the scheduler's snapshot.
            models: the run's model handles by alias.
            total: rows planned in this invocation.
            preview: for a preview (``auto`` then means ``off``).
        """
        mode = resolve_mode(run.progress, preview=preview)
        if mode == "off":
            return None
        return cls(
            mode,
            statistics=statistics,
            models=models,
            total=total,
            interval=run.progress_interval_seconds,
        )

    def add_rows(self, rows: int) -> None:
        """``rows`` more rows were planned (``fill_to_target``)."""
        self.total += rows

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> ProgressSnapshot:
        """A snapshot now: the columns' counts, each model's requests and throttle."""
        now = trio.current_time() - self._started
        if self._model_lines is not None:  # another process's models (a sharded run)
            return take_snapshot(
                self._statistics(), self._model_lines(), time=now, total=self.total
            )
        models = [model_progress(handle) for handle in self._models.values()]
        return take_snapshot(self._statistics(), models, time=now, total=self.total)

    def _record(self, snapshot: ProgressSnapshot) -> None:
        """Keep ``snapshot`` for rates: those of the last window, and one before it."""
        history = self._history
        history.append(snapshot)
        while len(history) > 2 and history[1].time < snapshot.time - RATE_WINDOW_SECONDS:
            history.popleft()

    def _rate(self, count: Callable[[ProgressSnapshot], float]) -> float | None:
        return rate([(s.time, count(s)) for s in self._history])

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Take the first snapshot and, for ``bar``, open the live display."""
        self._started = trio.current_time()
        try:
            first = self.snapshot()
            self._record(first)
            if self.mode == "bar":
                self._open_live(first)
        except Exception:
            self._fail()

    async def run(self) -> None:
        """Poll and redraw until cancelled; raises nothing but ``Cancelled``.

        ``bar`` polls every :data:`BAR_POLL_SECONDS` (the rate-limited redraw "on task
        completion": a poll that finds no count changed draws nothing); ``log`` writes a line
        every ``interval``. On a virtual clock (trio's ``MockClock``, as tests use) it stops
        after its first tick, lest its wake-ups make the clock leap ahead while the run waits
        on threads or sockets.
        """
        poll = BAR_POLL_SECONDS if self.mode == "bar" else self._interval
        real_start, clock_start = time.perf_counter(), trio.current_time()
        while not self._broken:
            await trio.sleep(poll)
            if trio.current_time() - clock_start > time.perf_counter() - real_start + 0.05:
                return  # a virtual clock: its time runs ahead of the real one
            try:
                if self.mode == "bar":
                    snapshot = self.snapshot()
                    self._record(snapshot)
                    self._redraw(snapshot)
                else:
                    snapshot = self.snapshot()
                    self._record(snapshot)
                    self._write(format_line(snapshot, self._rate(lambda s: s.rows)))
            except Exception:
                self._fail()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reporter as a service: :meth:`start`, report started, then poll (:meth:`run`)
        until :meth:`stop` (or a cancellation), and :meth:`close`."""
        self.start()
        try:
            with self._scope:
                task_status.started()
                await self.run()
        finally:
            self.close()

    def stop(self) -> None:
        """End :meth:`serve` and close the display now (the run never waits for it)."""
        self._scope.cancel()
        self.close()

    def close(self) -> None:
        """Stop the display: for ``bar``, a final redraw, then the terminal is handed back."""
        if self._live is None:
            return
        try:
            snapshot = self.snapshot()
            self._record(snapshot)
            self._redraw(snapshot, force=True, final=True)
        except Exception:
            self._fail()
        finally:
            self._close_live()

    def finish(self, status: str) -> None:
        """After a run that ended without an error: the ``log`` display's final line, e.g.
        ``gridloom: complete · 5,000/5,000 rows · ... · 212 rows/s · in 23.6 s``.

        Args:
            status: how the run ended (``complete``, ``stopped``).
        """
        if self.mode != "log" or self._broken:
            return
        try:
            snapshot = self.snapshot()
            average = snapshot.rows / snapshot.time if snapshot.time > 0 else None
            self._write(format_line(snapshot, average, status=status))
        except Exception:
            self._fail()

    def _fail(self) -> None:
        if not self._broken:
            self._broken = True
            log.warning("the progress display failed; the run goes on without it", exc_info=True)
        self._close_live()

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    # ------------------------------------------------------------------ the bar display

    def _open_live(self, first: ProgressSnapshot) -> None:
        from rich.live import Live

        before = {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}
        live = Live(
            self._renderable(first),
            console=make_console(self._stream, force_terminal=True),
            auto_refresh=False,  # redrawn by run(), from trio's thread
            transient=False,
        )
        live.start()
        # Rich hides the cursor while live; a hard exit (a second Ctrl-C) would leave it hidden.
        live.console.show_cursor(True)
        self._live = live
        self._drawn = (first, time.perf_counter())
        # Log handlers that wrote to the terminal now write through rich, above the display.
        proxies = {"stdout": sys.stdout, "stderr": sys.stderr}
        for handler in _stream_handlers():
            name = before.get(id(handler.stream))
            if name is not None and proxies[name] is not handler.stream:
                self._handlers.append((handler, handler.setStream(proxies[name])))

    def _close_live(self) -> None:
        live, self._live = self._live, None
        handlers, self._handlers = self._handlers, []
        for handler, stream in handlers:
            with contextlib.suppress(Exception):
                handler.setStream(stream)
        if live is not None:
            with contextlib.suppress(Exception):
                live.stop()

    def _redraw(
        self, snapshot: ProgressSnapshot, *, force: bool = False, final: bool = False
    ) -> None:
        if self._live is None:
            return
        now = time.perf_counter()
        if not force and self._drawn is not None:
            drawn, at = self._drawn
            if now - at < self._cost * _COST_FACTOR:
                return  # keep redrawing within its share of the event loop
            if now - at < _IDLE_REDRAW_SECONDS and _same_counts(drawn, snapshot):
                return
        self._drawn = (snapshot, now)
        self._live.update(self._renderable(snapshot, final=final), refresh=True)
        self._cost = time.perf_counter() - now

    def _renderable(
        self, snapshot: ProgressSnapshot, *, final: bool = False, width: int | None = None
    ) -> RenderableType:
        """The display: a head line, a line per column, a line per model, each fitted to the
        terminal's width (bars shrink, then names are cut) so no line is cut short.

        While the run goes, rates are those of the last :data:`RATE_WINDOW_SECONDS`; on the
        ``final`` frame they are averages over the whole run, the head's rows/s and the
        columns' cells/s alike, so they agree with each other and with the run summary.

        One unwrapped ``Text``, laid out here: a rich ``Table`` of progress bars costs several
        milliseconds a redraw, this well under one.
        """
        from rich.text import Text

        if width is None:
            width = self._live.console.width if self._live is not None else 100
        total = snapshot.total
        elapsed = snapshot.time if snapshot.time > 0 else None

        def average(count: float) -> float | None:
            return None if elapsed is None else count / elapsed

        rows_rate = average(snapshot.rows) if final else self._rate(lambda s: s.rows)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append("gridloom ", "bold")
        text.append(
            f"{snapshot.rows:,}/{total:,} rows · {format_duration(snapshot.time)} · "
            f"{format_rate(rows_rate)} rows/s · "
            + ("done" if snapshot.rows >= total else _eta(total - snapshot.rows, rows_rate))
        )
        names = [c.name for c in snapshot.columns] + [m.alias for m in snapshot.models]
        # A column line: name, bar, counts, rate ("1,234/s"), ETA ("ETA 3 min 05 s"), failed;
        # every part measured, so that the line fits: bars shrink, names are cut, and on a
        # narrow terminal the ETA goes first, then the rate.
        parts = []
        for i, column in enumerate(snapshot.columns):
            if final:
                per_second = average(column.settled)
            else:
                per_second = rate([(s.time, s.columns[i].settled) for s in self._history])
            remaining = total - column.settled - column.failed
            finished = remaining <= 0
            failed = f"{column.failed:,} failed"
            if column.skipped:
                failed = f"{column.skipped:,} skipped · {failed}"
            parts.append(
                (
                    f"{column.settled:,}/{total:,}",
                    f"{format_rate(per_second)}/s",
                    "done" if finished else _eta(remaining, per_second),
                    failed,
                )
            )
        widths = [max((len(p[k]) for p in parts), default=0) for k in range(4)]
        fixed = 1 + 1 + widths[0] + 2 + widths[3]
        show_rate = show_eta = True
        if fixed + widths[1] + 1 + widths[2] + 2 + _LEAST_NAME + _LEAST_BAR > width:
            show_eta = False
        if fixed + widths[1] + 1 + _LEAST_NAME + _LEAST_BAR > width:
            show_rate = False
        fixed += (widths[1] + 1 if show_rate else 0) + (widths[2] + 2 if show_eta else 0)
        models = [
            f" limit {'-' if m.limit is None else f'{m.limit:,}'} · in flight {m.in_flight:,}"
            f" · requests {m.requests:,} · refused {m.rate_limited:,}"
            + (f" · cached {m.cached:,}" if m.cached else "")
            for m in snapshot.models
        ]
        name_width = max(map(len, names), default=0)
        longest_model = max(map(len, models), default=0)
        if name_width + longest_model > width:
            name_width = max(_LEAST_NAME, width - longest_model)
        bar = max(_LEAST_BAR, min(_BAR_WIDTH, width - fixed - name_width))
        if name_width + bar + fixed > width:
            name_width = max(_LEAST_NAME, width - fixed - bar)
        for column, (counts, per_second_text, eta, failed) in zip(
            snapshot.columns, parts, strict=True
        ):
            filled = min(bar, bar * column.settled // total) if total > 0 else 0
            finished = eta == "done"
            text.append("\n")
            text.append(_fit(column.name, name_width), "cyan")
            text.append(" ")
            text.append("━" * filled, "green" if finished else "magenta")
            text.append("━" * (bar - filled), "bright_black")
            text.append(f" {counts:>{widths[0]}}")
            if show_rate:
                text.append(f" {per_second_text:>{widths[1]}}")
            if show_eta:
                text.append(f"  {eta:>{widths[2]}}")
            text.append("  ")
            text.append(failed, "red" if column.failed else "dim")
        for model, line in zip(snapshot.models, models, strict=True):
            head, _, refusals = line.rpartition(" · ")
            text.append("\n")
            text.append(_fit(model.alias, name_width), "magenta")
            text.append(f"{head} · ")
            text.append(refusals, "yellow" if model.rate_limited else "dim")
        return text


def _fit(name: str, width: int) -> str:
    """``name`` padded, or cut with an ellipsis, to exactly ``width`` characters."""
    return name.ljust(width) if len(name) <= width else name[: width - 1] + "…"


def _eta(remaining: int, per_second: float | None) -> str:
    return f"ETA {format_duration(eta_seconds(remaining, per_second))}"


def _same_counts(a: ProgressSnapshot, b: ProgressSnapshot) -> bool:
    """Whether two snapshots show the same counts (their times aside)."""
    return (
        a.total == b.total and a.rows == b.rows and a.columns == b.columns and a.models == b.models
    )


def _stream_handlers() -> Iterator[logging.StreamHandler[Any]]:
    """The stream handlers of the root logger and of gridloom's loggers."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        ours = name == "gridloom" or name.startswith("gridloom.")
        if ours and isinstance(item, logging.Logger):
            loggers.append(item)
    seen: set[int] = set()
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler) not in seen:
                seen.add(id(handler))
                yield handler


@contextlib.asynccontextmanager
async def reporting(reporter: ProgressReporter | None) -> AsyncIterator[None]:
    """Run ``reporter`` in the background while the body runs (nothing when ``None``).

    The body's end (or error, or cancellation) stops the reporter: the run never waits for it,
    and the reporter raises nothing of its own into the run.
    """
    if reporter is None:
        yield
        return
    reporter.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reporter.run)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    finally:
        reporter.close()
