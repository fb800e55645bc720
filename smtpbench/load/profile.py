"""Load profiles: the TOML schema, its validation, overrides and the resolved dump.

A profile is a TOML file; :func:`load_profile` reads it, applies command-line
overrides (``--set KEY=VALUE``, then ``--target``, ``--duration``,
``--results-dir``), validates every key and returns a frozen :class:`Profile`.
Every problem raises :class:`~smtpbench.errors.ConfigError` naming the file,
the key path and what was expected; unknown sections and keys get a
"did you mean".  :func:`resolved_toml` writes the profile back with every
default filled in (including the random seed actually used) and secrets
redacted, so that a run can be reproduced.

Durations take ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"``, ``"1m30s"`` or a number
of seconds; sizes ``"10KiB"`` (1024), ``"1.5KB"`` (1000) or a number of octets;
ratios a number in 0..1 or ``"5%"``.  Relative file paths are relative to the
current directory.

================================  ==============================  ==========================================================
Key                               Default                         Meaning
================================  ==============================  ==========================================================
``[target]``
``host``                          ``"127.0.0.1"``                 Server to test (name or IP).  Not allowed with ``embedded``.
``port``                          25 (465 with ``tls="implicit"``)  TCP port, 1..65535.  Not allowed with ``embedded``.
``helo``                          ``"smtpbench.example"``         Name sent in EHLO/HELO (no spaces).
``embedded``                      ``false``                       Start our own sink on 127.0.0.1 (a free port) and test it.
``tls``                           ``"none"``                      ``"none"``, ``"starttls"`` or ``"implicit"`` (TLS from connect).
``ca_file``                       none                            PEM file of CA certificates to verify the server with.
``insecure``                      ``false``                       Skip certificate verification (not with ``ca_file``).
``[target.auth]``                                                 Optional SMTP AUTH after EHLO (not with ``embedded``).
``username``                      required                        Account name.
``password_env``                  one of these two                Name of an environment variable holding the password.
``password_file``                 one of these two                File whose content (trailing newline removed) is the password.
``mechanism``                     ``"PLAIN"``                     ``"PLAIN"`` or ``"LOGIN"``.  A ``password`` key is an error.
``[target.sink]``                                                 Embedded sink behaviour (only with ``embedded = true``).
``delay``                         no delays                       Table of durations before each reply: ``banner``, ``ehlo``,
                                                                  ``mail``, ``rcpt``, ``data``, ``data_end``.
``reject_rcpt_temp``              0                               Ratio of RCPT answered 4xx.
``reject_rcpt_perm``              0                               Ratio of RCPT answered 5xx (temp + perm <= 1).
``reject_data_temp``              0                               Ratio of messages answered 4xx after the final dot.
``reject_data_perm``              0                               Ratio answered 5xx after the final dot (temp + perm <= 1).
``disconnect``                    0                               Ratio of commands after which the sink drops the connection.
``blackhole``                     0                               Ratio of messages accepted with 250 and then dropped.
``pause_at``, ``pause_for``       none                            Stop answering at ``pause_at`` after the sink's start,
                                                                  for ``pause_for`` (durations, both or neither).
``seed``                          ``workload.seed``               Seed of the sink's random choices.
``[smtp]``
``pipelining``                    ``"auto"``                      RFC 2920: ``"auto"`` (if advertised), ``"on"``, ``"off"``.
``pipeline_data``                 ``true``                        When pipelining: send a message's data in the same write
                                                                  as the next transaction's MAIL, RCPT and DATA (RFC 2920
                                                                  3.1); ``false`` sends each message's data on its own.
``[smtp.timeouts]``                                               Per-step reply timeouts (durations, > 0).
``connect``                       ``"30s"``                       TCP connect (and the TLS handshake of implicit TLS).
``banner``, ``mail``, ``rcpt``    ``"5m"``                        RFC 5321 4.5.3.2 defaults.
``data``                          ``"2m"``                        Awaiting 354.
``data_block``                    ``"3m"``                        Each write of message data.
``data_end``                      ``"10m"``                       Awaiting the reply to the final dot.
``ehlo``, ``tls``, ``auth``,      ``"5m"``                        The RFC's "other commands" timeout.
``quit``, ``other``
``[workload]``
``model``                         ``"closed"``                    ``"closed"``: a fixed number of sessions, each sending as
                                                                  fast as replies allow; ``"open"``: new sessions arrive at a
                                                                  rate whatever the server does (no coordinated omission).
``sessions``                      required (closed)               Concurrent sessions, >= 1 (closed only).  With ``stages``:
                                                                  the starting count (default 0).
``rate``                          required (open)                 New sessions per second, > 0 (open only).  With ``stages``:
                                                                  the starting rate (default 0).
``arrival``                       ``"uniform"``                   Open only: ``"uniform"`` (evenly spaced) or ``"poisson"``.
``max_in_flight``                 10000                           Open only: cap on concurrent sessions; an arrival beyond
                                                                  it waits for a slot, the wait counting in its lag.
``duration``                      none                            How long to generate load (> 0).
``messages``                      none                            Stop after this many messages (>= 1).  At least one of
                                                                  ``duration``, ``messages``, ``stages``; ``duration`` and
                                                                  ``stages`` exclude each other.
``messages_per_session``          1                               Messages sent over one connection before QUIT.
``think_time``                    0                               Pause between messages within a session.
``grace``                         ``"5s"``                        Time in-flight sessions get to finish at the end or on Ctrl-C.
``stages``                        none                            Array of ``{duration = "30s", target = 100}``: linear ramps
                                                                  of sessions (closed, whole numbers) or rate (open).
``seed``                          random                          Seed of every random choice; recorded in the resolved profile.
``[message]``
``size``                          ``"10KiB"``                     ``"10KiB"``, ``{distribution="uniform", min=, max=}``,
                                                                  ``{distribution="lognormal", median=, sigma=, max=}``
                                                                  (``max`` defaults to 100 × median, optional ``min``),
                                                                  or ``[{size="1KiB", weight=70}, ...]``.  Up to 1GiB.
``recipients``                    1                               Recipients per message: ``3`` or ``{min=1, max=5}``, 1..1000.
``from``                          ``"sender{n}@smtpbench.example"``  Envelope and header sender.
``to``                            ``"user{n}@example.test"``      Recipient addresses.
``subject``                       ``"smtpbench message {n}"``     Subject header.
``variants``                      32                              Distinct bodies pre-rendered (1..10000).
``headers``                       none                            Extra header fields, ``{X-Foo = "bar"}`` (literal values).
``[output]``
``results_dir``                   ``"results"``                   Directory for results of each run.
``progress``                      ``"auto"``                      ``"auto"``, ``"live"``, ``"plain"`` or ``"none"``.
``interval``                      ``"1s"``                        Histogram log interval (> 0).
``[conform]``                     empty                           Settings of ``smtpbench conform``, validated by it.
``[delivery]``                    none                            End-to-end delivery tracking (README, "Delivery latency").
``listen``                        none                            ``HOST:PORT``: start a delivery sink there (the server
                                                                  under test relays to it).
``report_listen``                 none                            ``HOST:PORT``: take arrival reports from sinks started
                                                                  with ``smtpbench sink --report-to HOST:PORT``.
``maildir``, ``mbox``             none                            A Maildir folder / mbox file the server delivers to.
``wait``                          ``"1m"``                        After the load, wait this long at most for stragglers.
``[delivery.sink]``                                               The delivery sink's knobs (only with ``listen``): the
                                                                  keys of ``[target.sink]``.
================================  ==============================  ==========================================================

Templates (``from``, ``to``, ``subject``) may use ``{n}`` (message number),
``{session}`` (session number), ``{rcpt}`` (recipient index within the
message) and ``{worker}`` (worker id), with Python format specs such as
``{n:06d}``; any other placeholder is an error.  Literal braces are ``{{``/``}}``.

Precedence: the file, then each ``--set`` in order, then ``--target HOST:PORT``
(which also sets ``embedded = false`` and drops ``[target.sink]``),
``--duration`` and ``--results-dir``.
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtpbench.config import (
    Section,
    apply_override,
    check_int,
    check_number,
    dump_toml,
    is_secret_key,
    load_toml,
    plain,
    redact,
    shown,
    type_name,
)
from smtpbench.errors import ConfigError
from smtpbench.protocol.tables import TIMEOUTS
from smtpbench.units import format_duration, format_size, parse_duration, parse_ratio, parse_size

SECTIONS = ("target", "smtp", "workload", "message", "output", "conform", "delivery")
TIMEOUT_KEYS = (
    "connect",
    "banner",
    "ehlo",
    "tls",
    "auth",
    "mail",
    "rcpt",
    "data",
    "data_block",
    "data_end",
    "quit",
    "other",
)
SINK_DELAY_KEYS = ("banner", "ehlo", "mail", "rcpt", "data", "data_end")
SINK_RATIO_KEYS = (
    "reject_rcpt_temp",
    "reject_rcpt_perm",
    "reject_data_temp",
    "reject_data_perm",
    "disconnect",
    "blackhole",
)
SINK_PAUSE_KEYS = ("pause_at", "pause_for")
PLACEHOLDERS = ("n", "session", "rcpt", "worker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONNECT_TIMEOUT = 30.0
MAX_SESSIONS = 1_000_000
MAX_RATE = 1_000_000.0
MAX_MESSAGE_SIZE = 1024**3
MAX_RECIPIENTS = 1000
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**12
MAX_SINK_DELAY = 3600.0  # the sink's own limit

_HEADER_NAME = re.compile(r"[!-9;-~]+")
_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")
_RESERVED_HEADERS = {"from": "message.from", "to": "message.to", "subject": "message.subject"}


# ---------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class AuthConfig:
    """SMTP AUTH settings; the password itself is never stored in the profile."""

    username: str
    mechanism: str
    password_env: str | None
    password_file: str | None

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


@dataclass(frozen=True)
class SinkOptions:
    """Behaviour of the embedded sink (``smtpbench sink`` flags)."""

    delays: dict[str, float] = field(default_factory=dict)
    reject_rcpt_temp: float = 0.0
    reject_rcpt_perm: float = 0.0
    reject_data_temp: float = 0.0
    reject_data_perm: float = 0.0
    disconnect: float = 0.0
    blackhole: float = 0.0
    pause_at: float | None = None
    pause_for: float = 0.0
    seed: int | None = None

    def to_cli_args(self) -> list[str]:
        """``smtpbench sink`` arguments reproducing these options.

        Only non-default values are passed (zero delays and ratios are the
        sink's defaults); durations are written as milliseconds (``20ms``).
        """
        args: list[str] = []
        for name in SINK_DELAY_KEYS:
            seconds = self.delays.get(name, 0.0)
            if seconds > 0:
                args += [f"--delay-{name.replace('_', '-')}", format_duration(seconds)]
        for name in SINK_RATIO_KEYS:
            ratio = getattr(self, name)
            if ratio > 0:
                args += [f"--{name.replace('_', '-')}", repr(ratio)]
        if self.pause_at is not None:
            args += ["--pause-at", format_duration(self.pause_at), "--pause-for", format_duration(self.pause_for)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args


@dataclass(frozen=True)
class TargetConfig:
    """Where the load goes.  With ``embedded`` the engine starts a sink and
    uses its address; ``host`` is then 127.0.0.1 and ``port`` 0 (a free port)."""

    host: str
    port: int
    helo: str
    embedded: bool
    tls: str
    ca_file: str | None
    insecure: bool
    auth: AuthConfig | None
    sink: SinkOptions


@dataclass(frozen=True)
class SmtpConfig:
    """Protocol choices: RFC 2920 pipelining and per-step timeouts in seconds."""

    pipelining: str
    timeouts: dict[str, float]
    pipeline_data: bool = True


@dataclass(frozen=True)
class Stage:
    """A linear ramp over ``duration`` seconds to ``target`` sessions (closed) or sessions/s (open)."""

    duration: float
    target: float


@dataclass(frozen=True)
class WorkloadConfig:
    """How much load, shaped how.

    ``sessions`` is 0 for the open model (and for closed stages starting from
    0); ``rate`` is 0.0 for the closed model (and open stages starting from 0).
    """

    model: str
    sessions: int
    rate: float
    arrival: str
    max_in_flight: int
    duration: float | None
    messages: int | None
    messages_per_session: int
    think_time: float
    grace: float
    stages: tuple[Stage, ...]
    seed: int

    @property
    def total_duration(self) -> float | None:
        """Seconds of load: ``duration``, or the sum of the stages; None if only a message count bounds the run."""
        if self.duration is not None:
            return self.duration
        if self.stages:
            return sum(s.duration for s in self.stages)
        return None


@dataclass(frozen=True)
class SizeSpec:
    """A distribution of message sizes in octets."""

    def sample(self, rng: random.Random) -> int:
        """One size drawn with ``rng``; always within 0..:meth:`upper_bound`."""
        raise NotImplementedError

    def upper_bound(self) -> int:
        """The largest size :meth:`sample` can return."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human description, e.g. ``uniform 1KiB..100KiB``."""
        raise NotImplementedError

    def to_toml(self) -> Any:
        """The TOML value that parses back to this spec."""
        raise NotImplementedError


@dataclass(frozen=True)
class FixedSize(SizeSpec):
    """Every message has the same size."""

    size: int

    def sample(self, rng: random.Random) -> int:
        """Always ``size``."""
        return self.size

    def upper_bound(self) -> int:
        """``size``."""
        return self.size

    def describe(self) -> str:
        """The size, e.g. ``10KiB``."""
        return format_size(self.size)

    def to_toml(self) -> Any:
        """The size as text like ``"10KiB"``."""
        return format_size(self.size)


@dataclass(frozen=True)
class UniformSize(SizeSpec):
    """Sizes uniformly distributed in [min, max]."""

    min: int
    max: int

    def sample(self, rng: random.Random) -> int:
        """A uniform integer in [min, max]."""
        return rng.randint(self.min, self.max)

    def upper_bound(self) -> int:
        """``max``."""
        return self.max

    def describe(self) -> str:
        """``uniform MIN..MAX``."""
        return f"uniform {format_size(self.min)}..{format_size(self.max)}"

    def to_toml(self) -> Any:
        """``{distribution="uniform", min=..., max=...}``."""
        return {"distribution": "uniform", "min": format_size(self.min), "max": format_size(self.max)}


@dataclass(frozen=True)
class LognormalSize(SizeSpec):
    """Log-normal sizes (heavy right tail, like real mail) clamped to [min, max]."""

    median: int
    sigma: float
    min: int
    max: int

    def sample(self, rng: random.Random) -> int:
        """``median * exp(sigma * N(0,1))`` rounded and clamped to [min, max]."""
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return max(self.min, min(self.max, int(round(value))))

    def upper_bound(self) -> int:
        """``max``."""
        return self.max

    def describe(self) -> str:
        """``lognormal median M sigma S, MIN..MAX``."""
        return (
            f"lognormal median {format_size(self.median)} sigma {self.sigma:g}, "
            f"{format_size(self.min)}..{format_size(self.max)}"
        )

    def to_toml(self) -> Any:
        """``{distribution="lognormal", median=, sigma=, min=, max=}``."""
        return {
            "distribution": "lognormal",
            "median": format_size(self.median),
            "sigma": self.sigma,
            "min": format_size(self.min),
            "max": format_size(self.max),
        }


@dataclass(frozen=True)
class WeightedSize(SizeSpec):
    """A fixed set of sizes drawn with relative weights."""

    choices: tuple[tuple[int, float], ...]

    def sample(self, rng: random.Random) -> int:
        """One of the sizes, chosen with probability weight / total weight."""
        sizes = [size for size, _ in self.choices]
        weights = [weight for _, weight in self.choices]
        return rng.choices(sizes, weights=weights)[0]

    def upper_bound(self) -> int:
        """The largest listed size."""
        return max(size for size, _ in self.choices)

    def describe(self) -> str:
        """``70% 1KiB, 30% 100KiB``."""
        total = sum(weight for _, weight in self.choices)
        return ", ".join(f"{100 * weight / total:.3g}% {format_size(size)}" for size, weight in self.choices)

    def to_toml(self) -> Any:
        """``[{size=..., weight=...}, ...]``."""
        return [{"size": format_size(size), "weight": weight} for size, weight in self.choices]


@dataclass(frozen=True)
class MessageConfig:
    """What each message looks like; templates are validated ``str.format`` strings."""

    size: SizeSpec
    recipients_min: int
    recipients_max: int
    from_template: str
    to_template: str
    subject: str
    variants: int
    headers: dict[str, str]


@dataclass(frozen=True)
class OutputConfig:
    """Where results go and how progress is shown."""

    results_dir: str
    progress: str
    interval: float


@dataclass(frozen=True)
class DeliveryConfig:
    """End-to-end delivery tracking: which ends see arrivals, and how long to wait for them.

    ``listen``: start a delivery sink (with ``sink``'s knobs) on this address;
    ``report_listen``: take reports from separately started sinks there.
    """

    listen: tuple[str, int] | None
    report_listen: tuple[str, int] | None
    maildir: str | None
    mbox: str | None
    wait: float
    sink: SinkOptions


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
    delivery: DeliveryConfig | None = None


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
    """Validate already-parsed profile ``data`` (not modified) into a Profile."""
    root = Section(data, "", path)
    root.check_keys(SECTIONS, what="section")
    for name in SECTIONS:
        root.get_table(name)
    workload = _workload(root.get_table("workload"))
    profile = Profile(
        path=path,
        target=_target(root.get_table("target"), workload.seed),
        smtp=_smtp(root.get_table("smtp")),
        workload=workload,
        message=_message(root.get_table("message")),
        output=_output(root.get_table("output")),
        conform=copy.deepcopy(dict(root.get_table("conform").data)),
        raw=copy.deepcopy(data),
        delivery=_delivery(root.get_table("delivery"), workload.seed) if root.has("delivery") else None,
    )
    return profile


# ------------------------------------------------------------------ sections


def _target(sec: Section, workload_seed: int) -> TargetConfig:
    sec.check_keys(("host", "port", "helo", "embedded", "tls", "ca_file", "insecure", "auth", "sink"))
    embedded = sec.get_bool("embedded", False)
    tls = sec.get_str("tls", "none", choices=("none", "starttls", "implicit"))
    helo = sec.get_str("helo", "smtpbench.example")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in helo):
        sec.fail("helo", f"{shown(helo)} contains spaces or control characters", expected="a host name")
    ca_file = sec.get_optional_str("ca_file")
    insecure = sec.get_bool("insecure", False)
    if tls == "none" and (ca_file is not None or insecure):
        name = "ca_file" if ca_file is not None else "insecure"
        sec.fail(name, 'only applies with tls = "starttls" or "implicit"', hint="set target.tls or remove this key")
    if ca_file is not None and insecure:
        sec.fail(
            "insecure", "contradicts ca_file", hint="use ca_file to verify, or insecure = true to skip verification"
        )
    if ca_file is not None and not Path(ca_file).is_file():
        sec.fail("ca_file", f"file {shown(ca_file, 80)} not found", expected="a PEM file")
    auth = _auth(sec.get_table("auth")) if sec.has("auth") else None
    if embedded:
        for name in ("host", "port"):
            if sec.has(name):
                sec.fail(
                    name,
                    "is not allowed with embedded = true (the embedded sink listens on a free local port)",
                    hint="remove it, or set embedded = false to test an external server",
                )
        if tls != "none":
            sec.fail("tls", "the embedded sink speaks plain SMTP only", expected='"none" with embedded = true')
        if auth is not None:
            sec.fail(
                "auth", "the embedded sink does not authenticate", hint="remove [target.auth] or set embedded = false"
            )
        sink = _sink(sec.get_table("sink"), workload_seed)
        host, port = DEFAULT_HOST, 0
    else:
        if sec.has("sink"):
            sec.fail(
                "sink", "only applies with embedded = true", hint="set target.embedded = true or remove [target.sink]"
            )
        sink = SinkOptions()
        host = sec.get_str("host", DEFAULT_HOST)
        if any(c.isspace() for c in host):
            sec.fail("host", f"{shown(host)} contains spaces", expected="a host name or IP address")
        port = sec.get_int("port", 465 if tls == "implicit" else 25, minimum=1, maximum=65535)
    return TargetConfig(host, port, helo, embedded, tls, ca_file, insecure, auth, sink)


def _auth(sec: Section) -> AuthConfig:
    if sec.has("password"):
        sec.fail(
            "password",
            "passwords are never written in a profile",
            hint="put it in an environment variable (password_env) or a file (password_file)",
        )
    sec.check_keys(("username", "password_env", "password_file", "mechanism"))
    username = sec.get_str("username")
    mechanism = sec.get_str("mechanism", "PLAIN", choices=("PLAIN", "LOGIN"))
    password_env = sec.get_optional_str("password_env")
    password_file = sec.get_optional_str("password_file")
    if (password_env is None) == (password_file is None):
        sec.fail(
            None,
            "needs exactly one of password_env and password_file",
            expected='password_env = "SMTP_PASSWORD" or password_file = "path"',
        )
    if password_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", password_env):
        sec.fail(
            "password_env",
            f"{shown(password_env)} is not an environment variable name",
            expected="a name like SMTP_PASSWORD",
        )
    return AuthConfig(username, mechanism, password_env, password_file)


def _sink(sec: Section, workload_seed: int) -> SinkOptions:
    sec.check_keys(("delay", *SINK_RATIO_KEYS, *SINK_PAUSE_KEYS, "seed"))
    delay_sec = sec.get_table("delay")
    delay_sec.check_keys(SINK_DELAY_KEYS)
    delays = {
        name: parse_duration(delay_sec.raw(name), delay_sec.key(name), file=sec.file)
        for name in SINK_DELAY_KEYS
        if delay_sec.has(name)
    }
    for name, seconds in delays.items():
        if seconds > MAX_SINK_DELAY:
            delay_sec.fail(name, f"{format_duration(seconds)} is too long", expected="a delay of at most 1h")
    ratios = {
        name: parse_ratio(sec.raw(name), sec.key(name), file=sec.file) if sec.has(name) else 0.0
        for name in SINK_RATIO_KEYS
    }
    for kind in ("rcpt", "data"):
        if ratios[f"reject_{kind}_temp"] + ratios[f"reject_{kind}_perm"] > 1.0:
            sec.fail(
                f"reject_{kind}_perm",
                f"reject_{kind}_temp + reject_{kind}_perm exceed 1",
                expected="ratios that add up to at most 1",
            )
    if sec.has("pause_at") != sec.has("pause_for"):
        sec.fail("pause_for" if sec.has("pause_at") else "pause_at", "pause_at and pause_for go together")
    pause_at = parse_duration(sec.raw("pause_at"), sec.key("pause_at"), file=sec.file) if sec.has("pause_at") else None
    pause_for = parse_duration(sec.raw("pause_for", 0), sec.key("pause_for"), file=sec.file)
    if pause_at is not None and not 0 < pause_for <= MAX_SINK_DELAY:
        sec.fail(
            "pause_for", f"{format_duration(pause_for)} is out of range", expected="a duration above 0, at most 1h"
        )
    seed = sec.get_int("seed", workload_seed, minimum=0, maximum=MAX_SEED)
    return SinkOptions(delays=delays, seed=seed, pause_at=pause_at, pause_for=pause_for, **ratios)


def _address(sec: Section, name: str) -> tuple[str, int]:
    try:
        return parse_target(sec.get_str(name))
    except ConfigError as exc:
        exc.key, exc.file = sec.key(name), sec.file
        raise


def _delivery(sec: Section, workload_seed: int) -> DeliveryConfig:
    sec.check_keys(("listen", "report_listen", "maildir", "mbox", "wait", "sink"))
    listen = _address(sec, "listen") if sec.has("listen") else None
    report_listen = _address(sec, "report_listen") if sec.has("report_listen") else None
    maildir, mbox = sec.get_optional_str("maildir"), sec.get_optional_str("mbox")
    if not (listen or report_listen or maildir or mbox):
        sec.fail(None, "names no end where messages arrive", expected="listen, report_listen, maildir or mbox")
    if sec.has("sink") and listen is None:
        sec.fail("sink", "only applies with listen (the delivery sink the run starts)")
    wait = parse_duration(sec.raw("wait", "1m"), sec.key("wait"), file=sec.file)
    return DeliveryConfig(listen, report_listen, maildir, mbox, wait, _sink(sec.get_table("sink"), workload_seed))


def _smtp(sec: Section) -> SmtpConfig:
    sec.check_keys(("pipelining", "pipeline_data", "timeouts"))
    pipelining = sec.get_str("pipelining", "auto", choices=("auto", "on", "off"))
    pipeline_data = sec.get_bool("pipeline_data", True)
    tsec = sec.get_table("timeouts")
    tsec.check_keys(TIMEOUT_KEYS)
    timeouts = {name: _default_timeout(name) for name in TIMEOUT_KEYS}
    for name in TIMEOUT_KEYS:
        if tsec.has(name):
            timeouts[name] = parse_duration(tsec.raw(name), tsec.key(name), file=sec.file, positive=True)
    return SmtpConfig(pipelining, timeouts, pipeline_data)


def _default_timeout(name: str) -> float:
    if name == "connect":
        return DEFAULT_CONNECT_TIMEOUT
    return TIMEOUTS.get(name, TIMEOUTS["other"])


def _workload(sec: Section) -> WorkloadConfig:
    sec.check_keys(
        (
            "model",
            "sessions",
            "rate",
            "arrival",
            "max_in_flight",
            "duration",
            "messages",
            "messages_per_session",
            "think_time",
            "grace",
            "stages",
            "seed",
        )
    )
    model = sec.get_str("model", "closed", choices=("closed", "open"))
    stages = _stages(sec, model)
    sessions, rate = 0, 0.0
    arrival, max_in_flight = "uniform", 10000
    if model == "closed":
        for name in ("rate", "arrival", "max_in_flight"):
            if sec.has(name):
                sec.fail(name, "only applies to the open model", hint='set workload.model = "open", or use sessions')
        if sec.has("sessions"):
            sessions = sec.get_int("sessions", minimum=1, maximum=MAX_SESSIONS)
        elif not stages:
            sec.fail(
                "sessions",
                "is required for the closed model (or give stages)",
                expected=f"an integer between 1 and {MAX_SESSIONS}",
            )
    else:
        if sec.has("sessions"):
            sec.fail(
                "sessions",
                "only applies to the closed model",
                hint="the open model starts sessions at a rate: use workload.rate",
            )
        if sec.has("rate"):
            rate = sec.get_number("rate", minimum=0, maximum=MAX_RATE, positive=True)
        elif not stages:
            sec.fail(
                "rate", "is required for the open model (or give stages)", expected="a positive number of sessions/s"
            )
        arrival = sec.get_str("arrival", "uniform", choices=("uniform", "poisson"))
        max_in_flight = sec.get_int("max_in_flight", 10000, minimum=1, maximum=MAX_SESSIONS)
    if stages and max([sessions, rate, *(s.target for s in stages)]) == 0:
        sec.fail(
            "stages", "every stage target is 0, so no session would ever start", expected="at least one target above 0"
        )
    duration = (
        parse_duration(sec.raw("duration"), sec.key("duration"), file=sec.file, positive=True)
        if sec.has("duration")
        else None
    )
    if duration is not None and stages:
        sec.fail(
            "duration",
            "duration and stages are mutually exclusive",
            hint="the stages' durations add up to the run's length; remove one of them",
        )
    messages = sec.get_int("messages", minimum=1, maximum=MAX_COUNT) if sec.has("messages") else None
    if duration is None and messages is None and not stages:
        sec.fail(None, "needs at least one of duration, messages or stages", expected='e.g. duration = "30s"')
    return WorkloadConfig(
        model=model,
        sessions=sessions,
        rate=rate,
        arrival=arrival,
        max_in_flight=max_in_flight,
        duration=duration,
        messages=messages,
        messages_per_session=sec.get_int("messages_per_session", 1, minimum=1, maximum=MAX_COUNT),
        think_time=parse_duration(sec.raw("think_time", 0), sec.key("think_time"), file=sec.file),
        grace=parse_duration(sec.raw("grace", "5s"), sec.key("grace"), file=sec.file),
        stages=stages,
        seed=sec.get_int("seed", random.SystemRandom().randrange(2**32), minimum=0, maximum=MAX_SEED),
    )


def _stages(sec: Section, model: str) -> tuple[Stage, ...]:
    if not sec.has("stages"):
        return ()
    value = sec.raw("stages")
    expected = 'an array of tables like [{duration = "30s", target = 100}]'
    if not isinstance(value, list) or not value:
        sec.fail("stages", f"got {type_name(value)} {shown(value)}", expected=expected)
    stages = []
    for i, entry in enumerate(value):
        key = f"{sec.key('stages')}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"got {type_name(entry)} {shown(entry)}", file=sec.file, key=key, expected=expected)
        stage = Section(entry, key, sec.file)
        stage.check_keys(("duration", "target"))
        if not stage.has("duration") or not stage.has("target"):
            missing = "duration" if not stage.has("duration") else "target"
            stage.fail(missing, "is required in every stage", expected=expected)
        duration = parse_duration(stage.raw("duration"), stage.key("duration"), file=sec.file, positive=True)
        target: float
        if model == "closed":
            target = float(check_int(stage.raw("target"), stage.key("target"), sec.file, 0, MAX_SESSIONS))
        else:
            target = check_number(stage.raw("target"), stage.key("target"), sec.file, 0, MAX_RATE)
        stages.append(Stage(duration, target))
    return tuple(stages)


def _message(sec: Section) -> MessageConfig:
    sec.check_keys(("size", "recipients", "from", "to", "subject", "variants", "headers"))
    size = _size_spec(sec)
    rmin, rmax = _recipients(sec)
    from_template = _template(sec, "from", "sender{n}@smtpbench.example", address=True)
    to_template = _template(sec, "to", "user{n}@example.test", address=True)
    subject = _template(sec, "subject", "smtpbench message {n}", address=False)
    variants = sec.get_int("variants", 32, minimum=1, maximum=10000)
    hsec = sec.get_table("headers")
    headers: dict[str, str] = {}
    for name, value in hsec.data.items():
        if not _HEADER_NAME.fullmatch(name):
            hsec.fail(name, "is not a valid header field name", expected="printable ASCII without ':' or spaces")
        if name.lower() in _RESERVED_HEADERS:
            hsec.fail(name, "is set by smtpbench", hint=f"use {_RESERVED_HEADERS[name.lower()]}")
        if not isinstance(value, str):
            hsec.fail(name, f"got {type_name(value)} {shown(value)}", expected="a string")
        if "\r" in value or "\n" in value:
            hsec.fail(name, "contains a line break", expected="a single-line value")
        headers[name] = value
    return MessageConfig(size, rmin, rmax, from_template, to_template, subject, variants, headers)


def _size_spec(sec: Section) -> SizeSpec:
    value = sec.raw("size", "10KiB")
    key = sec.key("size")
    file = sec.file
    expected = 'a size like "10KiB", a {distribution = ...} table, or an array of {size, weight} tables'

    def size_of(v: object, k: str) -> int:
        octets = parse_size(v, k, file=file)
        if octets > MAX_MESSAGE_SIZE:
            raise ConfigError(f"{shown(v)} is too large", file=file, key=k, expected="a size of at most 1GiB")
        return octets

    if isinstance(value, dict):
        dist = Section(value, key, file)
        kind = dist.get_str("distribution", choices=("uniform", "lognormal"))
        if kind == "uniform":
            dist.check_keys(("distribution", "min", "max"))
            for name in ("min", "max"):
                if not dist.has(name):
                    dist.fail(name, "is required for a uniform distribution", expected="a size")
            lo, hi = size_of(dist.raw("min"), dist.key("min")), size_of(dist.raw("max"), dist.key("max"))
            if hi < lo:
                dist.fail("max", f"max ({format_size(hi)}) is below min ({format_size(lo)})", expected="max >= min")
            return UniformSize(lo, hi)
        dist.check_keys(("distribution", "median", "sigma", "min", "max"))
        if not dist.has("median"):
            dist.fail("median", "is required for a lognormal distribution", expected="a size")
        median = size_of(dist.raw("median"), dist.key("median"))
        if median < 1:
            dist.fail("median", "must be at least 1 octet", expected="a positive size")
        sigma = dist.get_number("sigma", 1.0, minimum=0, maximum=10, positive=True)
        lo = size_of(dist.raw("min"), dist.key("min")) if dist.has("min") else 0
        hi = size_of(dist.raw("max"), dist.key("max")) if dist.has("max") else min(100 * median, MAX_MESSAGE_SIZE)
        if hi < median:
            dist.fail(
                "max", f"max ({format_size(hi)}) is below the median ({format_size(median)})", expected="max >= median"
            )
        if lo > median:
            dist.fail(
                "min", f"min ({format_size(lo)}) is above the median ({format_size(median)})", expected="min <= median"
            )
        return LognormalSize(median, sigma, lo, hi)
    if isinstance(value, list):
        if not value:
            raise ConfigError("is an empty array", file=file, key=key, expected=expected)
        choices = []
        for i, entry in enumerate(value):
            ekey = f"{key}[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"got {type_name(entry)} {shown(entry)}", file=file, key=ekey, expected="{size = ..., weight = ...}"
                )
            esec = Section(entry, ekey, file)
            esec.check_keys(("size", "weight"))
            if not esec.has("size"):
                esec.fail("size", "is required", expected="a size")
            choices.append(
                (size_of(esec.raw("size"), esec.key("size")), esec.get_number("weight", 1.0, minimum=0, positive=True))
            )
        return WeightedSize(tuple(choices))
    if isinstance(value, str | int) and not isinstance(value, bool):
        return FixedSize(size_of(value, key))
    raise ConfigError(f"got {type_name(value)} {shown(value)}", file=file, key=key, expected=expected)


def _recipients(sec: Section) -> tuple[int, int]:
    value = sec.raw("recipients", 1)
    if isinstance(value, dict):
        rsec = Section(value, sec.key("recipients"), sec.file)
        rsec.check_keys(("min", "max"))
        lo = rsec.get_int("min", 1, minimum=1, maximum=MAX_RECIPIENTS)
        hi = rsec.get_int("max", lo, minimum=1, maximum=MAX_RECIPIENTS)
        if hi < lo:
            rsec.fail("max", f"max ({hi}) is below min ({lo})", expected="max >= min")
        return lo, hi
    count = sec.get_int("recipients", 1, minimum=1, maximum=MAX_RECIPIENTS)
    return count, count


def _template(sec: Section, name: str, default: str, *, address: bool) -> str:
    template = sec.get_str(name, default)
    expected = "placeholders {n}, {session}, {rcpt} or {worker} (literal braces as {{ and }})"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        sec.fail(name, f"bad template {shown(template)}: {exc}", expected=expected)
    for _, field_name, _, _ in fields:
        if field_name is not None and field_name not in PLACEHOLDERS:
            shown_name = "{}" if field_name == "" else "{" + field_name + "}"
            sec.fail(name, f"unknown placeholder {shown(shown_name)[1:-1]}", expected=expected)
    try:
        sample = template.format(**{p: 1 for p in PLACEHOLDERS})
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        sec.fail(name, f"bad template {shown(template)}: {exc}", expected=expected)
    if any(c in sample for c in "\r\n\0"):
        sec.fail(name, "contains a line break or NUL", expected="a single line")
    if address:
        if not _ADDRESS.fullmatch(sample):
            sec.fail(name, f"{shown(sample)} is not an address", expected="local@domain, without spaces or <>")
        if len(sample.encode("utf-8")) > 254:
            sec.fail(name, "address is too long", expected="at most 254 octets")
    return template


def _output(sec: Section) -> OutputConfig:
    sec.check_keys(("results_dir", "progress", "interval"))
    results_dir = sec.get_str("results_dir", "results")
    if "\0" in results_dir:
        sec.fail("results_dir", "contains a NUL character", expected="a directory path")
    progress = sec.get_str("progress", "auto", choices=("auto", "live", "plain", "none"))
    interval = parse_duration(sec.raw("interval", "1s"), sec.key("interval"), file=sec.file, positive=True)
    return OutputConfig(results_dir, progress, interval)


# ------------------------------------------------------------------ resolved dump


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile with every default made explicit, in the file's own shapes.

    Loading this dict back (:func:`profile_from_dict`) gives an equal profile
    (apart from ``path`` and ``raw``).  Secrets are not redacted here.
    """
    t = profile.target
    target: dict[str, Any] = {"embedded": t.embedded, "helo": t.helo, "tls": t.tls}
    if t.embedded:
        target["sink"] = _sink_to_dict(t.sink)
    else:
        target.update(host=t.host, port=t.port, ca_file=t.ca_file)
        if t.tls != "none":
            target["insecure"] = t.insecure
        if t.auth is not None:
            target["auth"] = {
                "username": t.auth.username,
                "mechanism": t.auth.mechanism,
                "password_env": t.auth.password_env,
                "password_file": t.auth.password_file,
            }
    w = profile.workload
    workload: dict[str, Any] = {"model": w.model}
    if w.model == "closed":
        workload["sessions"] = w.sessions or None
    else:
        workload.update(rate=w.rate or None, arrival=w.arrival, max_in_flight=w.max_in_flight)
    workload.update(
        duration=format_duration(w.duration) if w.duration is not None else None,
        messages=w.messages,
        messages_per_session=w.messages_per_session,
        think_time=format_duration(w.think_time),
        grace=format_duration(w.grace),
        stages=[{"duration": format_duration(s.duration), "target": _stage_target(w.model, s.target)} for s in w.stages]
        or None,
        seed=w.seed,
    )
    m = profile.message
    recipients: Any = (
        m.recipients_min
        if m.recipients_min == m.recipients_max
        else {
            "min": m.recipients_min,
            "max": m.recipients_max,
        }
    )
    return {
        "target": target,
        "smtp": {
            "pipelining": profile.smtp.pipelining,
            "pipeline_data": profile.smtp.pipeline_data,
            "timeouts": {k: format_duration(v) for k, v in profile.smtp.timeouts.items()},
        },
        "workload": workload,
        "message": {
            "size": m.size.to_toml(),
            "recipients": recipients,
            "from": m.from_template,
            "to": m.to_template,
            "subject": m.subject,
            "variants": m.variants,
            "headers": dict(m.headers),
        },
        "output": {
            "results_dir": profile.output.results_dir,
            "progress": profile.output.progress,
            "interval": format_duration(profile.output.interval),
        },
        "conform": copy.deepcopy(profile.conform),
        **_delivery_to_dict(profile.delivery),
    }


def _sink_to_dict(options: SinkOptions) -> dict[str, Any]:
    sink: dict[str, Any] = {"delay": {k: format_duration(v) for k, v in options.delays.items()}}
    for name in SINK_RATIO_KEYS:
        sink[name] = getattr(options, name)
    if options.pause_at is not None:
        sink.update(pause_at=format_duration(options.pause_at), pause_for=format_duration(options.pause_for))
    sink["seed"] = options.seed
    return sink


def _delivery_to_dict(d: DeliveryConfig | None) -> dict[str, Any]:
    if d is None:
        return {}

    def address(a: tuple[str, int] | None) -> str | None:
        return None if a is None else (f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}")

    doc: dict[str, Any] = {
        "listen": address(d.listen),
        "report_listen": address(d.report_listen),
        "maildir": d.maildir,
        "mbox": d.mbox,
        "wait": format_duration(d.wait),
    }
    if d.listen is not None:
        doc["sink"] = _sink_to_dict(d.sink)
    return {"delivery": doc}


def _stage_target(model: str, target: float) -> int | float:
    return int(target) if model == "closed" else target


def resolved_toml(profile: Profile) -> str:
    """The profile as TOML with defaults filled in, the seed used, and secrets redacted."""
    header = f"# Resolved profile (defaults filled in) from {plain(profile.path, 200)}\n"
    return header + dump_toml(redact(profile_to_dict(profile)))
