"""``smtpbench conform``: run the conformance checks against one server.

Exit codes: 0 nothing failed, 1 a check failed (or could not run: ``error``)
that no ``[conform.expect]`` waiver or ``--baseline`` covers, or a waiver no
longer matches; 2 usage or configuration error; 3 a report could not be written.
``policy``, ``warn`` and ``info`` never fail a run.
"""

from __future__ import annotations

from typing import Annotated

import trio
import typer
from rich.console import Console

from smtpbench.config import did_you_mean
from smtpbench.conform import report
from smtpbench.conform.checks import all_checks, select
from smtpbench.conform.config import build_options
from smtpbench.conform.levels import check_text
from smtpbench.conform.model import cited
from smtpbench.conform.oracle import store_dir_oracle
from smtpbench.conform.runner import Runner
from smtpbench.conform.waivers import gate, load_baseline, parse_waivers, stale_reasons
from smtpbench.errors import EXIT_FAILED, EXIT_OK, ConfigError, RunError, fail


def conform(
    target: Annotated[
        str | None, typer.Argument(help="HOST[:PORT] (default port 25) or a profile.toml with [conform]")
    ] = None,
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
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="An earlier --json report: its failures are not new")
    ] = None,
    explain: Annotated[
        str | None, typer.Option("--explain", help="Print what a check sends, the sentence it enforces, and why")
    ] = None,
) -> None:
    """Check an SMTP server against RFC 5321 and its extensions."""
    err = Console(stderr=True)
    if explain is not None:
        _explain(explain, err)
        raise typer.Exit(EXIT_OK)
    try:
        if target is None:
            raise ConfigError("missing TARGET", key="TARGET", expected="HOST[:PORT] or a profile.toml")
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
                "baseline": baseline,
            },
        )
        checks = select(options.only, options.skip)
        if not checks:
            raise ConfigError("the selection leaves no check to run", key="--only/--skip")
        try:
            waivers = parse_waivers(options.expect, {c.id for c in all_checks()}) if options.expect else {}
        except ConfigError as exc:
            exc.file = exc.file or target  # waivers come only from a profile: name it, as other profile errors do
            raise
        previous = load_baseline(options.baseline) if options.baseline else None
    except ConfigError as exc:
        fail(exc, "conform")
    started = report.now()
    oracle = store_dir_oracle(options.store_dir) if options.store_dir else None
    runner = Runner(options, oracle)
    results = trio.run(runner.run, checks)
    outcome = gate(results, waivers, previous)
    try:
        if options.json_path:
            doc = report.to_json(results, options, started, runner.server, outcome.as_dict())
            report.write_json(options.json_path, doc)
        if options.junit_path:
            report.write_junit(options.junit_path, report.to_junit(results, options, started))
        if options.transcript_dir:
            report.write_transcripts(options.transcript_dir, results, options)
    except RunError as exc:
        fail(exc, "conform")
    report.print_terminal(results, options, Console())
    for line in stale_reasons(results, waivers, outcome):
        err.print(f"stale waiver: {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if outcome.failed else EXIT_OK)


def _explain(check_id: str, out: Console) -> None:
    """Print a check's title, what it sends, the sentence it enforces and why it matters; exit 2 if unknown."""
    check = next((c for c in all_checks() if c.id.upper() == check_id.strip().upper()), None)
    text = check_text(check.id) if check is not None else None
    if check is None or text is None:
        ids = [c.id for c in all_checks()]
        guess = did_you_mean(check_id.strip(), ids)
        hint = f"did you mean {guess}?" if guess else None
        fail(
            ConfigError(f"unknown check {check_id!r}", key="--explain", expected=f"one of {', '.join(ids)}", hint=hint),
            "conform",
        )
    rule = text.rule
    lines = [
        f"{check.id} {check.title}  [{check.area}; catalogue level {check.level.value}; {cited(check.rfc)}]",
        f"sends:    {text.sends}",
        f"enforces: {rule.section}, binding the {rule.binds} ({rule.keyword or 'no RFC 2119 word'}):",
        f'          "{rule.sentence}"',
        f"fails at most as: {rule.verdict.value} (a fail needs a server-side MUST/MUST NOT/SHALL)",
        f"why:      {text.why}",
    ]
    Console().print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``conform`` sub-command to ``app``."""
    app.command("conform")(conform)
