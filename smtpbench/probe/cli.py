"""``smtpbench probe HOST[:PORT]``: one transaction, fully annotated.

Exit codes (README, "smtpbench probe"): 0 accepted (or stopped where
``--quit-after`` asked), 2 bad input, 3 the ``--json`` file could not be
written, 10-17 the failure classes of :mod:`smtpbench.probe.model`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from smtpbench.conform.config import PASSWORD_ENV
from smtpbench.errors import ConfigError, RunError, fail
from smtpbench.probe.model import STEPS
from smtpbench.probe.options import DEFAULT_TIMEOUT, ProbeOptions, build_options


def probe(
    target: Annotated[str, typer.Argument(help="HOST[:PORT] (port 25, or 465 with --tls)")],
    sender: Annotated[str | None, typer.Option("--from", help="MAIL FROM address ('' for the null sender)")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="RCPT TO address (repeatable)")] = None,
    helo: Annotated[str | None, typer.Option("--helo", help="EHLO/HELO name")] = None,
    starttls: Annotated[bool, typer.Option("--starttls", help="Upgrade with STARTTLS after EHLO")] = False,
    tls: Annotated[bool, typer.Option("--tls", help="Implicit TLS from the first octet (SMTPS)")] = False,
    ca_file: Annotated[str | None, typer.Option("--ca-file", help="CA bundle to verify the server")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the certificate (still shown)")] = False,
    auth_user: Annotated[
        str | None, typer.Option("--auth-user", help=f"AUTH user; password from ${PASSWORD_ENV} or --password-file")
    ] = None,
    password_file: Annotated[str | None, typer.Option("--password-file", help="File holding the password")] = None,
    auth_mechanism: Annotated[
        str | None,
        typer.Option(
            "--auth-mechanism",
            help="PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 or OAUTHBEARER (default: the first password"
            " mechanism offered, in that order; the bearer ones take their token from --password-file or"
            " $SMTPBENCH_TOKEN)",
        ),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="'Name: value' to add or replace (repeatable)")
    ] = None,
    body: Annotated[str | None, typer.Option("--body", help="Body text of the built message")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Send this file as the whole message ('-': stdin)")] = None,
    attach: Annotated[list[str] | None, typer.Option("--attach", help="Attach a file (MIME; repeatable)")] = None,
    pipelining: Annotated[str, typer.Option("--pipelining", help="auto|on|off (auto: when offered)")] = "auto",
    chunking: Annotated[bool, typer.Option("--chunking", help="Send the message with BDAT (RFC 3030)")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for the connect, the TLS handshake and each reply")
    ] = DEFAULT_TIMEOUT,
    quit_after: Annotated[str | None, typer.Option("--quit-after", help="|".join(STEPS))] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="Write the whole exchange as JSON here")] = None,
) -> None:
    """Send one message and show every line of the dialogue, explained."""
    try:
        opts = build_options(
            target,
            sender=sender,
            recipients=to,
            helo=helo,
            starttls=starttls,
            tls=tls,
            ca_file=ca_file,
            insecure=insecure,
            auth_user=auth_user,
            password_file=password_file,
            auth_mechanism=auth_mechanism,
            headers=header,
            body=body,
            data=data,
            attachments=attach,
            pipelining=pipelining,
            chunking=chunking,
            timeout=timeout,
            quit_after=quit_after,
            json_path=json_path,
        )
    except ConfigError as exc:
        fail(exc, "probe")
    # Imported here: registering the command must not slow down every other command's start (email, ssl...).
    import trio

    from smtpbench.conform.report import write_json
    from smtpbench.probe.dialogue import Dialogue
    from smtpbench.probe.message import build_message
    from smtpbench.probe.transcript import Transcript

    transcript = Transcript()
    outcome = trio.run(Dialogue(opts, transcript, build_message(opts)).run)
    transcript.summary(outcome)
    if opts.json_path:
        try:
            write_json(opts.json_path, transcript.to_json(opts.target, options_json(opts), outcome))
        except RunError as exc:
            fail(exc, "probe")
    raise typer.Exit(outcome.exit_code)


def options_json(opts: ProbeOptions) -> dict[str, object]:
    """The options as recorded in ``--json`` (the password never; only whether AUTH was asked for)."""
    return {
        "host": opts.host,
        "port": opts.port,
        "from": opts.sender,
        "to": opts.recipients,
        "helo": opts.helo,
        "tls": opts.tls,
        "insecure": opts.insecure,
        "auth_user": opts.auth_user,
        "auth_mechanism": opts.auth_mechanism,
        "pipelining": opts.pipelining,
        "chunking": opts.chunking,
        "timeout": opts.timeout,
        "quit_after": opts.quit_after,
    }


def register(app: typer.Typer) -> None:
    """Add the ``probe`` sub-command to ``app``."""
    app.command("probe")(probe)
