"""``smtpbench run``: the command-line face of the load engine."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer

from smtpbench.errors import EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE, ConfigError, RunError


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
) -> None:
    """Run a load test described by PROFILE and write results/<run-id>/."""
    import dataclasses
    import time

    from smtpbench.load.engine import execute
    from smtpbench.load.profile import load_profile
    from smtpbench.load.split import Part, parse_part, parse_start_at, plan_shard

    try:
        if progress is not None and progress not in ("auto", "live", "plain", "none"):
            raise ConfigError(f"--progress: unknown mode {progress!r}", expected="auto, live, plain or none")
        part = parse_part(shard) if shard is not None else Part()
        when = parse_start_at(start_at, time.time()) if start_at is not None else None
        prof = load_profile(profile, set_ or (), target=target, duration=duration, results_dir=results_dir)
        if shard is None and when is None:
            outcome = execute(prof, quiet=quiet, progress=progress)
        else:
            workload, plan = plan_shard(prof.workload, part, when)
            mine = dataclasses.replace(prof, workload=workload)
            outcome = execute(mine, quiet=quiet, progress=progress, shard=plan, recorded=prof)
    except (ConfigError, RunError) as exc:
        _fail(exc, "run")
    _conclude(outcome.status, outcome.summary, outcome.results_path, quiet, "run", "results kept in")


def _fail(exc: ConfigError | RunError, verb: str) -> NoReturn:
    """One line on stderr and the documented exit code: 2 for bad input, 3 when the work could not be done."""
    if isinstance(exc, ConfigError):
        print(f"smtpbench: error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    print(f"smtpbench: {verb} failed: {exc}", file=sys.stderr)
    raise typer.Exit(EXIT_RUN_ERROR)


def _conclude(status: str, summary: dict[str, Any], path: str, quiet: bool, what: str, where: str) -> NoReturn:
    """The end-of-run table (unless quiet) and the exit code: 0 completed, else 3 with a line on stderr."""
    from smtpbench.report.table import print_summary

    if not quiet:
        print_summary(summary, path)
    if status != "completed":
        print(f"smtpbench: {what} {status}; {where} {path}", file=sys.stderr)
        raise typer.Exit(EXIT_RUN_ERROR)
    raise typer.Exit(EXIT_OK)


def merge_command(
    dirs: Annotated[list[str], typer.Argument(help="Shard results folders (or folders holding them).")],
    out: Annotated[str, typer.Option("--out", "-o", help="New folder for the merged results.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary table.")] = False,
) -> None:
    """Merge the results of the shards of one run (--shard I/N) into one run's results folder."""
    from smtpbench.load.merge import merge_runs

    try:
        outcome = merge_runs(dirs, out)
    except (ConfigError, RunError) as exc:
        _fail(exc, "merge")
    for path in outcome.superseded:
        print(f"smtpbench: {path}: superseded by a later run of the same shard, left out", file=sys.stderr)
    if outcome.missing:
        shown = ", ".join(map(str, outcome.missing))
        print(f"smtpbench: shards missing: {shown}", file=sys.stderr)
    _conclude(outcome.status, outcome.summary, outcome.results_path, quiet, "merged run", "results in")


def register(app: typer.Typer) -> None:
    """Add ``smtpbench run`` and ``smtpbench merge`` to the CLI."""
    app.command("run")(run_command)
    app.command("merge")(merge_command)
