"""Pictures of a traced run: column activity, model traffic, latencies (PNG, via matplotlib).

matplotlib is optional (``pip install 'gridloom[plot]'``); it is imported when a plot is drawn,
and figures are drawn with its Agg backend (no display needed, the global backend untouched).

Example:
    >>> from gridloom.plots import render_plots
    >>> render_plots(Path("out/run"))  # doctest: +SKIP
    [PosixPath('out/run/columns.png'), PosixPath('out/run/models.png'), ...]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import StorageError
from .storage._metadata import check_document, load_json
from .trace import (
    TRACE_FILE,
    assign_lanes,
    column_order,
    requests_in_flight,
    throttle_history,
    trace_end,
    trace_origin,
)
from .trace._read import read_trace

__all__ = ["compare_gantt", "draw_gantt", "render_plots"]

#: Column colours (matplotlib's tab10 without its grey, which would read as "no colour").
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
#: The background of a column's band.
BAND_COLOUR = "#e9effa"
#: Share of a band's height its attempts use (the rest separates bands).
_BAND_FILL = 0.8
_WIDTH = 12.0
_DPI = 100


def _matplotlib() -> tuple[Any, Any]:
    """matplotlib's ``Figure`` and Agg canvas classes, or an ImportError saying what to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "gridloom's plots need matplotlib; install it with: pip install 'gridloom[plot]'",
            name="matplotlib",
        ) from exc
    return Figure, FigureCanvasAgg


def _figure(width: float, height: float) -> Any:
    figure_class, canvas_class = _matplotlib()
    figure = figure_class(figsize=(width, height), dpi=_DPI, layout="constrained")
    canvas_class(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    return path


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _columns(table: pa.Table, *names: str) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in names}


def _lighten(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` mixed with white (``amount`` 0: unchanged, 1: white)."""
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c + (1.0 - c) * amount for c in rgb)
    return (r, g, b)


# ---------------------------------------------------------------------- the Gantt


def draw_gantt(ax: Any, table: pa.Table, *, end: float | None = None) -> list[str]:
    """Draw column activity over time on the matplotlib Axes ``ax``.

    One horizontal band per column, the first column to run at the top; in it, each task
    attempt is a thin bar from dispatched to completed in the column's light colour, with its
    model time (sent → response) in the column's full colour. Attempts that overlap are
    stacked on lanes within the band. Queue wait (ready → dispatched) is not drawn.

    Args:
        ax: the Axes to draw on.
        table: the trace (:data:`~gridloom.trace.TRACE_SCHEMA`).
        end: the right end of the time axis (default: the trace's end).

    Returns:
        The columns, one per band, top to bottom.
    """
    from matplotlib.collections import PolyCollection

    columns = column_order(table)
    data = _columns(table, "column", "ready", "dispatched", "sent", "response", "completed")
    stop = trace_end(table) if end is None else end
    visible = max(stop, 1e-9) / 1000
    spans: dict[str, list[tuple[float, float, float, float]]] = {c: [] for c in columns}
    for column, ready, dispatched, sent, response, completed in zip(
        *(data[k] for k in ("column", "ready", "dispatched", "sent", "response", "completed")),
        strict=True,
    ):
        start = dispatched if _finite(dispatched) else ready
        finish = completed if _finite(completed) else stop
        if not _finite(start):
            continue
        model_end = response if _finite(response) else finish
        # At least a pixel wide, so instant tasks (samplers, expressions) still show.
        spans[column].append((start, max(finish, start + visible), sent, model_end))
    light_boxes: list[list[tuple[float, float]]] = []
    light_colours: list[tuple[float, float, float]] = []
    strong_boxes: list[list[tuple[float, float]]] = []
    strong_colours: list[str] = []
    for band, column in enumerate(columns):
        colour = PALETTE[band % len(PALETTE)]
        ax.axhspan(band, band + _BAND_FILL, color=BAND_COLOUR, linewidth=0, zorder=0.6)
        lanes, count = assign_lanes([(s, f) for s, f, _, _ in spans[column]])
        height = _BAND_FILL / max(count, 1)
        gap = 0.15 * height if count <= 40 else 0.0
        for (start, finish, sent, model_end), lane in zip(spans[column], lanes, strict=True):
            low = band + lane * height + gap / 2
            high = band + (lane + 1) * height - gap / 2
            light_boxes.append(_box(start, finish, low, high))
            light_colours.append(_lighten(colour, 0.55))
            if _finite(sent):
                strong_boxes.append(_box(sent, max(sent, model_end), low, high))
                strong_colours.append(colour)
    for boxes, colours in ((light_boxes, light_colours), (strong_boxes, strong_colours)):
        if boxes:
            ax.add_collection(
                PolyCollection(boxes, facecolors=colours, linewidths=0, antialiaseds=False)
            )
    ax.set_xlim(0.0, max(stop, 1e-9) * 1.01)
    ax.set_ylim(len(columns) - (1 - _BAND_FILL) / 2 if columns else 1.0, -(1 - _BAND_FILL) / 2)
    ax.set_yticks([band + _BAND_FILL / 2 for band in range(len(columns))], labels=columns)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("seconds since the run's start")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return columns


def _box(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _gantt_legend(figure: Any) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor="#c8c8c8", label="task (dispatched → completed)"),
        Patch(facecolor="#505050", label="model (sent → response)"),
    ]
    figure.legend(handles=handles, loc="outside lower right", ncols=2, frameon=False)


def _band_height(bands: int) -> float:
    return 0.45 * bands + 0.9


def compare_gantt(traces: Mapping[str, pa.Table], path: Path, *, title: str) -> Path:
    """Several runs' column activity (see :func:`draw_gantt`) one above the other, on one time
    axis: e.g. the same pipeline in cell-level and in column mode.

    Args:
        traces: per panel title (say, the mode and its wall time), a run's trace.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        ``path``.
    """
    end = max((trace_end(table) for table in traces.values()), default=0.0)
    heights = [_band_height(len(column_order(table))) for table in traces.values()]
    figure = _figure(_WIDTH, sum(heights) + 0.8)
    axes = figure.subplots(
        max(len(traces), 1), 1, sharex=True, squeeze=False, height_ratios=heights or None
    )[:, 0]
    for ax, (name, table) in zip(axes, traces.items(), strict=False):
        draw_gantt(ax, table, end=end)
        ax.set_title(name, loc="left", fontsize="medium")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    figure.suptitle(title, x=0.01, ha="left", fontsize="large")
    _gantt_legend(figure)
    return _save(figure, path)


# ---------------------------------------------------------------------- models


def _draw_models(
    path: Path, table: pa.Table, summary_models: Mapping[str, Mapping[str, Any]]
) -> Path | None:
    origin = trace_origin(table)
    if origin is None:  # not recorded: the throttles were made as the run started
        origin = min(
            (
                info["history"][0][0]
                for usage in summary_models.values()
                for info in (usage.get("throttle") or {}).values()
                if info.get("history")
            ),
            default=0.0,
        )
    history = throttle_history(summary_models, origin=origin)
    flight = requests_in_flight(table)
    aliases = sorted(set(history) | set(flight))
    if not aliases:
        return None
    end = trace_end(table)
    figure = _figure(_WIDTH, 2.4 * len(aliases) + 0.6)
    axes = figure.subplots(len(aliases), 1, sharex=True, squeeze=False)[:, 0]
    data = _columns(table, "model", "response", "completed", "error")
    for ax, alias in zip(axes, aliases, strict=True):
        usage = summary_models.get(alias, {})
        if alias in flight:
            times, values = zip(*[*flight[alias], (end, flight[alias][-1][1])], strict=True)
            ax.step(times, values, where="post", color="#1f77b4", label="requests in flight")
        cuts_t: list[float] = []
        cuts_v: list[int] = []
        top = max((v for _, v in flight.get(alias, [])), default=0)
        for domain, points in history.get(alias, {}).items():
            # The throttles exist before the run starts: their state then holds from 0.
            before = [(0.0, limit) for t, limit, _ in points if t < 0][-1:]
            shown = before + [(t, limit) for t, limit, _ in points if t >= 0]
            shown.append((max(end, shown[-1][0]), shown[-1][1]))
            times, limits = zip(*shown, strict=True)
            label = "AIMD limit" if len(history[alias]) == 1 else f"AIMD limit ({domain})"
            ax.step(times, limits, where="post", color="#d62728", label=label)
            top = max(top, *limits)
            for (_, old), (t, new) in itertools.pairwise(shown):
                if new < old:
                    cuts_t.append(t)
                    cuts_v.append(new)
        if cuts_t:
            ax.plot(cuts_t, cuts_v, "v", color="#d62728", label="429 → limit cut")
        refused = [
            response if _finite(response) else completed
            for model, response, completed, error in zip(
                data["model"], data["response"], data["completed"], data["error"], strict=True
            )
            if model == alias and error == "RateLimited"
        ]
        if refused:
            ax.plot(refused, [0] * len(refused), "x", color="black", label="429 (task deferred)")
        requests = usage.get("requests", "?")
        limited = usage.get("rate_limited", len(refused))
        ax.set_title(
            f"{alias}: {requests} requests, {limited} answered 429", loc="left", fontsize="medium"
        )
        ax.set_ylabel("requests")
        ax.set_ylim(-0.5, max(top, 1) * 1.12)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    axes[-1].set_xlabel("seconds since the run's start")
    axes[-1].set_xlim(0.0, max(end, 1e-9) * 1.01)
    return _save(figure, path)


def _summary_models(path: Path) -> Mapping[str, Mapping[str, Any]]:
    """``summary.models`` of the run's ``metadata.json``, checked where the pictures read it:
    per alias an object, its ``requests`` and ``rate_limited`` whole numbers, and each
    ``throttle.<domain>.history`` a list of ``[time, limit, in flight]`` (a finite time,
    two whole numbers).

    Raises:
        StorageError: naming the file and the field that is wrong.
    """
    failing = f"cannot read {path}"
    doc = check_document(load_json(path), failing)
    models = (doc.get("summary") or {}).get("models") or {}

    def damaged(field: str, what: str, value: Any) -> StorageError:
        return StorageError(
            f"{failing}: metadata.json is damaged: summary.models.{field} must be {what},"
            f" got {value!r:.60}"
        )

    if not isinstance(models, dict):
        raise damaged("", "an object", models)
    for alias, usage in models.items():
        if not isinstance(usage, dict):
            raise damaged(alias, "an object", usage)
        for key in ("requests", "rate_limited"):
            if key in usage and not _whole(usage[key]):
                raise damaged(f"{alias}.{key}", "a whole number", usage[key])
        throttle = usage.get("throttle") or {}
        if not isinstance(throttle, dict):
            raise damaged(f"{alias}.throttle", "an object", throttle)
        for domain, info in throttle.items():
            if not isinstance(info, dict):
                raise damaged(f"{alias}.throttle.{domain}", "an object", info)
            history = info.get("history") or []
            if not isinstance(history, list):
                raise damaged(f"{alias}.throttle.{domain}.history", "a list", history)
            for index, point in enumerate(history):
                if not (
                    isinstance(point, list)
                    and len(point) == 3
                    and isinstance(point[0], int | float)
                    and not isinstance(point[0], bool)
                    and abs(point[0]) <= 1e12
                    and _whole(point[1])
                    and _whole(point[2])
                ):
                    raise damaged(
                        f"{alias}.throttle.{domain}.history[{index}]",
                        "[time, limit, in flight]",
                        point,
                    )
    return models


def _whole(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 2**53


# ---------------------------------------------------------------------- latencies


def _draw_latency(path: Path, table: pa.Table) -> Path | None:
    data = _columns(table, "column", "ready", "sent", "response")
    latency: dict[str, list[float]] = {}
    wait: dict[str, list[float]] = {}
    for column, ready, sent, response in zip(
        data["column"], data["ready"], data["sent"], data["response"], strict=True
    ):
        if _finite(sent) and _finite(response):
            latency.setdefault(column, []).append(response - sent)
            wait.setdefault(column, []).append(sent - ready)
    columns = [c for c in column_order(table) if c in latency]
    if not columns:
        return None
    figure = _figure(_WIDTH, 2.0 * len(columns) + 0.8)
    axes = figure.subplots(len(columns), 2, squeeze=False)
    for (left, right), column in zip(axes, columns, strict=True):
        for ax, values, what, colour in (
            (left, latency[column], "model latency (sent → response)", "#1f77b4"),
            (right, wait[column], "queue + slot + throttle wait (ready → sent)", "#ff7f0e"),
        ):
            ax.hist(values, bins=min(50, max(5, len(values) // 4)), color=colour)
            ordered = sorted(values)
            median = ordered[len(ordered) // 2]
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            ax.set_title(
                f"{column}: {what}\nmedian {median:.3g} s, p95 {p95:.3g} s",
                loc="left",
                fontsize="small",
            )
            ax.set_ylabel("attempts")
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    return _save(figure, path)


# ---------------------------------------------------------------------- a run directory


def render_plots(out_dir: Path, *, dest: Path | None = None) -> list[Path]:
    """Draw a traced run's pictures as PNGs.

    Reads ``out_dir/trace.parquet`` (the run must have been traced: ``run.trace: true`` or
    ``GRIDLOOM_TRACE=1``) and, for the throttles' history, ``out_dir/metadata.json``, and
    writes:

    * ``columns.png``: column activity over time (:func:`draw_gantt`);
    * ``models.png``: per model, requests in flight, the AIMD limit and 429s (when the run
      called models);
    * ``latency.png``: per column that called a model, histograms of model latency and of the
      wait before the request went out.

    Args:
        out_dir: the run directory.
        dest: where to write the PNGs (default: ``out_dir``).

    Returns:
        The PNGs written.

    Raises:
        FileNotFoundError: ``out_dir`` holds no trace.
        ImportError: matplotlib is not installed (``pip install 'gridloom[plot]'``).
        StorageError: the trace or ``metadata.json`` is damaged, or not gridloom's (the
            message names the file and the field).
    """
    out_dir = Path(out_dir)
    trace_path = out_dir / TRACE_FILE
    if not trace_path.is_file():
        raise FileNotFoundError(
            f"{trace_path} not found: trace the run with run.trace: true or GRIDLOOM_TRACE=1"
        )
    _matplotlib()
    table = read_trace(trace_path)
    summary_models: Mapping[str, Mapping[str, Any]] = {}
    metadata_path = out_dir / "metadata.json"
    if metadata_path.is_file():
        summary_models = _summary_models(metadata_path)
    target = out_dir if dest is None else Path(dest)
    written = [_draw_columns(target / "columns.png", table)]
    for drawn in (
        _draw_models(target / "models.png", table, summary_models),
        _draw_latency(target / "latency.png", table),
    ):
        if drawn is not None:
            written.append(drawn)
    return written


def _draw_columns(path: Path, table: pa.Table) -> Path:
    bands = len(column_order(table))
    figure = _figure(_WIDTH, _band_height(bands) + 0.8)
    ax = figure.subplots()
    draw_gantt(ax, table)
    end = trace_end(table)
    ax.set_title(
        f"column activity: {table.num_rows} task attempts in {end:.2f} s",
        loc="left",
        fontsize="medium",
    )
    _gantt_legend(figure)
    return _save(figure, path)
