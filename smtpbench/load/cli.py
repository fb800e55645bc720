"""``smtpbench run``: the command-line face of the load engine."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer

from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR, ConfigError, RunError, fail

#: Most sessions ``--trace`` may sample (each sampled exchange is held in memory until the run ends).
MAX_TRACE = 10_000


def run_command(
    profile: Annotated[str, typer.Argument(help="Profile file (TOML).")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a profile key: dotted.key=value (repeatable).")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="HOST:PORT, overrides [target].")] = None,
    duration: Annotated[str | None, typer.Option("--duration", help='Run length, e.g. "30s", "5m".')] = None,
    results_dir: Annotated[str | None, typer.Option("--results-dir", help="Where results/<run-id>/ goes.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress, no summary table.")] = False,
    progress: Annotated[
        str | None, typer.Option("--progress", help="auto | live | plain | none (overrides [output].progress).")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="I/N: run shard I (0-based) of N, its exact share of the load (see 'merge')."),
    ] = None,
    start_at: Annotated[
        str | None,
        typer.Option("--start-at", help="Start the schedule at this time (ISO 8601 or epoch seconds; not past)."),
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write report.html (overrides [output] report).")
    ] = False,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="A pass/fail criterion, e.g. 'transaction.p99<250ms' (repeatable)."),
    ] = None,
    metrics_port: Annotated[
        str | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT",
            help="Serve live Prometheus metrics on 127.0.0.1:PORT/metrics during the run ([output] metrics_port).",
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            metavar="N|auto",
            help="Split the load over N processes, one result (auto: one per usable CPU; [workload] workers).",
        ),
    ] = None,
    trace: Annotated[
        int,
        typer.Option(
            "--trace",
            min=0,
            max=MAX_TRACE,
            help="Write the exchange of N sampled sessions, and of the first session of each error kind, "
            "to RUN/traces/ (secrets redacted).",
        ),
    ] = 0,
) -> None:
    """Run a load test described by PROFILE and write results/<run-id>/."""
    import time

    from smtpbench.load.execute import execute
    from smtpbench.load.profile import load_profile
    from smtpbench.load.split import Part, parse_part, parse_start_at, plan_shard

    try:
        if progress is not None and progress not in ("auto", "live", "plain", "none"):
            raise ConfigError(f"--progress: unknown mode {progress!r}", expected="auto, live, plain or none")
        part = parse_part(shard) if shard is not None else Part()
        when = parse_start_at(start_at, time.time()) if start_at is not None else None
        prof = load_profile(
            profile,
            set_ or (),
            target=target,
            duration=duration,
            results_dir=results_dir,
            thresholds=threshold or (),
            metrics_port=metrics_port,
        )
        if workers is not None or prof.workload.workers != 1:  # one worker imports nothing of workers
            from smtpbench.load.workers import check_workers, run_workers
            from smtpbench.units import parse_workers_option, worker_count
        if workers is not None:
            workload = prof.workload.model_copy(update={"workers": parse_workers_option(workers)})
            prof = prof.model_copy(update={"workload": workload})
        count = 1 if prof.workload.workers == 1 else worker_count(prof.workload.workers)
        if count > 1:
            check_workers(prof, trace)
            outcome = run_workers(prof, count, quiet=quiet, progress=progress, shard=part, start_at=when)
        elif shard is None and when is None:
            outcome = execute(prof, quiet=quiet, progress=progress, trace=trace)
        else:
            workload, plan = plan_shard(prof.workload, part, when)
            mine = prof.model_copy(update={"workload": workload})
            outcome = execute(mine, quiet=quiet, progress=progress, shard=plan, recorded=prof, trace=trace)
    except (ConfigError, RunError) as exc:
        fail(exc, "run")
    report = prof.output.report and not no_report
    _conclude(outcome.status, outcome.summary, outcome.results_path, quiet, report, "run", "results kept in")


def _conclude(
    status: str, summary: dict[str, Any], path: str, quiet: bool, report: bool, what: str, where: str
) -> NoReturn:
    """The end-of-run table (unless quiet), report.html (if ``report``) and the exit code.

    Exit 0 completed, 3 (with a line on stderr) when the run did not complete, 1 when a threshold
    failed (also for ``aborted_by_threshold``).  Quiet, the hints for error kinds the client's host
    caused (``ulimit -n``, ``source_addresses``) still go to stderr.
    """
    from smtpbench.report.table import hint_lines, print_summary

    if not quiet:
        print_summary(summary, path)  # hints included
    else:
        for line in hint_lines(summary):
            print(f"smtpbench: {line}", file=sys.stderr)
    if report:
        _write_report(path, quiet)
    failed = [t for t in summary.get("thresholds", []) if not t["ok"]]
    if status not in ("completed", "aborted_by_threshold"):
        reason = summary.get("status_reason")
        because = f": {reason}" if reason else ""
        print(f"smtpbench: {what} {status}{because}; {where} {path}", file=sys.stderr)
        raise typer.Exit(EXIT_RUN_ERROR)
    if failed:
        names = ", ".join(f"{t['metric']} {t['condition']} ({t['shown']})" for t in failed)
        print(f"smtpbench: {len(failed)} threshold(s) failed: {names}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED)
    if status == "aborted_by_threshold":  # the final figures may meet it again (sessions finished after the stop)
        print(f"smtpbench: {what} {status}: {summary.get('status_reason')}; {where} {path}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def merge_command(
    dirs: Annotated[list[str], typer.Argument(help="Shard results folders (or folders holding them).")],
    out: Annotated[str, typer.Option("--out", "-o", help="New folder for the merged results.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary table.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html.")] = False,
) -> None:
    """Merge the results of the shards of one run (--shard I/N) into one run's results folder."""
    from smtpbench.load.merge import merge_runs

    try:
        outcome = merge_runs(dirs, out)
    except (ConfigError, RunError) as exc:
        fail(exc, "merge")
    for path in outcome.superseded:
        print(f"smtpbench: {path}: superseded by a later run of the same shard, left out", file=sys.stderr)
    if outcome.missing:
        shown = ", ".join(map(str, outcome.missing))
        print(f"smtpbench: shards missing: {shown}", file=sys.stderr)
    report = outcome.report and not no_report
    _conclude(outcome.status, outcome.summary, outcome.results_path, quiet, report, "merged run", "results in")


def _write_report(results_path: str, quiet: bool) -> None:
    """Write RUN/report.html; a failure is one warning line, never a lost run or another exit code."""
    from smtpbench.report.html import write_report
    from smtpbench.report.rundata import load_run

    try:
        path = write_report([load_run(results_path)])
    except (ConfigError, OSError, ValueError) as exc:
        print(f"smtpbench: warning: report not written: {exc}", file=sys.stderr)
        return
    if not quiet:
        print(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add ``smtpbench run`` and ``smtpbench merge`` to the CLI."""
    app.command("run")(run_command)
    app.command("merge")(merge_command)
