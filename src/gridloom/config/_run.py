"""How a run is executed: limits, retries, health checks, progress, and where it runs."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .._attrs import frozen
from ._executor import RayConfig
from ._throttle import ThrottleConfig
from ._typecheck import typed
from ._validators import schema_keywords

__all__ = ["RunConfig"]


@schema_keywords(exclusiveMinimum=0, maximum=1)
def _optional_rate(_inst: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must be in (0, 1] or null, got {value!r}")


@frozen(kw_only=True)
class RunConfig:
    """How a run is executed; none of these change *what* is generated except ``seed`` and
    ``row_group_size`` (the random streams are derived per row group).

    Attributes:
        row_group_size: rows per row group; each row group is one parquet file.
        max_row_groups_in_flight: row groups held in memory at once.
        max_submitted_tasks: cell/batch tasks dispatched and working locally at once.
        max_llm_wait_tasks: model-bound tasks waiting on the network at once; a run raises
            it to twice the models' ``max_parallel_requests`` summed when that is more.
        max_worker_threads: threads running synchronous generators at once.
        template_max_output_chars: the longest text one template may render for one cell (an
            expression's value, a prompt), and the longest string or list it may build on the
            way; all the text its filters build together stays under 64 times this. A cell
            over it fails with ``TemplateLimitExceeded`` (its row is dropped).
        template_max_loop_iterations: ``{% for %}`` iterations one render of a template may
            run, all its loops together; also the largest ``range()`` it may ask for.
        template_time_budget_seconds: CPU seconds one render of a template may use. Templates
            with loops, macros or calls render in a worker thread, never on the event loop;
            this bounds them even where the other limits do not.
        seed: makes the output identical run to run; a random seed is drawn (and recorded in
            ``metadata.json``) when unset.
        scheduling: ``cell`` starts each cell as soon as its row's upstream cells are done;
            ``column`` runs each column to completion before the next (the legacy baseline).
        throttle: how each model's adaptive concurrency limit reacts to its provider.
        max_cell_attempts: attempts a cell gets when it fails for a reason that may pass (a
            rate limit that outlasted the throttle, 5xx, a timeout, a dropped connection, a
            malformed reply), each after a backoff; then it waits for salvage.
        retry_backoff_seconds: the first backoff; each further one doubles, with full jitter.
        retry_backoff_max_seconds: the longest backoff.
        salvage_rounds: when a row group has nothing left but cells out of attempts, they are
            re-run this many times (one attempt each, after a pause of
            ``retry_backoff_max_seconds``) before their rows are dropped; 0 drops them at once.
        salvage_round_seconds: each salvage round is cancelled after this long (its unfinished
            cells count as failed).
        shutdown_error_rate: stop the run when one model's failure rate exceeds this
            (``null``: never); completed row groups are kept and the run can be resumed. The
            rate is the share of its requests that failed, taken second by second (by when
            each request was sent) and averaged over the recent seconds, so a burst of
            requests that failed together — timeouts of requests that hung at once — weighs
            as one second, not as many failures.
        shutdown_window: at most this many recent requests per model are judged.
        shutdown_window_seconds: only requests sent this recently are judged.
        shutdown_min_outcomes: the rate is not judged on fewer requests than this.
        shutdown_min_seconds: nor before the model's requests were sent over this long,
            counted from its first request (not over the window, which at a high request
            rate holds less time than this): a failing model is stopped this long after its
            first request whatever its request rate, and a start-up burst of failures cannot
            stop a run on its own (a refused API key stops it at once).
        shutdown_refused_seconds: stop the run when every request of one model has been
            refused for capacity (429, or a ``capacity_statuses`` status: 502, 503, 529)
            for this many seconds since the first refusal, with not one
            success meanwhile; the stop reason quotes the provider's latest refusal. ``0``:
            never. (Such refusals are retried behind the throttle's cooldown, so they never
            count in ``shutdown_error_rate``; a 429 saying the account's quota or credit is
            spent, e.g. ``insufficient_quota``, stops the run at once.)
        shutdown_unavailable_seconds: stop the run sooner when one model has not had a single
            success in the run and every refusal of it so far was a 502, 503 (or another
            ``capacity_statuses`` status; not one 429 or 529): this many seconds after its
            first refusal. An
            endpoint that has never served a request is more likely a wrong provider
            ``endpoint`` (base URL) or a gateway or proxy with nothing behind it than a
            passing outage; 90 s still waits out a gateway blip at the start. A 429 (a live
            provider asking to slow down), a 529 (Anthropic's API saying it is overloaded) or
            one success turns this check off for that model
            for the rest of the run: from then on only ``shutdown_refused_seconds`` applies.
            ``0``: never (only ``shutdown_refused_seconds`` applies). Off, too, when
            ``shutdown_refused_seconds`` is ``0`` (capacity refusals never stop the run) or
            not longer than this.
        generator_first_rows: stop the run when the first this many rows of the run all
            fail at a column with the same error of its own (a template that does not
            render, output that fails its schema, a custom function that raises; not a
            model's errors), whatever order their cells end in (rows whose cell was skipped
            or whose row a model error dropped are passed over); ``0`` never.
        generator_error_rate: stop the run when one such error's share of a column's recent
            outcomes is clearly above this — the lower end of its 99% confidence interval
            (Wilson) exceeds it, so chance alone never stops a column that fails less often
            (``null``: never).
        generator_window: recent outcomes per column that rate is computed over.
        generator_min_outcomes: that rate is not judged on fewer outcomes than this.
        allow_drops: the share of ``num_records`` that may be dropped while the run still
            counts as ``complete``; a run that ends with more rows missing has status
            ``incomplete`` (``gridloom create`` exits 5). ``0`` (the default): every row
            asked for must be written.
        fill_to_target: when rows are dropped, generate extra rows (new row ids after the
            planned ones) until ``num_records`` rows are written or the budget is spent.
        fill_budget: extra rows allowed, as a fraction of ``num_records``.
        trace: record every task attempt (``trace.parquet``, and ``trace.json`` for Perfetto);
            the ``GRIDLOOM_TRACE=1`` environment variable turns it on too.
        progress: live progress while the run goes: ``bar`` redraws a bar per column and a line
            per model in the terminal; ``log`` prints one plain line every
            ``progress_interval_seconds`` and a final one; ``auto`` is ``bar`` on a terminal,
            else ``log`` (``off`` for a preview); the ``GRIDLOOM_PROGRESS`` environment variable
            (auto, bar, log, off) overrides it.
        progress_interval_seconds: seconds between two ``log`` progress lines.
        executor: ``local`` runs in this process; ``ray`` shards the run over a Ray cluster
            (``pip install 'gridloom[ray]'``), writing the same dataset a local run writes.
        ray: how a ``ray`` run is sharded (``address``, ``shards``, ...); see
            :class:`~gridloom.config.RayConfig`.
    """

    row_group_size: int = attrs.field(default=500, validator=[typed, attrs.validators.ge(1)])
    max_row_groups_in_flight: int = attrs.field(
        default=4, validator=[typed, attrs.validators.ge(1)]
    )
    max_submitted_tasks: int = attrs.field(default=256, validator=[typed, attrs.validators.ge(1)])
    max_llm_wait_tasks: int = attrs.field(default=1024, validator=[typed, attrs.validators.ge(1)])
    max_worker_threads: int = attrs.field(default=8, validator=[typed, attrs.validators.ge(1)])
    template_max_output_chars: int = attrs.field(
        default=1_048_576, validator=[typed, attrs.validators.ge(1)]
    )
    template_max_loop_iterations: int = attrs.field(
        default=100_000, validator=[typed, attrs.validators.ge(1)]
    )
    template_time_budget_seconds: float = attrs.field(
        default=2.0, validator=[typed, attrs.validators.gt(0.0)]
    )
    seed: int | None = attrs.field(default=None, validator=typed)
    scheduling: Literal["cell", "column"] = attrs.field(default="cell", validator=typed)
    throttle: ThrottleConfig = attrs.field(
        factory=ThrottleConfig, validator=attrs.validators.instance_of(ThrottleConfig)
    )
    max_cell_attempts: int = attrs.field(default=8, validator=[typed, attrs.validators.ge(1)])
    retry_backoff_seconds: float = attrs.field(
        default=1.0, validator=[typed, attrs.validators.ge(0.0)]
    )
    retry_backoff_max_seconds: float = attrs.field(
        default=30.0, validator=[typed, attrs.validators.ge(0.0)]
    )
    salvage_rounds: int = attrs.field(default=2, validator=[typed, attrs.validators.ge(0)])
    salvage_round_seconds: float = attrs.field(
        default=600.0, validator=[typed, attrs.validators.gt(0.0)]
    )
    shutdown_error_rate: float | None = attrs.field(default=0.5, validator=[typed, _optional_rate])
    shutdown_window: int = attrs.field(default=1000, validator=[typed, attrs.validators.ge(1)])
    shutdown_window_seconds: float = attrs.field(
        default=120.0, validator=[typed, attrs.validators.gt(0.0)]
    )
    shutdown_min_outcomes: int = attrs.field(default=20, validator=[typed, attrs.validators.ge(1)])
    shutdown_min_seconds: float = attrs.field(
        default=5.0, validator=[typed, attrs.validators.ge(0.0)]
    )
    shutdown_refused_seconds: float = attrs.field(
        default=600.0, validator=[typed, attrs.validators.ge(0.0)]
    )
    shutdown_unavailable_seconds: float = attrs.field(
        default=90.0, validator=[typed, attrs.validators.ge(0.0)]
    )
    generator_first_rows: int = attrs.field(default=5, validator=[typed, attrs.validators.ge(0)])
    generator_error_rate: float | None = attrs.field(default=0.5, validator=[typed, _optional_rate])
    generator_window: int = attrs.field(default=1000, validator=[typed, attrs.validators.ge(1)])
    generator_min_outcomes: int = attrs.field(default=20, validator=[typed, attrs.validators.ge(1)])
    allow_drops: float = attrs.field(
        default=0.0, validator=[typed, attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    fill_to_target: bool = attrs.field(default=False, validator=typed)
    fill_budget: float = attrs.field(default=0.25, validator=[typed, attrs.validators.ge(0.0)])
    trace: bool = attrs.field(default=False, validator=typed)
    progress: Literal["auto", "bar", "log", "off"] = attrs.field(default="auto", validator=typed)
    progress_interval_seconds: float = attrs.field(
        default=10.0, validator=[typed, attrs.validators.gt(0.0)]
    )
    executor: Literal["local", "ray"] = attrs.field(default="local", validator=typed)
    ray: RayConfig = attrs.field(
        factory=RayConfig, validator=attrs.validators.instance_of(RayConfig)
    )
