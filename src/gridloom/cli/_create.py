"""``gridloom create`` and ``gridloom resume``: a run under the signal handling, its report,
and its exit code."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ..errors import ConfigError, StorageError
from ..progress import render_summary
from ..run import MAX_NUM_RECORDS, Run, StopSignals, signal_exit, signal_name
from ..storage import RunResult
from ..storage._rundir import refuse_input_config
from ._cache import no_cache_option
from ._group import json_option
from ._output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    NUM_RECORDS,
    Out,
    check_config_file,
    run_failure,
    run_metadata,
)
from ._signals import run_stoppable
from ._target import (
    OUTPUT,
    Output,
    executor_overrides,
    is_run,
    kept_row_groups,
    local_dir,
    ray_hint,
    ray_options,
    saved_config,
    shown,
)

__all__ = ["create", "resume"]

log = logging.getLogger("gridloom")

accept_code_option = click.option(
    "--accept-code-change",
    is_flag=True,
    help="Resume even though the Python code a column calls (custom function, callable"
    " validator, Python tool: the whole file of its module) changed since the run started;"
    " the change is recorded in metadata.json (code_changes, shown by inspect). Without it"
    " such a resume is refused.",
)


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--num-records",
    type=NUM_RECORDS,
    required=True,
    help="Rows to generate (at most 10^12).",
)
@click.option(
    "-o",
    "--output-dir",
    type=OUTPUT,
    required=True,
    help="Directory for config.yaml, metadata.json and data/: a local folder, or a URI"
    " (s3://bucket/run, gs://..., hdfs://...; credentials from the environment).",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous run in OUTPUT_DIR.")
@click.option("--resume", is_flag=True, help="Continue a run started in OUTPUT_DIR.")
@accept_code_option
@ray_options
@no_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (or error) as JSON.")
def create(
    config: Path,
    num_records: int,
    output_dir: Output,
    overwrite: bool,
    resume: bool,
    accept_code_change: bool,
    ray: str | None,
    shards: int | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Generate NUM_RECORDS rows from CONFIG into OUTPUT_DIR as parquet.

    Ctrl-C (SIGINT) or SIGTERM stops the run: completed row groups are kept,
    metadata.json says "interrupted", and --resume (or `gridloom resume
    OUTPUT_DIR`) then generates only what is missing. A second Ctrl-C while
    stopping exits at once.

    \b
    Exit codes:
      0    the run is complete
      1    the run failed
      2    usage or configuration error (CONFIG is OUTPUT_DIR/config.yaml, which
           the run would replace, without --resume)
      3    OUTPUT_DIR already holds a run, or, holding none, a file a run
           writes (config.yaml, trace.json...): a run never overwrites a file
           it did not write
      4    the run stopped early (the reason is printed)
      5    fewer rows written than asked: more were dropped than
           run.allow_drops allows (the drop reasons are printed)
      130  interrupted by Ctrl-C (SIGINT)
      143  interrupted by SIGTERM

    \b
    Example:
      gridloom create examples/people.yaml -n 1000 -o out/people
      gridloom create examples/people.yaml -n 1000 -o out/people --resume
      gridloom create examples/quickstart.yaml -n 200 -o out/q --overwrite --json
      gridloom create examples/quickstart.yaml -n 100000 -o s3://bucket/q --ray --shards 8
    """
    out = Out("create", as_json)
    if overwrite and resume:
        out.fail(EXIT_CONFIG, "--overwrite and --resume exclude each other", kind="UsageError")
    if accept_code_change and not resume:
        out.fail(
            EXIT_CONFIG,
            "--accept-code-change goes with --resume (a new run records the code as it is)",
            kind="UsageError",
        )
    check_config_file(out, config)
    if not resume and isinstance(output_dir, Path):
        try:
            refuse_input_config(output_dir, config)
        except StorageError as exc:
            out.fail(EXIT_CONFIG, str(exc), kind="UsageError", file=str(config))
    hint = ["gridloom", "create", str(config), "-n", str(num_records), "-o", shown(output_dir)]
    hint += ray_hint(ray, shards)
    _generate(
        out,
        config=config,
        num_records=num_records,
        output_dir=output_dir,
        overwrite=overwrite,
        resume=resume,
        base_dir=None,
        resume_command=[*hint, "--resume"],
        executor=executor_overrides(ray, shards),
        cache=not no_cache,
        accept_code_change=accept_code_change,
    )


@click.command()
@click.argument("output_dir", type=OUTPUT)
@click.option(
    "-n",
    "--num-records",
    type=NUM_RECORDS,
    default=None,
    help="Rows of the whole run (at most 10^12). Default: as recorded in metadata.json; more"
    " extends the run, fewer is refused.",
)
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder the saved config's relative paths (seed dataset, custom function modules)"
    " are resolved against; default: the original config's folder, as recorded in"
    " metadata.json (else OUTPUT_DIR). Needed only when those files have moved.",
)
@accept_code_option
@ray_options
@no_cache_option
@json_option
def resume(
    output_dir: Output,
    num_records: int | None,
    base_dir: Path | None,
    accept_code_change: bool,
    ray: str | None,
    shards: int | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Continue the run in OUTPUT_DIR with the config.yaml saved there.

    The same as `gridloom create OUTPUT_DIR/config.yaml -n <num_records> -o
    OUTPUT_DIR --resume`, with num_records read from metadata.json: only the
    missing row groups are generated, with the recorded seed. Signals, output
    and exit codes are those of create. -n may grow the run, never shrink it.
    The saved config's relative paths (a seed file, custom function modules)
    resolve against the original config's folder, which metadata.json
    records; --base-dir is needed only when those files have moved. Provider
    header values are saved redacted, so a provider that needs headers must
    be resumed with `gridloom create ORIGINAL_CONFIG ... --resume` instead.
    A run whose columns' Python code changed since it started (the file of
    a custom function's module was edited) is refused, naming the columns:
    revert the code, start a new run, or pass --accept-code-change, which
    records the change in metadata.json.

    \b
    Example:
      gridloom resume out/quickstart
      gridloom resume out/people --base-dir examples --json
    """
    out = Out("resume", as_json)
    meta = run_metadata(out, output_dir)
    config = saved_config(output_dir)
    if config is None:
        out.fail(
            EXIT_FAILED,
            "the run directory has no config.yaml; resume with"
            " `gridloom create CONFIG -n N -o OUTPUT_DIR --resume`",
            kind="StorageError",
            file=shown(output_dir),
        )
    recorded = meta.get("num_records")
    if (
        not isinstance(recorded, int)
        or isinstance(recorded, bool)
        or not 1 <= recorded <= MAX_NUM_RECORDS
    ):
        out.fail(
            EXIT_FAILED,
            f"metadata.json has no valid num_records ({recorded!r})",
            kind="StorageError",
            file=f"{shown(output_dir)}/metadata.json",
        )
    if num_records is not None and num_records < recorded:
        out.fail(
            EXIT_CONFIG,
            f"the run has {recorded:,} rows and -n {num_records:,} would shrink it; a resumed"
            f" run keeps its rows and can only grow: pass -n {recorded:,} or more, or leave -n"
            " out",
            kind="UsageError",
            file=shown(output_dir),
        )
    # A run still being written is refused when its store is opened (the writer's lock).
    explicit = base_dir is not None
    recorded_base = meta.get("base_dir")
    if base_dir is None and isinstance(recorded_base, str) and Path(recorded_base).is_dir():
        base_dir = Path(recorded_base)  # where the original config's relative paths pointed
    command = ["gridloom", "resume", shown(output_dir)]
    if explicit:
        command += ["--base-dir", str(base_dir)]
    command += ray_hint(ray, shards)
    _generate(
        out,
        config=config,
        num_records=num_records or recorded,
        output_dir=output_dir,
        overwrite=False,
        resume=True,
        base_dir=base_dir if base_dir is not None else local_dir(output_dir, config),
        resume_command=command,
        executor=executor_overrides(ray, shards),
        cache=not no_cache,
        accept_code_change=accept_code_change,
        config_hint=""
        if explicit
        else f" (the saved config's relative paths and custom function modules resolve"
        f" against {base_dir or shown(output_dir)}, the original config's folder when recorded;"
        " if they have moved, pass --base-dir with their folder)",
    )


def _generate(
    out: Out,
    *,
    config: Path,
    num_records: int,
    output_dir: Output,
    overwrite: bool,
    resume: bool,
    base_dir: Path | None,
    resume_command: list[str],
    config_hint: str = "",
    executor: dict[str, Any] | None = None,
    cache: bool = True,
    accept_code_change: bool = False,
) -> None:
    """The run of ``create`` and ``resume``: a :class:`~gridloom.run.Run` under the signal
    handling, then the report or the error, and the exit code."""

    async def work(signals: StopSignals) -> RunResult:
        run = Run(config, base_dir=base_dir, signals=signals, executor=executor, cache=cache)
        return await run.create(
            num_records=num_records,
            output_dir=output_dir,
            overwrite=overwrite,
            resume=resume,
            accept_code_change=accept_code_change,
        )

    outcome = run_stoppable(out, work)
    if outcome.signum is not None and outcome.result is not None:
        # The signal came after the run had written its last row group and its final status:
        # nothing was cut short, so the run is reported as metadata.json records it.
        log.warning(
            "%s arrived after the run had finished; its result is kept",
            signal_name(outcome.signum),
        )
    elif outcome.signum is not None:
        if outcome.error is not None:  # most likely a consequence of the cancellation
            log.warning("while stopping: %s", outcome.error)
        _interrupted(out, outcome.signum, output_dir, resume_command)
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config, hint=config_hint)
    if outcome.error is not None:
        out.error(outcome.error)
    assert outcome.result is not None
    _report(out, outcome.result)


def _interrupted(out: Out, signum: int, output_dir: Output, resume_command: list[str]) -> NoReturn:
    """Print what was kept and how to resume, then exit with the signal's code."""
    name = signal_name(signum)
    code = signal_exit(signum)
    extra: dict[str, Any] = {
        "status": "interrupted",
        "signal": name,
        "output_dir": shown(output_dir),
        "row_groups_kept": 0,
        "resume_command": None,
    }
    if not is_run(output_dir):  # stopped before the run directory
        message = (
            f"interrupted by {name} before the run started; nothing was written to"
            f" {shown(output_dir)}"
        )
    else:
        kept = kept_row_groups(output_dir)
        command = shlex.join(resume_command)
        extra.update(row_groups_kept=kept, resume_command=command)
        message = (
            f"interrupted by {name}; {kept} row group{'' if kept == 1 else 's'} kept in"
            f" {shown(output_dir)}"
            f" — resume with: {command}"
        )
    if out.as_json:
        out.fail(code, message, kind="Interrupted", extra=extra)
    click.echo(message, err=True)
    sys.exit(code)


def _report(out: Out, result: RunResult) -> None:
    summary: dict[str, Any] = result.summary
    failure = run_failure(result)
    if out.as_json:
        if failure is not None:
            code, kind, message = failure
            out.fail(code, message, kind=kind, extra=summary)
        out.emit(summary)
        return
    # The run summary (also in metadata.json): rows, columns, drop reasons, models, retries,
    # and why the run ended, said once (its last line).
    click.echo(render_summary(summary))
    if failure is not None:
        sys.exit(failure[0])
