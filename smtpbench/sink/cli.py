"""``smtpbench sink``: run the sink as a process of its own.

The first line on stdout is always ``smtpbench-sink listening on HOST:PORT``
(flushed), which is what :class:`~smtpbench.sink.embedded.EmbeddedSink`
waits for.  SIGINT or SIGTERM stops it: sessions get a 421, the stats are
printed as one ``smtpbench-sink stats {json}`` line and written to
``--stats-file``.  SIGUSR1 pauses the sink (stops answering: for
``--pause-for`` if given, else until SIGUSR2), SIGUSR2 resumes it; see
:mod:`smtpbench.sink.downstream` for the pause, ``--blackhole`` and
``--report-to``.  ``--workers N`` runs N processes on the port
(:mod:`smtpbench.sink.workers`); this process then speaks for them: one
listening line, signals forwarded, the stats summed, exit code 3 when a
worker died.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio
import typer

from smtpbench.credentials import read_secret_file, read_users
from smtpbench.errors import EXIT_RUN_ERROR, ConfigError, RunError, fail
from smtpbench.sink.config import DEFAULT_HOSTNAME, DEFAULT_MAX_SIZE, PHASES, SinkConfig
from smtpbench.sink.control import run_until_stopped
from smtpbench.sink.faults import validate_faults
from smtpbench.sink.server import SinkServer
from smtpbench.sink.workers import WorkerError, Workers, check_supported
from smtpbench.units import parse_duration, parse_host_port, parse_ratio, parse_workers_option, worker_count

PASSWORD_ENV = "SMTPBENCH_SINK_PASSWORD"
LISTENING_PREFIX = "smtpbench-sink listening on "
STATS_PREFIX = "smtpbench-sink stats "


def register(app: typer.Typer) -> None:
    """Add the ``sink`` sub-command to ``app``."""
    app.command("sink", help="Run the embedded SMTP sink (a fast, compliant test server with load knobs and faults).")(
        sink_command
    )


def sink_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(2525, "--port", help="Port to listen on; 0 picks a free one."),
    hostname: str = typer.Option(DEFAULT_HOSTNAME, "--hostname", help="Name in the greeting and EHLO reply."),
    local_domain: list[str] = typer.Option(
        [], "--local-domain", help="Extra local domain (repeatable); * accepts mail for every domain."
    ),
    delay_banner: str = typer.Option("0", "--delay-banner", help="Delay before the greeting, e.g. 20ms."),
    delay_ehlo: str = typer.Option("0", "--delay-ehlo", help="Delay before the EHLO/HELO reply."),
    delay_mail: str = typer.Option("0", "--delay-mail", help="Delay before the MAIL reply."),
    delay_rcpt: str = typer.Option("0", "--delay-rcpt", help="Delay before each RCPT reply."),
    delay_data: str = typer.Option("0", "--delay-data", help="Delay before the 354."),
    delay_data_end: str = typer.Option("0", "--delay-data-end", help="Delay before the reply to the final dot."),
    delay_quit: str = typer.Option("0", "--delay-quit", help="Delay before the 221."),
    reject_rcpt_temp: str = typer.Option("0", "--reject-rcpt-temp", help="Ratio of RCPT answered 450."),
    reject_rcpt_perm: str = typer.Option("0", "--reject-rcpt-perm", help="Ratio of RCPT answered 550."),
    reject_data_temp: str = typer.Option("0", "--reject-data-temp", help="Ratio of messages answered 451."),
    reject_data_perm: str = typer.Option("0", "--reject-data-perm", help="Ratio of messages answered 554."),
    disconnect: str = typer.Option("0", "--disconnect", help="Ratio of commands after which the connection drops."),
    blackhole: str = typer.Option("0", "--blackhole", help="Ratio of messages accepted with 250, then dropped."),
    report_to: str | None = typer.Option(
        None, "--report-to", help="Report each accepted message's X-Smtpbench-Id to a run at HOST:PORT."
    ),
    report_buffer: int = typer.Option(1_000_000, "--report-buffer", help="Reports held while the run is slow."),
    pause_at: str | None = typer.Option(
        None, "--pause-at", help="Stop answering this long after the start, for --pause-for."
    ),
    pause_for: str = typer.Option("0", "--pause-for", help="Length of a pause (--pause-at, SIGUSR1)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random choices."),
    fault: list[str] = typer.Option([], "--fault", help="Conformance check id to break (repeatable)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate chain (enables STARTTLS)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key."),
    implicit_tls: bool = typer.Option(False, "--implicit-tls", help="TLS from the first octet (no STARTTLS)."),
    auth_user: str | None = typer.Option(
        None, "--auth-user", help=f"Enable AUTH for USER (password: ${PASSWORD_ENV})."
    ),
    auth_password_file: Path | None = typer.Option(None, "--auth-password-file", help="File holding the password."),
    auth_users_file: Path | None = typer.Option(
        None, "--auth-users-file", help="Enable AUTH for every username,password row of this CSV file."
    ),
    auth_token_file: Path | None = typer.Option(
        None, "--auth-token-file", help="Offer XOAUTH2/OAUTHBEARER, accepting the bearer token in this file."
    ),
    allow_plain_auth: bool = typer.Option(False, "--allow-plain-auth", help="Offer AUTH without TLS (testing only)."),
    max_size: int = typer.Option(DEFAULT_MAX_SIZE, "--max-size", help="Largest message in octets (0: no limit)."),
    idle_timeout: str = typer.Option("300s", "--idle-timeout", help="Idle time before 421 and close."),
    store: Path | None = typer.Option(None, "--store", help="Write each accepted message as ID.eml + ID.json here."),
    stats_file: Path | None = typer.Option(None, "--stats-file", help="Write the stats as JSON here on exit."),
    lmtp: bool = typer.Option(
        False, "--lmtp", help="Speak LMTP (RFC 2033): LHLO, one reply per recipient after the data."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the listening and the final stats line."),
    proxy_protocol: bool = typer.Option(
        False, "--proxy-protocol", help="Every connection starts with a PROXY header (v1 or v2); its client counts."
    ),
    workers: str = typer.Option(
        "1", "--workers", help="Processes sharing the port (N, or auto: one per CPU); Linux only above 1."
    ),
) -> None:
    """Run the sink until SIGINT or SIGTERM."""
    try:
        delays = {
            phase: parse_duration(text, f"--delay-{phase.replace('_', '-')}")
            for phase, text in zip(
                PHASES,
                (delay_banner, delay_ehlo, delay_mail, delay_rcpt, delay_data, delay_data_end, delay_quit),
                strict=True,
            )
        }
        config = SinkConfig(
            host=host,
            port=port,
            hostname=hostname,
            local_domains=frozenset(local_domain),
            max_size=max_size,
            idle_timeout=parse_duration(idle_timeout, "--idle-timeout"),
            ssl_context=_server_context(tls_cert, tls_key),
            implicit_tls=implicit_tls,
            auth_users=_auth_users(auth_user, auth_password_file, auth_users_file),
            auth_token=read_secret_file(auth_token_file, "--auth-token-file", "token") if auth_token_file else "",
            allow_plain_auth_without_tls=allow_plain_auth,
            store_dir=store,
            delays={k: v for k, v in delays.items() if v > 0},
            reject_rcpt_temp=parse_ratio(reject_rcpt_temp, "--reject-rcpt-temp"),
            reject_rcpt_perm=parse_ratio(reject_rcpt_perm, "--reject-rcpt-perm"),
            reject_data_temp=parse_ratio(reject_data_temp, "--reject-data-temp"),
            reject_data_perm=parse_ratio(reject_data_perm, "--reject-data-perm"),
            disconnect=parse_ratio(disconnect, "--disconnect"),
            blackhole=parse_ratio(blackhole, "--blackhole"),
            report_to=None if report_to is None else parse_host_port(report_to, "--report-to"),
            report_buffer=report_buffer,
            pause_at=None if pause_at is None else parse_duration(pause_at, "--pause-at"),
            pause_for=parse_duration(pause_for, "--pause-for"),
            seed=seed,
            lmtp=lmtp,
            faults=validate_faults(fault),
            proxy_protocol=proxy_protocol,
        )
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} out of range", key="--port", expected="0..65535")
        config.validate()
        if store is not None:
            _make_store(store)
        if stats_file is not None and (stats_file.is_dir() or not stats_file.parent.is_dir()):
            # Found out now, not when the stats are written at the end of a long test.
            why = "is a folder" if stats_file.is_dir() else f"is in no folder: {stats_file.parent} does not exist"
            raise ConfigError(f"{stats_file} {why}", key="--stats-file")
        processes = worker_count(parse_workers_option(workers))
        if processes > 1:
            check_supported()
    except ConfigError as exc:
        fail(exc, "run")
    died = 0
    try:
        if processes == 1:
            stats = trio.run(_run, config, quiet)
        else:
            pool = Workers(config, processes)
            stats = pool.run(partial(_listening, config, quiet))
            died = pool.died
    except OSError as exc:
        fail(RunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"), "run")
    except WorkerError as exc:
        fail(exc, "run")
    print(STATS_PREFIX + json.dumps(stats, sort_keys=True), flush=True)
    if stats_file is not None:
        try:
            stats_file.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            fail(RunError(f"cannot write {stats_file}: {exc.strerror or exc}"), "run")
    if died:
        raise typer.Exit(EXIT_RUN_ERROR)  # each death was reported on stderr when it happened


def _server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together", key="--tls-cert/--tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"cannot load certificate {cert} / key {key}: {reason}", key="--tls-cert") from None
    return ctx


def _make_store(store: Path) -> None:
    """Create the ``--store`` folder now: a failure later, inside the server, read as 'cannot listen'."""
    if store.exists() and not store.is_dir():
        raise ConfigError(f"{store} is not a folder", key="--store")
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {store}: {exc.strerror or exc}", key="--store") from None


def _auth_users(user: str | None, password_file: Path | None, users_file: Path | None) -> dict[str, str]:
    if users_file is not None:
        if user is not None or password_file is not None:
            raise ConfigError(
                "--auth-users-file replaces --auth-user and --auth-password-file", key="--auth-users-file"
            )
        return dict(read_users(users_file, "--auth-users-file"))
    if user is None:
        if password_file is not None:
            raise ConfigError("--auth-password-file needs --auth-user", key="--auth-password-file")
        return {}
    if password_file is not None:
        password = read_secret_file(password_file, "--auth-password-file")
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise ConfigError(
            f"no password for --auth-user {user}",
            key="--auth-user",
            hint=f"set ${PASSWORD_ENV} or pass --auth-password-file",
        )
    return {user: password}


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listening(config: SinkConfig, quiet: bool, host: str, port: int) -> None:
    print(LISTENING_PREFIX + _address(host, port), flush=True)
    if not quiet:
        print(
            f"smtpbench-sink: hostname {config.hostname}, faults: {', '.join(sorted(config.faults)) or 'none'}",
            file=sys.stderr,
            flush=True,
        )


async def _run(config: SinkConfig, quiet: bool) -> dict[str, Any]:
    def listening(server: SinkServer) -> None:
        _listening(config, quiet, server.host, server.port)

    def stopping(signum: int) -> None:
        if not quiet:
            print(f"smtpbench-sink: {signal.Signals(signum).name}, stopping", file=sys.stderr, flush=True)

    return await run_until_stopped(
        config, stop_signals=(signal.SIGINT, signal.SIGTERM), on_listening=listening, on_stop=stopping
    )
