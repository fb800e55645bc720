"""Profile sections as pydantic models: [smtp], [workload], [output] (also target_section.py, message_section.py).

A section is a :class:`~smtpbench.fields.Table`; a key is a field: a type from :mod:`smtpbench.fields` and
``key(default, "description")`` (the JSON Schema and the README come from these).  A rule between keys lives in
the section's ``_check`` and raises :class:`~smtpbench.fields.Invalid` with ``loc=("key",)``.
"""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PlainSerializer, model_validator

from smtpbench.fields import (
    AS_TEXT,
    Bool,
    Duration,
    Invalid,
    PositiveDuration,
    Table,
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
from smtpbench.protocol.tables import TIMEOUTS
from smtpbench.units import MAX_WORKERS, WORKERS_EXPECTED, format_duration, format_size

DEFAULT_HOST = "127.0.0.1"
MAX_SESSIONS = 1_000_000
MAX_RATE = 1_000_000.0
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**12
MAX_CHUNK = 1024**3

Seed = Annotated[int, whole(0, MAX_SEED)]


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
