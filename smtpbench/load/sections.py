"""The sections of a profile as pydantic models: [target], [smtp], [workload], [output] ([message]: message_section.py).

A section is a :class:`~smtpbench.fields.Table`; a key is a field: a type from :mod:`smtpbench.fields` and
``key(default, "description")`` (the JSON Schema and the README come from these).  A rule between keys lives in
the section's ``_check`` and raises :class:`~smtpbench.fields.Invalid` with ``loc=("key",)``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PlainSerializer, model_validator

from smtpbench.config import shown
from smtpbench.credentials import TOKEN_ENV, read_secret_file, read_users, token
from smtpbench.errors import ConfigError
from smtpbench.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Invalid,
    PositiveDuration,
    Ratio,
    Table,
    Text,
    apply,
    checker,
    choice,
    derived,
    duration,
    got,
    key,
    max_size,
    number,
    text,
    whole,
)
from smtpbench.load.sources import MAX_SOURCE_ADDRESSES, SourceAddresses, check_target_family
from smtpbench.load.tls_section import TlsOptions
from smtpbench.protocol import sasl
from smtpbench.protocol.tables import TIMEOUTS
from smtpbench.units import format_duration, format_size

DEFAULT_HOST = "127.0.0.1"
MAX_SESSIONS = 1_000_000
MAX_RATE = 1_000_000.0
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**12
MAX_CHUNK = 1024**3

Seed = Annotated[int, whole(0, MAX_SEED)]
#: Most worker processes one run may have (``workload.workers``).
MAX_WORKERS = 1024
WORKERS_EXPECTED = f'an integer between 1 and {MAX_WORKERS}, or "auto"'


def parse_workers(value: Any) -> int | str:
    """``workload.workers``: an integer 1 .. MAX_WORKERS, or ``"auto"`` (any case); Invalid otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        count: int = apply(whole(1, MAX_WORKERS), value)
    except Invalid as exc:
        raise Invalid(exc.problem, expected=WORKERS_EXPECTED) from None
    return count


Workers = Annotated[int | str, checker(parse_workers, int | Literal["auto"])]
Host = Annotated[str, text(printable=True, what="a host name or IP address")]
Port = Annotated[int, whole(1, 65535)]
#: A duration of at most an hour (the sink's delays and pauses, metrics_linger).
UpToAnHour = Annotated[float, duration(limit=3600, words="1h"), AS_TEXT]


def _rfc_timeout(name: str) -> str:
    return format_duration(TIMEOUTS.get(name, TIMEOUTS["other"]))


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(_ENV_NAME, value):
        raise Invalid(f"{shown(value)} is not an environment variable name", expected="a name like SMTP_PASSWORD")
    return value


# ---------------------------------------------------------------- [target]


class AuthConfig(Table):
    """SMTP AUTH after EHLO (not with ``embedded``); passwords and tokens themselves are never in the profile."""

    refused = {
        "password": (
            "passwords are never written in a profile",
            "put it in an environment variable (password_env) or a file (password_file)",
        ),
        "token": ("tokens are never written in a profile", f"put it in ${TOKEN_ENV} or a file (token_file)"),
    }
    username: Text | None = key(None, "Account name (not with users_file).")
    mechanism: Annotated[str, choice(*sasl.MECHANISMS)] = key(
        "PLAIN", "SASL mechanism. XOAUTH2 and OAUTHBEARER send a bearer token instead of a password."
    )
    password_env: Annotated[str, checker(_env_name, Annotated[str, Field(pattern=_ENV_NAME)])] | None = key(
        None, "Name of an environment variable holding the password (this, password_file or users_file)."
    )
    password_file: Text | None = key(
        None, "File whose content (trailing newline removed) is the password (this, password_env or users_file)."
    )
    users_file: Text | None = key(
        None,
        "CSV file of username,password rows: each session logs in as one of them, drawn with the seed "
        "(not with username/password_env/password_file; with a token mechanism only the names are used).",
    )
    token_file: Text | None = key(None, f"XOAUTH2/OAUTHBEARER: file holding the bearer token (default: ${TOKEN_ENV}).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        passwords = [n for n in ("password_env", "password_file") if getattr(self, n) is not None]
        clash = [n for n in ("username", *passwords) if getattr(self, n) is not None]
        if self.users_file is not None and clash:
            raise Invalid("users_file names the accounts and their passwords", loc=(clash[0],))
        if self.users_file is None and self.username is None:
            raise Invalid("needs username or users_file", expected='username = "name"', loc=("username",))
        if self.mechanism in sasl.TOKEN_MECHANISMS and passwords:
            hint = f"the bearer token comes from ${TOKEN_ENV} or token_file"
            raise Invalid(f"does not apply to {self.mechanism}", hint=hint, loc=(passwords[0],))
        if self.mechanism not in sasl.TOKEN_MECHANISMS and self.token_file is not None:
            raise Invalid("only applies to XOAUTH2 and OAUTHBEARER", loc=("token_file",))
        if self.mechanism not in sasl.TOKEN_MECHANISMS and self.users_file is None and len(passwords) != 1:
            raise Invalid(
                "needs exactly one of password_env and password_file (or a users_file instead)",
                expected='password_env = "SMTP_PASSWORD" or password_file = "path"',
            )
        return self

    def password(self) -> str:
        """The password, read now from the environment variable or the file (trailing newline removed).

        Raises ConfigError if the variable is unset/empty or the file is missing, unreadable or empty.
        """
        if self.password_env is None:
            assert self.password_file is not None  # guaranteed by validation: exactly one source
            return read_secret_file(self.password_file, "target.auth.password_file")
        if not os.environ.get(self.password_env):
            problem = f"environment variable {self.password_env} is not set or empty"
            raise ConfigError(problem, key="target.auth.password_env")
        return os.environ[self.password_env]

    def credentials(self) -> list[tuple[str, str]]:
        """Every (user, secret) pair sessions may log in with, read now (the secret: password or bearer token).

        Raises ConfigError (exit 2, with the file and line for a bad users file row) when a source is unusable.
        """
        given = self.users_file is not None
        users = read_users(str(self.users_file), "target.auth.users_file") if given else [(str(self.username), "")]
        if self.mechanism in sasl.TOKEN_MECHANISMS:
            bearer = token(self.token_file, "target.auth.token_file")
            return [(name, bearer) for name, _ in users]
        return users if given else [(users[0][0], self.password())]


class SinkDelays(Table):
    """Delays before the embedded sink's replies (at most 1h each)."""

    banner: UpToAnHour | None = key(None, "Before the 220 greeting.")
    ehlo: UpToAnHour | None = key(None, "Before the EHLO reply.")
    mail: UpToAnHour | None = key(None, "Before the MAIL reply.")
    rcpt: UpToAnHour | None = key(None, "Before each RCPT reply.")
    data: UpToAnHour | None = key(None, "Before the 354 reply.")
    data_end: UpToAnHour | None = key(None, "Before the reply to the final dot.")


_RATIOS = ("reject_rcpt_temp", "reject_rcpt_perm", "reject_data_temp", "reject_data_perm", "disconnect", "blackhole")


class SinkOptions(Table):
    """Behaviour of the embedded sink (only with ``embedded = true``): ``smtpbench sink`` flags."""

    delay: SinkDelays = key(default_factory=dict, doc="Delays before replies (none by default).")
    reject_rcpt_temp: Ratio = key(0.0, "Ratio of RCPT answered 4xx.")
    reject_rcpt_perm: Ratio = key(0.0, "Ratio of RCPT answered 5xx (temp + perm <= 1).")
    reject_data_temp: Ratio = key(0.0, "Ratio of messages answered 4xx after the final dot.")
    reject_data_perm: Ratio = key(0.0, "Ratio answered 5xx after the final dot (temp + perm <= 1).")
    disconnect: Ratio = key(0.0, "Ratio of commands after which the sink drops the connection.")
    blackhole: Ratio = key(0.0, "Ratio of messages accepted with 250 and then dropped (README, Delivery latency).")
    pause_at: Duration | None = key(None, "Stop answering this long after the sink's start (with pause_for).")
    pause_for: UpToAnHour | None = key(None, "How long a pause lasts (with pause_at; at most 1h).")
    seed: Seed | None = key(None, "Seed of the sink's random choices (default: workload.seed).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for kind in ("rcpt", "data"):
            if getattr(self, f"reject_{kind}_temp") + getattr(self, f"reject_{kind}_perm") > 1.0:
                raise Invalid(
                    f"reject_{kind}_temp + reject_{kind}_perm exceed 1",
                    expected="ratios that add up to at most 1",
                    loc=(f"reject_{kind}_perm",),
                )
        if (self.pause_at is None) != (self.pause_for is None):
            raise Invalid("pause_at and pause_for go together", loc=("pause_at" if self.pause_for else "pause_for",))
        if self.pause_for == 0:
            raise Invalid("a pause of 0 is none", expected="a duration above 0", loc=("pause_for",))
        return self

    def to_cli_args(self) -> list[str]:
        """``smtpbench sink`` arguments reproducing these options: only non-default values, durations as text."""
        flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
        args = [a for name, s in self.delay if s for a in (flag(f"delay_{name}"), format_duration(s))]
        for name in _RATIOS:
            args += [flag(name), repr(getattr(self, name))] if getattr(self, name) > 0 else []
        if self.pause_at is not None and self.pause_for:
            args += ["--pause-at", format_duration(self.pause_at), "--pause-for", format_duration(self.pause_for)]
        return args + (["--seed", str(self.seed)] if self.seed is not None else [])


def _check_lmtp_port(port: int | None) -> None:
    """RFC 2033: LMTP MUST NOT be used on TCP port 25, and it has no port of its own: one must be given."""
    if port is None:
        hint = "LMTP has no standard port (24 and 2003 are common); it must never be 25"
        raise Invalid(
            "LMTP needs an explicit port", expected="port = 24 (or the LMTP server's port)", hint=hint, loc=("port",)
        )
    if port == 25:
        raise Invalid(
            "LMTP must not be used on TCP port 25 (RFC 2033)", expected="the LMTP server's port", loc=("port",)
        )


class TargetConfig(Table):
    """Where the load goes.  With embedded the engine starts a sink and uses its address:
    host is then 127.0.0.1 and port 0 (a free port)."""

    host: Host = key(DEFAULT_HOST, "Server to test (name or IP). Not allowed with embedded.")
    port: Port = derived(25, "TCP port (default 25, 465 with tls = implicit). Not allowed with embedded.")
    helo: Annotated[str, text(printable=True, what="a host name")] = key(
        "smtpbench.example", "Name sent in EHLO/HELO (LHLO in LMTP)."
    )
    protocol: Annotated[str, choice("smtp", "lmtp")] = key(
        "smtp",
        "smtp, or lmtp (RFC 2033: LHLO, one reply per recipient after the data; needs an explicit port, "
        "never 25; with embedded the sink speaks LMTP).",
    )
    embedded: Bool = key(False, "Start our own sink on 127.0.0.1 (a free port) and test it.")
    tls: Annotated[str, choice("none", "starttls", "implicit")] = key(
        "none", "TLS: none, starttls (upgrade after EHLO) or implicit (TLS from connect)."
    )
    ca_file: Text | None = key(None, "PEM file of CA certificates to verify the server with.")
    insecure: Bool = key(False, "Skip certificate verification (not with ca_file).")
    tls_options: TlsOptions | None = key(None, "TLS versions, SNI and session resumption (only with tls).")
    auth: AuthConfig | None = key(None, "Optional SMTP AUTH after EHLO.")
    sink: SinkOptions = key(default_factory=dict, doc="Embedded sink behaviour.")
    source_addresses: SourceAddresses | None = key(
        None,
        "Local addresses sessions bind to, round-robin (smtpbench run): a list of IPs of the target's family "
        f'or a CIDR like "127.0.0.0/30" (its host addresses, at most {MAX_SOURCE_ADDRESSES}). '
        "Default: the kernel's choice.",
    )
    proxy_protocol: Annotated[str, choice("none", "v1", "v2")] = key(
        "none",
        "PROXY protocol header each session sends right after connect (smtpbench run): none, v1 (text) or v2 "
        "(binary), announcing a client of proxy_sources to a server behind a proxy (Postfix: "
        "smtpd_upstream_proxy_protocol = haproxy).",
    )
    proxy_sources: SourceAddresses | None = key(
        None,
        "The client addresses the PROXY headers announce, round-robin by session number: a list of IPs or a "
        f'CIDR like "198.51.100.0/24" (its host addresses, at most {MAX_SOURCE_ADDRESSES}). Only data in the '
        "header: no packet goes to them. Needed with proxy_protocol.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.proxy_protocol == "none" and self.proxy_sources is not None:
            raise Invalid("only applies with proxy_protocol", hint='set proxy_protocol = "v2"', loc=("proxy_sources",))
        if self.proxy_protocol != "none" and self.proxy_sources is None:
            hint = 'e.g. proxy_sources = "198.51.100.0/24"'
            raise Invalid("needs proxy_sources (the clients to announce)", hint=hint, loc=("proxy_protocol",))
        if self.source_addresses is not None:
            try:
                check_target_family(DEFAULT_HOST if self.embedded else self.host, self.source_addresses)
            except Invalid as exc:
                raise Invalid(exc.problem, expected=exc.expected, loc=("source_addresses",)) from None
        tls_only = {
            "ca_file": self.ca_file is not None,
            "insecure": self.insecure,
            "tls_options": self.tls_options is not None,
        }
        if self.tls == "none" and any(tls_only.values()):
            name = next(n for n, used in tls_only.items() if used)
            raise Invalid(
                'only applies with tls = "starttls" or "implicit"',
                hint="set target.tls or remove this key",
                loc=(name,),
            )
        if self.ca_file is not None and self.insecure:
            hint = "use ca_file to verify, or insecure = true to skip verification"
            raise Invalid("contradicts ca_file", hint=hint, loc=("insecure",))
        if self.tls_options is not None and self.tls_options.sni == "" and not self.insecure:
            hint = "give the name to verify, or set insecure = true to skip verification"
            raise Invalid(
                "no SNI leaves no name to verify the certificate against", hint=hint, loc=("tls_options", "sni")
            )
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise Invalid(f"file {shown(self.ca_file, 80)} not found", expected="a PEM file", loc=("ca_file",))
        if not self.embedded:
            if self.given("sink"):
                hint = "set target.embedded = true or remove [target.sink]"
                raise Invalid("only applies with embedded = true", hint=hint, loc=("sink",))
            if self.protocol == "lmtp":
                _check_lmtp_port(self.port if self.given("port") else None)
            if not self.given("port"):
                self.port = 465 if self.tls == "implicit" else 25
            return self
        for name in [n for n in ("host", "port") if self.given(n)]:
            problem = "is not allowed with embedded = true (the embedded sink listens on a free local port)"
            raise Invalid(problem, hint="remove it, or set embedded = false to test an external server", loc=(name,))
        if self.tls != "none":
            expected = '"none" with embedded = true'
            raise Invalid("the embedded sink speaks plain SMTP only", expected=expected, loc=("tls",))
        if self.auth is not None:
            hint = "remove [target.auth] or set embedded = false"
            raise Invalid("the embedded sink does not authenticate", hint=hint, loc=("auth",))
        self.host, self.port = DEFAULT_HOST, 0
        return self

    def inapplicable(self) -> set[str]:
        """No sink unless embedded, no host, port, TLS or auth with it; no insecure without TLS."""
        skip = {"host", "port", "ca_file", "insecure", "auth"} if self.embedded else {"sink"}
        return skip | ({"insecure"} if self.tls == "none" else set())


# ---------------------------------------------------------------- [smtp]


class Timeouts(Table):
    """Per-step reply timeouts (durations, > 0); RFC 5321 4.5.3.2 defaults."""

    connect: PositiveDuration = key("30s", "TCP connect (and the TLS handshake of implicit TLS).")
    banner: PositiveDuration = key(_rfc_timeout("banner"), doc="Awaiting the 220 greeting.")
    ehlo: PositiveDuration = key(_rfc_timeout("ehlo"), doc="Awaiting the EHLO reply.")
    tls: PositiveDuration = key(_rfc_timeout("tls"), doc="STARTTLS and its handshake.")
    auth: PositiveDuration = key(_rfc_timeout("auth"), doc="Each AUTH exchange.")
    mail: PositiveDuration = key(_rfc_timeout("mail"), doc="Awaiting the MAIL reply.")
    rcpt: PositiveDuration = key(_rfc_timeout("rcpt"), doc="Awaiting each RCPT reply.")
    data: PositiveDuration = key(_rfc_timeout("data"), doc="Awaiting 354.")
    data_block: PositiveDuration = key(_rfc_timeout("data_block"), doc="Each write of message data.")
    data_end: PositiveDuration = key(_rfc_timeout("data_end"), doc="Awaiting the reply to the final dot.")
    quit: PositiveDuration = key(_rfc_timeout("quit"), doc="Awaiting the QUIT reply.")
    other: PositiveDuration = key(_rfc_timeout("other"), doc="Any other command.")

    def __getitem__(self, name: str) -> float:
        """``timeouts["connect"]``: seconds."""
        return float(getattr(self, name))


class SmtpConfig(Table):
    """Protocol choices: RFC 2920 pipelining and per-step timeouts in seconds."""

    pipelining: Annotated[str, choice("auto", "on", "off")] = key("auto", "RFC 2920: auto (if advertised), on, off.")
    pipeline_data: Bool = key(
        True,
        doc="When pipelining: send a message's data in the same write as the next transaction's MAIL, "
        "RCPT and DATA (RFC 2920 3.1); false sends each message's data on its own.",
    )
    chunking: Annotated[str, choice("auto", "on", "off")] = key(
        "off",
        "RFC 3030 BDAT instead of DATA: auto (when the server advertises CHUNKING), on (a session whose server "
        "does not fails with error kind chunking_unsupported), off.",
    )
    chunk_size: Annotated[int, max_size(MAX_CHUNK, "1GiB", least=1), PlainSerializer(format_size)] = key(
        "1MiB", "Largest BDAT chunk (1 octet .. 1GiB); chunks are pipelined when PIPELINING is used."
    )
    timeouts: Timeouts = key(default_factory=dict, doc="Per-step reply timeouts.")


# ---------------------------------------------------------------- [workload]


def _stage_target(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise got(value, "a number")
    return value  # checked against the model (whole sessions or a rate) by WorkloadConfig


class Stage(Table):
    """A linear ramp over ``duration`` to ``target`` sessions (closed) or sessions/s (open)."""

    duration: PositiveDuration = key(doc="Length of the ramp.")
    target: Annotated[float, checker(_stage_target, Annotated[float, Field(ge=0)])] = key(
        doc="Sessions (closed model, a whole number) or sessions/s (open model) at the end of the ramp."
    )


class WorkloadConfig(Table):
    """How much load, shaped how.  sessions is 0 for the open model (and closed stages starting
    from 0); rate is 0.0 for the closed model (and open stages starting from 0)."""

    model: Annotated[str, choice("closed", "open")] = key(
        "closed",
        doc="closed: a fixed number of sessions, each sending as fast as replies allow; open: new sessions "
        "arrive at a rate whatever the server does (no coordinated omission).",
    )
    sessions: Annotated[int, whole(1, MAX_SESSIONS)] = derived(
        0, "Concurrent sessions (closed model only; required unless stages, then the starting count)."
    )
    rate: Annotated[float, number(0, MAX_RATE, positive=True)] = derived(
        0.0, "New sessions per second (open model only; required unless stages, then the starting rate)."
    )
    arrival: Annotated[str, choice("uniform", "poisson")] = key(
        "uniform", "Open model: uniform (evenly spaced) or poisson arrivals."
    )
    max_in_flight: Annotated[int, whole(1, MAX_SESSIONS)] = key(
        10000,
        doc="Open model: cap on concurrent sessions; an arrival beyond it waits for a free slot, the wait "
        "counting in its schedule_lag and corrected latency, and counts.sessions_capped counts it.",
    )
    duration: PositiveDuration | None = key(None, "How long to generate load (not with stages).")
    messages: Annotated[int, whole(1, MAX_COUNT)] | None = key(
        None, "Stop after this many messages. At least one of duration, messages, stages."
    )
    messages_per_session: Annotated[int, whole(1, MAX_COUNT)] = key(1, "Messages sent over one connection before QUIT.")
    think_time: Duration = key(
        "0s", "Pause between messages within a session (after a message's final reply, before the next MAIL)."
    )
    session_pause: Duration = key(
        "0s", "Closed model: pause between a session's QUIT and the next session of the same loop."
    )
    grace: Duration = key("5s", "Time in-flight sessions get to finish at the end or on Ctrl-C.")
    workers: Workers = key(
        1,
        "Worker processes, each its own event loop with an exact share of the load (README, Workers); "
        '"auto": one per CPU this process may use.',
    )
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)] = key(
        (), validate_default=False, doc="Linear ramps of sessions (closed) or rate (open), one after another."
    )
    seed: Seed = key(
        default_factory=lambda: random.SystemRandom().randrange(2**32),
        doc="Seed of every random choice (default: random, recorded in the resolved profile).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        closed = self.model == "closed"
        wrong = ("rate", "arrival", "max_in_flight") if closed else ("sessions", "session_pause")
        for name in wrong:
            if self.given(name):
                hint = 'set workload.model = "open", or use sessions' if closed else "the open model starts "
                hint += "" if closed else "sessions at a rate: use workload.rate"
                if name == "session_pause":
                    hint = "the open model's arrival rate sets the pace between sessions"
                raise Invalid(f"only applies to the {'open' if closed else 'closed'} model", hint=hint, loc=(name,))
        size = "sessions" if closed else "rate"
        if not self.given(size) and not self.stages:
            expected = f"an integer between 1 and {MAX_SESSIONS}" if closed else "a positive number of sessions/s"
            raise Invalid(f"is required for the {self.model} model (or give stages)", expected=expected, loc=(size,))
        bound = whole(0, MAX_SESSIONS) if closed else number(0, MAX_RATE)
        for i, stage in enumerate(self.stages):
            stage.target = apply(bound, stage.target, "stages", i, "target")
        if self.stages and max([self.sessions, self.rate, *(s.target for s in self.stages)]) == 0:
            problem = "every stage target is 0, so no session would ever start"
            raise Invalid(problem, expected="at least one target above 0", loc=("stages",))
        if self.duration is not None and self.stages:
            hint = "the stages' durations add up to the run's length; remove one of them"
            raise Invalid("duration and stages are mutually exclusive", hint=hint, loc=("duration",))
        if self.duration is None and self.messages is None and not self.stages:
            raise Invalid("needs at least one of duration, messages or stages", expected='e.g. duration = "30s"')
        return self

    @property
    def total_duration(self) -> float | None:
        """Seconds of load: ``duration``, or the sum of the stages; None if only a message count bounds the run."""
        return self.duration if self.duration is not None or not self.stages else sum(s.duration for s in self.stages)

    def inapplicable(self) -> set[str]:
        """The other model's keys, and sessions, rate and stages when 0 or empty."""
        skip = {"rate", "arrival", "max_in_flight"} if self.model == "closed" else {"sessions", "session_pause"}
        return skip | {name for name in ("sessions", "rate", "stages") if not getattr(self, name)}


# ---------------------------------------------------------------- [output]


class OutputConfig(Table):
    """Where results go and how progress is shown."""

    results_dir: Annotated[str, text(what="a directory path")] = key(
        "results", "Directory for the results of each run."
    )
    progress: Annotated[str, choice("auto", "live", "plain", "none")] = key(
        "auto", "Progress display: auto, live, plain or none."
    )
    interval: PositiveDuration = key("1s", "Histogram log interval.")
    report: Bool = key(True, "Write report.html (smtpbench report) into the results folder at the end of the run.")
    metrics_port: Port | None = key(
        None, "Serve live Prometheus/OpenMetrics metrics on this TCP port during the run (--metrics-port)."
    )
    metrics_host: Host = key(DEFAULT_HOST, "Address the metrics endpoint listens on (with metrics_port).")
    metrics_linger: UpToAnHour = key(
        "0s",
        "With metrics_port: keep serving the final figures this long after the run (at most 1h), so that a "
        "Prometheus scraping every 15s sees the run's end; the process exits that much later.",
    )
