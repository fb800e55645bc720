"""Load profiles: the TOML schema (pydantic models), overrides and the resolved dump.

A profile is a TOML file; :func:`load_profile` reads it, applies command-line
overrides (``--set KEY=VALUE``, then ``--target``, ``--duration``,
``--results-dir``), validates every key and returns a :class:`Profile`.  Every
problem raises :class:`~smtpbench.errors.ConfigError` naming the file (and the
option that set the value), the key path and what was expected; unknown
sections and keys get a "did you mean".  :func:`resolved_toml` writes the
profile back with every default filled in (including the random seed actually
used) and secrets redacted, so that a run can be reproduced.

The models below are the one source of truth: ``smtpbench schema`` prints their
JSON Schema (``profiles/profile.schema.json``), from which the README's profile
reference is generated.  To add a key: a field with a type from
:mod:`smtpbench.fields`, a default and a ``description``; a rule between keys
goes in the section's ``_check`` (raise :class:`~smtpbench.fields.Invalid`
with ``loc=("key",)``).  To add a section: a :class:`~smtpbench.fields.Table`
subclass and a field of :class:`ProfileFile` (and of :class:`Profile`).

Precedence: the file, then each ``--set`` in order, then ``--target HOST:PORT``
(which also sets ``embedded = false`` and drops ``[target.sink]``),
``--duration`` and ``--results-dir``.
"""

from __future__ import annotations

import copy
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, PlainSerializer, ValidationError, model_validator

from smtpbench.config import apply_override, dump_toml, is_secret_key, load_toml, plain, redact, shown, type_name
from smtpbench.conform.section import ConformSection
from smtpbench.errors import ConfigError
from smtpbench.fields import (
    DURATION,
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
    config_error,
    key,
    nested,
    number,
    template,
    text,
    whole,
)
from smtpbench.load.sizes import (  # noqa: F401  (re-exported: the profile's public names)
    FixedSize,
    LognormalSize,
    SizeDistribution,
    SizeSpec,
    UniformSize,
    WeightedSize,
)
from smtpbench.protocol.tables import TIMEOUTS
from smtpbench.units import format_duration

PLACEHOLDERS = ("n", "session", "rcpt", "worker")
DEFAULT_HOST = "127.0.0.1"
MAX_SESSIONS = 1_000_000
MAX_RATE = 1_000_000.0
MAX_RECIPIENTS = 1000
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**12

Seed = Annotated[int, whole(0, MAX_SEED)]
Host = Annotated[str, text(printable=True, what="a host name or IP address")]


def _no_default(schema: dict[str, Any]) -> None:
    """For keys whose default depends on other keys: the description says it, the schema shows none."""
    schema.pop("default", None)


def _rfc_timeout(name: str) -> str:
    return format_duration(TIMEOUTS.get(name, TIMEOUTS["other"]))


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(_ENV_NAME, value):
        raise Invalid(f"{shown(value)} is not an environment variable name", expected="a name like SMTP_PASSWORD")
    return value


# ---------------------------------------------------------------- [target]


class AuthConfig(Table):
    """SMTP AUTH after EHLO (not with ``embedded``); the password itself is never in the profile."""

    refused = {
        "password": (
            "passwords are never written in a profile",
            "put it in an environment variable (password_env) or a file (password_file)",
        )
    }
    username: Text = key(description="Account name.")
    mechanism: Annotated[str, choice("PLAIN", "LOGIN")] = key("PLAIN", description="SASL mechanism.")
    password_env: Annotated[str, checker(_env_name, Annotated[str, Field(pattern=_ENV_NAME)])] | None = key(
        None, description="Name of an environment variable holding the password (this or password_file)."
    )
    password_file: Text | None = key(
        None, description="File whose content (trailing newline removed) is the password (this or password_env)."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.password_env is None) == (self.password_file is None):
            raise Invalid(
                "needs exactly one of password_env and password_file",
                expected='password_env = "SMTP_PASSWORD" or password_file = "path"',
            )
        return self

    def password(self) -> str:
        """The password, read now from the environment variable or the file.

        Raises ConfigError if the variable is unset/empty or the file is
        missing, unreadable or empty.  A trailing newline of the file is removed.
        """
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise ConfigError(
                    f"environment variable {self.password_env} is not set or empty", key="target.auth.password_env"
                )
            return value
        assert self.password_file is not None  # guaranteed by validation: exactly one source
        try:
            text = Path(self.password_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(
                f"cannot read password file {shown(self.password_file, 80)}: {reason}", key="target.auth.password_file"
            ) from None
        value = text.removesuffix("\n").removesuffix("\r")
        if not value:
            raise ConfigError(
                f"password file {shown(self.password_file, 80)} is empty", key="target.auth.password_file"
            )
        return value


def _sink_delay(value: Any) -> float:
    seconds: float = apply(DURATION, value)
    if seconds > 3600:  # the sink's own limit
        raise Invalid(f"{format_duration(seconds)} is too long", expected="a delay of at most 1h")
    return seconds


SinkDelay = Annotated[float, checker(_sink_delay, Duration), PlainSerializer(format_duration)]


class SinkDelays(Table):
    """Delays before the embedded sink's replies (at most 1h each)."""

    banner: SinkDelay | None = key(None, description="Before the 220 greeting.")
    ehlo: SinkDelay | None = key(None, description="Before the EHLO reply.")
    mail: SinkDelay | None = key(None, description="Before the MAIL reply.")
    rcpt: SinkDelay | None = key(None, description="Before each RCPT reply.")
    data: SinkDelay | None = key(None, description="Before the 354 reply.")
    data_end: SinkDelay | None = key(None, description="Before the reply to the final dot.")


class SinkOptions(Table):
    """Behaviour of the embedded sink (only with ``embedded = true``): ``smtpbench sink`` flags."""

    delay: SinkDelays = key(default_factory=dict, description="Delays before replies (none by default).")
    reject_rcpt_temp: Ratio = key(0.0, description="Ratio of RCPT answered 4xx.")
    reject_rcpt_perm: Ratio = key(0.0, description="Ratio of RCPT answered 5xx (temp + perm <= 1).")
    reject_data_temp: Ratio = key(0.0, description="Ratio of messages answered 4xx after the final dot.")
    reject_data_perm: Ratio = key(0.0, description="Ratio answered 5xx after the final dot (temp + perm <= 1).")
    disconnect: Ratio = key(0.0, description="Ratio of commands after which the sink drops the connection.")
    seed: Seed | None = key(None, description="Seed of the sink's random choices (default: workload.seed).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for kind in ("rcpt", "data"):
            if getattr(self, f"reject_{kind}_temp") + getattr(self, f"reject_{kind}_perm") > 1.0:
                raise Invalid(
                    f"reject_{kind}_temp + reject_{kind}_perm exceed 1",
                    expected="ratios that add up to at most 1",
                    loc=(f"reject_{kind}_perm",),
                )
        return self

    def to_cli_args(self) -> list[str]:
        """``smtpbench sink`` arguments reproducing these options.

        Only non-default values are passed (zero delays and ratios are the
        sink's defaults); durations are written as milliseconds (``20ms``).
        """
        args: list[str] = []
        for name, seconds in self.delay:
            if seconds:
                args += [f"--delay-{name.replace('_', '-')}", format_duration(seconds)]
        for name in ("reject_rcpt_temp", "reject_rcpt_perm", "reject_data_temp", "reject_data_perm", "disconnect"):
            if getattr(self, name) > 0:
                args += [f"--{name.replace('_', '-')}", repr(getattr(self, name))]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args


class TargetConfig(Table):
    """Where the load goes.  With embedded the engine starts a sink and uses its address:
    host is then 127.0.0.1 and port 0 (a free port)."""

    host: Host = key(DEFAULT_HOST, description="Server to test (name or IP). Not allowed with embedded.")
    port: Annotated[int, whole(1, 65535)] = key(
        25,
        validate_default=False,
        json_schema_extra=_no_default,
        description="TCP port (default 25, 465 with tls = implicit). Not allowed with embedded.",
    )
    helo: Annotated[str, text(printable=True, what="a host name")] = key(
        "smtpbench.example", description="Name sent in EHLO/HELO."
    )
    embedded: Bool = key(False, description="Start our own sink on 127.0.0.1 (a free port) and test it.")
    tls: Annotated[str, choice("none", "starttls", "implicit")] = key(
        "none", description="TLS: none, starttls (upgrade after EHLO) or implicit (TLS from connect)."
    )
    ca_file: Text | None = key(None, description="PEM file of CA certificates to verify the server with.")
    insecure: Bool = key(False, description="Skip certificate verification (not with ca_file).")
    auth: AuthConfig | None = key(None, description="Optional SMTP AUTH after EHLO.")
    sink: SinkOptions = key(default_factory=dict, description="Embedded sink behaviour.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.tls == "none" and (self.ca_file is not None or self.insecure):
            name = "ca_file" if self.ca_file is not None else "insecure"
            raise Invalid(
                'only applies with tls = "starttls" or "implicit"',
                hint="set target.tls or remove this key",
                loc=(name,),
            )
        if self.ca_file is not None and self.insecure:
            hint = "use ca_file to verify, or insecure = true to skip verification"
            raise Invalid("contradicts ca_file", hint=hint, loc=("insecure",))
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise Invalid(f"file {shown(self.ca_file, 80)} not found", expected="a PEM file", loc=("ca_file",))
        if not self.embedded:
            if self.given("sink"):
                hint = "set target.embedded = true or remove [target.sink]"
                raise Invalid("only applies with embedded = true", hint=hint, loc=("sink",))
            if not self.given("port"):
                self.port = 465 if self.tls == "implicit" else 25
            return self
        for name in ("host", "port"):
            if self.given(name):
                raise Invalid(
                    "is not allowed with embedded = true (the embedded sink listens on a free local port)",
                    hint="remove it, or set embedded = false to test an external server",
                    loc=(name,),
                )
        if self.tls != "none":
            raise Invalid(
                "the embedded sink speaks plain SMTP only", expected='"none" with embedded = true', loc=("tls",)
            )
        if self.auth is not None:
            hint = "remove [target.auth] or set embedded = false"
            raise Invalid("the embedded sink does not authenticate", hint=hint, loc=("auth",))
        self.host, self.port = DEFAULT_HOST, 0
        return self

    def toml(self) -> dict[str, Any]:
        """The table as written in a profile; only the keys that apply (no sink unless embedded, ...)."""
        skip = {"host", "port", "ca_file", "insecure", "auth"} if self.embedded else {"sink"}
        if self.tls == "none":
            skip.add("insecure")
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=skip)


# ---------------------------------------------------------------- [smtp]


class Timeouts(Table):
    """Per-step reply timeouts (durations, > 0); RFC 5321 4.5.3.2 defaults."""

    connect: PositiveDuration = key("30s", description="TCP connect (and the TLS handshake of implicit TLS).")
    banner: PositiveDuration = key(_rfc_timeout("banner"), description="Awaiting the 220 greeting.")
    ehlo: PositiveDuration = key(_rfc_timeout("ehlo"), description="Awaiting the EHLO reply.")
    tls: PositiveDuration = key(_rfc_timeout("tls"), description="STARTTLS and its handshake.")
    auth: PositiveDuration = key(_rfc_timeout("auth"), description="Each AUTH exchange.")
    mail: PositiveDuration = key(_rfc_timeout("mail"), description="Awaiting the MAIL reply.")
    rcpt: PositiveDuration = key(_rfc_timeout("rcpt"), description="Awaiting each RCPT reply.")
    data: PositiveDuration = key(_rfc_timeout("data"), description="Awaiting 354.")
    data_block: PositiveDuration = key(_rfc_timeout("data_block"), description="Each write of message data.")
    data_end: PositiveDuration = key(_rfc_timeout("data_end"), description="Awaiting the reply to the final dot.")
    quit: PositiveDuration = key(_rfc_timeout("quit"), description="Awaiting the QUIT reply.")
    other: PositiveDuration = key(_rfc_timeout("other"), description="Any other command.")

    def __getitem__(self, name: str) -> float:
        """``timeouts["connect"]``: seconds."""
        value: float = getattr(self, name)
        return value


class SmtpConfig(Table):
    """Protocol choices: RFC 2920 pipelining and per-step timeouts in seconds."""

    pipelining: Annotated[str, choice("auto", "on", "off")] = key(
        "auto", description="RFC 2920: auto (if advertised), on, off."
    )
    pipeline_data: Bool = key(
        True,
        description="When pipelining: send a message's data in the same write as the next transaction's MAIL, "
        "RCPT and DATA (RFC 2920 3.1); false sends each message's data on its own.",
    )
    timeouts: Timeouts = key(default_factory=dict, description="Per-step reply timeouts.")


# ---------------------------------------------------------------- [workload]


def _stage_target(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="a number")
    return value  # checked against the model (whole sessions or a rate) by WorkloadConfig


class Stage(Table):
    """A linear ramp over ``duration`` to ``target`` sessions (closed) or sessions/s (open)."""

    duration: PositiveDuration = key(description="Length of the ramp.")
    target: Annotated[float, checker(_stage_target, Annotated[float, Field(ge=0)])] = key(
        description="Sessions (closed model, a whole number) or sessions/s (open model) at the end of the ramp."
    )


class WorkloadConfig(Table):
    """How much load, shaped how.  sessions is 0 for the open model (and closed stages starting
    from 0); rate is 0.0 for the closed model (and open stages starting from 0)."""

    model: Annotated[str, choice("closed", "open")] = key(
        "closed",
        description="closed: a fixed number of sessions, each sending as fast as replies allow; open: new sessions "
        "arrive at a rate whatever the server does (no coordinated omission).",
    )
    sessions: Annotated[int, whole(1, MAX_SESSIONS)] = key(
        0,
        validate_default=False,
        json_schema_extra=_no_default,
        description="Concurrent sessions (closed model only; required unless stages, then the starting count).",
    )
    rate: Annotated[float, number(0, MAX_RATE, positive=True)] = key(
        0.0,
        validate_default=False,
        json_schema_extra=_no_default,
        description="New sessions per second (open model only; required unless stages, then the starting rate).",
    )
    arrival: Annotated[str, choice("uniform", "poisson")] = key(
        "uniform", description="Open model: uniform (evenly spaced) or poisson arrivals."
    )
    max_in_flight: Annotated[int, whole(1, MAX_SESSIONS)] = key(
        10000,
        description="Open model: cap on concurrent sessions; an arrival beyond it waits for a free slot, the wait "
        "counting in its schedule_lag and corrected latency, and counts.sessions_capped counts it.",
    )
    duration: PositiveDuration | None = key(None, description="How long to generate load (not with stages).")
    messages: Annotated[int, whole(1, MAX_COUNT)] | None = key(
        None, description="Stop after this many messages. At least one of duration, messages, stages."
    )
    messages_per_session: Annotated[int, whole(1, MAX_COUNT)] = key(
        1, description="Messages sent over one connection before QUIT."
    )
    think_time: Duration = key("0s", description="Pause between messages within a session.")
    grace: Duration = key("5s", description="Time in-flight sessions get to finish at the end or on Ctrl-C.")
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)] = key(
        (), validate_default=False, description="Linear ramps of sessions (closed) or rate (open), one after another."
    )
    seed: Seed = key(
        default_factory=lambda: random.SystemRandom().randrange(2**32),
        description="Seed of every random choice (default: random, recorded in the resolved profile).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        closed = self.model == "closed"
        wrong = ("rate", "arrival", "max_in_flight") if closed else ("sessions",)
        for name in wrong:
            if self.given(name):
                hint = 'set workload.model = "open", or use sessions' if closed else "the open model starts "
                hint += "" if closed else "sessions at a rate: use workload.rate"
                raise Invalid(f"only applies to the {'open' if closed else 'closed'} model", hint=hint, loc=(name,))
        size = "sessions" if closed else "rate"
        if not self.given(size) and not self.stages:
            expected = f"an integer between 1 and {MAX_SESSIONS}" if closed else "a positive number of sessions/s"
            raise Invalid(f"is required for the {self.model} model (or give stages)", expected=expected, loc=(size,))
        bound = whole(0, MAX_SESSIONS) if closed else number(0, MAX_RATE)
        for i, stage in enumerate(self.stages):
            try:
                stage.target = apply(bound, stage.target)
            except Invalid as exc:
                raise Invalid(exc.problem, expected=exc.expected, loc=("stages", i, "target")) from None
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
        if self.duration is not None:
            return self.duration
        return sum(s.duration for s in self.stages) if self.stages else None

    def toml(self) -> dict[str, Any]:
        """The table as written in a profile; only the keys of its model."""
        skip = {"rate", "arrival", "max_in_flight"} if self.model == "closed" else {"sessions"}
        skip |= {name for name in ("sessions", "rate", "stages") if not getattr(self, name)}
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=skip)


# ---------------------------------------------------------------- [message]


class RecipientRange(Table):
    """A uniform number of recipients per message."""

    min: Annotated[int, whole(1, MAX_RECIPIENTS)] = key(1, description="Fewest recipients.")
    max: Annotated[int, whole(1, MAX_RECIPIENTS)] | None = key(None, description="Most recipients (>= min).")


def _recipients(value: Any) -> tuple[int, int]:
    if not isinstance(value, dict):
        count: int = apply(whole(1, MAX_RECIPIENTS), value)
        return count, count
    span = nested(RecipientRange, value)
    hi = span.min if span.max is None else span.max
    if hi < span.min:
        raise Invalid(f"max ({hi}) is below min ({span.min})", expected="max >= min", loc=("max",))
    return span.min, hi


_HEADER_NAME = re.compile(r"[!-9;-~]+")
_RESERVED_HEADERS = {"from": "message.from", "to": "message.to", "subject": "message.subject"}


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="a table")
    for name, field in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise Invalid(
                "is not a valid header field name", expected="printable ASCII without ':' or spaces", loc=(name,)
            )
        if name.lower() in _RESERVED_HEADERS:
            raise Invalid("is set by smtpbench", hint=f"use {_RESERVED_HEADERS[name.lower()]}", loc=(name,))
        if not isinstance(field, str):
            raise Invalid(f"got {type_name(field)} {shown(field)}", expected="a string", loc=(name,))
        if "\r" in field or "\n" in field:
            raise Invalid("contains a line break", expected="a single-line value", loc=(name,))
    return dict(value)


_HeaderInput = Annotated[dict[Annotated[str, Field(pattern=r"^[!-9;-~]+$")], str], Field()]


class MessageConfig(Table):
    """What each message looks like.  Templates may use {n} (message number), {session}, {rcpt}
    (recipient index) and {worker}, with format specs such as {n:06d}; literal braces are {{ and }}."""

    size: SizeDistribution = key(
        "10KiB",
        description='Message size (at most 1GiB): "10KiB", {distribution = "uniform", min, max}, '
        '{distribution = "lognormal", median, sigma, min, max} (max defaults to 100 x median) '
        'or [{size = "1KiB", weight = 70}, ...].',
    )
    recipients: Annotated[
        tuple[int, int],
        checker(_recipients, Annotated[int, Field(ge=1, le=MAX_RECIPIENTS)] | RecipientRange),
        PlainSerializer(lambda r: r[0] if r[0] == r[1] else {"min": r[0], "max": r[1]}),
    ] = key(1, description="Recipients per message: 3 or {min = 1, max = 5}, 1..1000.")
    from_template: Annotated[str, template(PLACEHOLDERS, address=True)] = key(
        "sender{n}@smtpbench.example", alias="from", description="Envelope and header sender (a template)."
    )
    to_template: Annotated[str, template(PLACEHOLDERS, address=True)] = key(
        "user{n}@example.test", alias="to", description="Recipient addresses (a template)."
    )
    subject: Annotated[str, template(PLACEHOLDERS, address=False)] = key(
        "smtpbench message {n}", description="Subject header (a template)."
    )
    variants: Annotated[int, whole(1, 10000)] = key(32, description="Distinct bodies pre-rendered.")
    headers: Annotated[dict[str, str], checker(_headers, _HeaderInput)] = key(
        default_factory=dict,
        json_schema_extra={"additionalProperties": False},  # names outside patternProperties are refused
        description='Extra header fields, {X-Foo = "bar"} (literal values).',
    )

    @property
    def recipients_min(self) -> int:
        """Fewest recipients of a message."""
        return self.recipients[0]

    @property
    def recipients_max(self) -> int:
        """Most recipients of a message."""
        return self.recipients[1]


# ---------------------------------------------------------------- [output]


class OutputConfig(Table):
    """Where results go and how progress is shown."""

    results_dir: Annotated[str, text(what="a directory path")] = key(
        "results", description="Directory for the results of each run."
    )
    progress: Annotated[str, choice("auto", "live", "plain", "none")] = key(
        "auto", description="Progress display: auto, live, plain or none."
    )
    interval: PositiveDuration = key("1s", description="Histogram log interval.")


# ---------------------------------------------------------------- the file


def _conform(value: Any) -> dict[str, Any]:
    return nested(ConformSection, value).model_dump(mode="json", by_alias=True, exclude_unset=True)


class ProfileFile(Table):
    """An smtpbench profile (``smtpbench run``; ``smtpbench conform`` reads [target] and [conform])."""

    unknown = "section"
    target: TargetConfig = key(default_factory=dict, description="The server under test.")
    smtp: SmtpConfig = key(default_factory=dict, description="Protocol choices.")
    workload: WorkloadConfig = key(default_factory=dict, description="How much load, shaped how.")
    message: MessageConfig = key(default_factory=dict, description="What each message looks like.")
    output: OutputConfig = key(default_factory=dict, description="Where results go.")
    conform: Annotated[dict[str, Any], checker(_conform, ConformSection)] = key(
        default_factory=dict, description="Settings of smtpbench conform (its long options)."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.target.embedded and self.target.sink.seed is None:
            self.target.sink.seed = self.workload.seed
        return self


@dataclass(frozen=True)
class Profile:
    """A validated profile.  ``raw`` is the merged data (file + overrides) before defaults."""

    path: str
    target: TargetConfig
    smtp: SmtpConfig
    workload: WorkloadConfig
    message: MessageConfig
    output: OutputConfig
    conform: dict[str, Any]
    raw: dict[str, Any]


SECTIONS = tuple(ProfileFile.model_fields)


# ------------------------------------------------------------------ loading


def load_profile(
    path: str,
    overrides: Sequence[str] = (),
    *,
    target: str | None = None,
    duration: str | None = None,
    results_dir: str | None = None,
) -> Profile:
    """Read, override and validate the profile at ``path``.

    ``overrides`` are ``--set KEY=VALUE`` assignments applied in order; then
    ``target`` (``HOST:PORT``, ``[::1]:25``) switches to an external server,
    ``duration`` replaces ``workload.duration`` and ``results_dir`` replaces
    ``output.results_dir``.  Guarantees a fully validated Profile, or raises
    ConfigError whose one-line message names the file (and the option that
    set the value, if any), the key path and what was expected.
    """
    data = load_toml(path)
    origins: dict[str, str] = {}
    for assignment in overrides:
        try:
            parts = apply_override(data, assignment)
        except ConfigError as exc:
            raise _with_file(exc, path) from None
        key = ".".join(parts)
        # Never echo a secret back in an error message.
        shown_value = "***" if is_secret_key(parts[-1]) else assignment.partition("=")[2].strip()
        origins[key] = f"--set {key}={shown_value}"
    if target is not None:
        host, port = parse_target(target)
        table = _ensure_table(data, "target", path)
        table.update(host=host, port=port, embedded=False)
        table.pop("sink", None)
        for key in ("target.host", "target.port", "target.embedded"):
            origins[key] = f"--target {target}"
    if duration is not None:
        _ensure_table(data, "workload", path)["duration"] = duration
        origins["workload.duration"] = f"--duration {duration}"
    if results_dir is not None:
        _ensure_table(data, "output", path)["results_dir"] = results_dir
        origins["output.results_dir"] = f"--results-dir {results_dir}"
    try:
        return profile_from_dict(data, path)
    except ConfigError as exc:
        origin = _origin_of(exc.key, origins)
        if origin is not None:
            exc.file = f"{path} ({plain(origin, 80)})"
        raise


def _with_file(exc: ConfigError, path: str) -> ConfigError:
    exc.file = exc.file or path
    return exc


def _origin_of(key: str | None, origins: dict[str, str]) -> str | None:
    if not key:
        return None
    for set_key, origin in origins.items():
        if key == set_key or key.startswith((set_key + ".", set_key + "[")) or set_key.startswith(key + "."):
            return origin
    return None


def _ensure_table(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    table = data.setdefault(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"got {type_name(table)} {shown(table)}", file=path, key=name, expected="a table")
    return table


def parse_target(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT``.

    Raises ConfigError (key ``--target``) for a missing or invalid port, an
    empty host, or an unbracketed IPv6 address.
    """
    expected = "HOST:PORT, like 127.0.0.1:2525 or [::1]:25"
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{shown(text)} is not an address", key="--target", expected=expected)
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ConfigError(f"{shown(text)} has no port", key="--target", expected=expected)
        if ":" in host:
            raise ConfigError(
                f"{shown(text)}: put an IPv6 address in brackets", key="--target", expected="[IPv6]:PORT like [::1]:25"
            )
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{shown(text)} has no valid host", key="--target", expected=expected)
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{shown(text)} has no valid port", key="--target", expected="a port between 1 and 65535")
    return host, int(port_text)


def profile_from_dict(data: dict[str, Any], path: str = "<profile>") -> Profile:
    """Validate already-parsed profile ``data`` (not modified) into a Profile, or raise ConfigError."""
    try:
        doc = ProfileFile.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        raise config_error(exc, path) from None
    sections = {name: getattr(doc, name) for name in SECTIONS}
    return Profile(path=path, raw=copy.deepcopy(data), **sections)


# ------------------------------------------------------------------ resolved dump


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile with every default made explicit, in the file's own shapes.

    Loading this dict back (:func:`profile_from_dict`) gives an equal profile
    (apart from ``path`` and ``raw``).  Secrets are not redacted here.
    """
    data = {name: getattr(profile, name).toml() for name in SECTIONS if name != "conform"}
    return {**data, "conform": copy.deepcopy(profile.conform)}


def resolved_toml(profile: Profile) -> str:
    """The profile as TOML with defaults filled in, the seed used, and secrets redacted."""
    header = f"# Resolved profile (defaults filled in) from {plain(profile.path, 200)}\n"
    return header + dump_toml(redact(profile_to_dict(profile)))
