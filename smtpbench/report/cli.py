"""``smtpbench compare`` and ``smtpbench report``: read result folders, never run anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from smtpbench.errors import EXIT_FAILED, EXIT_OK, ConfigError, fail


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Bad folders, corrupt results, bad conditions, an unwritable -o: one line on stderr, exit 2."""
    try:
        yield
    except ConfigError as exc:
        fail(exc, "report")
    except ValueError as exc:  # a corrupt interval histogram, found when it is decoded
        fail(ConfigError(f"unreadable results: {exc}"), "report")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""  # which file: -o, or the run folder's default
        fail(ConfigError(f"cannot write the report{where}: {exc.strerror or exc}"), "report")


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

    with _usage_errors():
        conditions = [parse_condition(c) for c in fail_if or ()]
        base_run = load_run(base)
        new_runs = [load_run(n) for n in new]
        verdicts = judge(conditions, base_run, new_runs, ignore_noise=ignore_noise)
        rows = compare_runs(base_run, new_runs)
    if as_json:
        print(json.dumps(compare_json(rows, base_run, new_runs, verdicts), indent=2))
    else:
        print_compare(rows, base_run, new_runs, verdicts)
    raise typer.Exit(EXIT_FAILED if any(v.failed for v in verdicts) else EXIT_OK)


def report_command(
    runs: Annotated[list[str], typer.Argument(help="Results folder(s); several are overlaid, one colour each.")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="HTML file to write (default RUN/report.html).")
    ] = None,
) -> None:
    """Write one self-contained HTML report (inline SVG charts, no network) for one or several runs."""
    from smtpbench.report.html import write_report
    from smtpbench.report.rundata import load_run

    with _usage_errors():
        path = write_report([load_run(r) for r in runs], output)
    print(f"report: {path}")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``smtpbench compare`` and ``smtpbench report`` to the CLI."""
    app.command("compare")(compare_command)
    app.command("report")(report_command)
