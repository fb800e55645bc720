"""``smtpbench conform``: run the conformance checks against one server.

Exit codes: 0 nothing failed, 1 a check failed (or could not run: ``error``),
2 usage or configuration error, 3 a report could not be written.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from smtpbench.conform import report
from smtpbench.conform.checks import select
from smtpbench.conform.config import build_options
from smtpbench.conform.model import Verdict
from smtpbench.conform.oracle import store_dir_oracle
from smtpbench.conform.runner import run_suite
from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE, ConfigError, RunError


def conform(
    target: Annotated[str, typer.Argument(help="HOST[:PORT] (default port 25) or a profile.toml with [conform]")],
    starttls: Annotated[bool, typer.Option("--starttls", help="Upgrade every session with STARTTLS")] = False,
    tls: Annotated[bool, typer.Option("--tls", help="Implicit TLS (e.g. port 465)")] = False,
    ca_file: Annotated[str | None, typer.Option("--ca-file", help="CA bundle to verify the server")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the certificate")] = False,
    user: Annotated[str | None, typer.Option("--user", help="AUTH user (password: $SMTPBENCH_PASSWORD)")] = None,
    password_file: Annotated[str | None, typer.Option("--password-file", help="File holding the password")] = None,
    rcpt: Annotated[str | None, typer.Option("--rcpt", help="A valid local recipient")] = None,
    foreign_rcpt: Annotated[str | None, typer.Option("--foreign-rcpt", help="A non-local recipient")] = None,
    helo: Annotated[str | None, typer.Option("--helo", help="EHLO name")] = None,
    sender: Annotated[str | None, typer.Option("--sender", help="MAIL FROM address")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Ids, prefixes or areas to run")] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Ids, prefixes or areas to leave out")] = None,
    slow: Annotated[bool, typer.Option("--slow", help="Also run checks that take minutes")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to wait for each reply")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Checks run at once (1-16)")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="Write the JSON report here")] = None,
    junit_path: Annotated[str | None, typer.Option("--junit", help="Write a JUnit XML report here")] = None,
    transcript: Annotated[str | None, typer.Option("--transcript", help="Directory for per-check transcripts")] = None,
    store_dir: Annotated[
        str | None, typer.Option("--store-dir", help="Directory of delivered *.eml files (delivery oracle)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only failures and the summary")] = False,
) -> None:
    """Check an SMTP server against RFC 5321 and its extensions."""
    err = Console(stderr=True)
    try:
        options = build_options(
            target,
            {
                "starttls": starttls,
                "tls": tls,
                "ca_file": ca_file,
                "insecure": insecure,
                "user": user,
                "password_file": password_file,
                "rcpt": rcpt,
                "foreign_rcpt": foreign_rcpt,
                "helo": helo,
                "sender": sender,
                "only": tuple(only or ()),
                "skip": tuple(skip or ()),
                "slow": slow,
                "timeout": timeout,
                "concurrency": concurrency,
                "json": json_path,
                "junit": junit_path,
                "transcript": transcript,
                "store_dir": store_dir,
                "quiet": quiet,
            },
        )
        checks = select(options.only, options.skip)
        if not checks:
            raise ConfigError("the selection leaves no check to run", key="--only/--skip")
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    started = report.now()
    oracle = store_dir_oracle(options.store_dir) if options.store_dir else None
    results = run_suite(options, checks, oracle)
    try:
        if options.json_path:
            report.write_json(options.json_path, report.to_json(results, options, started))
        if options.junit_path:
            report.write_junit(options.junit_path, report.to_junit(results, options, started))
        if options.transcript_dir:
            report.write_transcripts(options.transcript_dir, results, options)
    except RunError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_RUN_ERROR) from None
    report.print_terminal(results, options, Console())
    bad = any(r.verdict in (Verdict.FAIL, Verdict.ERROR) for r in results)
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``conform`` sub-command to ``app``."""
    app.command("conform")(conform)
