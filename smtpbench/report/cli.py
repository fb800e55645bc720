"""``smtpbench compare`` and ``smtpbench report``: read result folders, never run anything."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError


def compare_command(
    base: Annotated[str, typer.Argument(help="Results folder of the baseline run.")],
    new: Annotated[list[str], typer.Argument(help="Results folder(s) to compare with it (one column each).")],
    fail_if: Annotated[
        list[str] | None,
        typer.Option("--fail-if", help="Exit 1 when a change holds, e.g. 'transaction.p99 > +10%' (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    ignore_noise: Annotated[
        bool, typer.Option("--ignore-noise", help="Let --fail-if fail on changes within noise too.")
    ] = False,
) -> None:
    """Compare result folders: per-phase percentiles, throughput and errors, with noise-aware deltas."""
    from smtpbench.report.compare import compare_runs, judge, parse_condition
    from smtpbench.report.compare_view import compare_json, print_compare
    from smtpbench.report.rundata import load_run

    try:
        conditions = [parse_condition(c) for c in fail_if or ()]
        base_run = load_run(base)
        new_runs = [load_run(n) for n in new]
        verdicts = judge(conditions, base_run, new_runs, ignore_noise=ignore_noise)
        rows = compare_runs(base_run, new_runs)
    except ConfigError as exc:
        print(f"smtpbench: error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        print(json.dumps(compare_json(rows, base_run, new_runs, verdicts), indent=2))
    else:
        print_compare(rows, base_run, new_runs, verdicts)
    raise typer.Exit(EXIT_FAILED if any(v.failed for v in verdicts) else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``smtpbench compare`` and ``smtpbench report`` to the CLI."""
    app.command("compare")(compare_command)
