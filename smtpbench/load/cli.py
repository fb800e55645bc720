"""``smtpbench run``: the command-line face of the load engine."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE, ConfigError, RunError


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
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write report.html (overrides [output] report).")
    ] = False,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="A pass/fail criterion, e.g. 'transaction.p99<250ms' (repeatable)."),
    ] = None,
) -> None:
    """Run a load test described by PROFILE and write results/<run-id>/."""
    from smtpbench.load.engine import execute
    from smtpbench.load.profile import load_profile
    from smtpbench.report.table import print_summary

    try:
        if progress is not None and progress not in ("auto", "live", "plain", "none"):
            raise ConfigError(f"--progress: unknown mode {progress!r}", expected="auto, live, plain or none")
        prof = load_profile(
            profile, set_ or (), target=target, duration=duration, results_dir=results_dir, thresholds=threshold or ()
        )
        outcome = execute(prof, quiet=quiet, progress=progress)
    except ConfigError as exc:
        print(f"smtpbench: error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    except RunError as exc:
        print(f"smtpbench: run failed: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_RUN_ERROR) from None
    if not quiet:
        print_summary(outcome.summary, outcome.results_path)
    if prof.output.report and not no_report:
        _write_report(outcome.results_path, quiet)
    failed = [t for t in outcome.summary.get("thresholds", []) if not t["ok"]]
    if outcome.status not in ("completed", "aborted_by_threshold"):
        reason = outcome.summary.get("status_reason")
        because = f": {reason}" if reason else ""
        print(f"smtpbench: run {outcome.status}{because}; results kept in {outcome.results_path}", file=sys.stderr)
        raise typer.Exit(EXIT_RUN_ERROR)
    if failed:
        names = ", ".join(f"{t['metric']} {t['condition']} ({t['shown']})" for t in failed)
        print(f"smtpbench: {len(failed)} threshold(s) failed: {names}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


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
    """Add ``smtpbench run`` to the CLI."""
    app.command("run")(run_command)
