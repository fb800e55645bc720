"""Configuration of the embedded sink, and the parsers for its command-line values."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from smtpbench.errors import ConfigError

#: Phases a latency can be injected before (the reply of that phase is delayed).
PHASES = ("banner", "ehlo", "mail", "rcpt", "data", "data_end", "quit")

DEFAULT_HOSTNAME = "sink.smtpbench.test"
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_MAX_BAD_COMMANDS = 10


@dataclass
class SinkConfig:
    """Everything one sink needs; every field has a compliant default.

    ``delays`` maps a phase of :data:`PHASES` to seconds slept before that
    reply.  Ratios are probabilities in [0, 1] drawn from a generator seeded
    with ``seed`` (per connection), so a run is reproducible for a given
    connection order.  ``local_domains`` adds to the built-in local domains
    (``hostname``, ``localhost``, ``example.test`` and the listen address).
    """

    host: str = "127.0.0.1"
    port: int = 0
    hostname: str = DEFAULT_HOSTNAME
    local_domains: frozenset[str] = frozenset()
    max_size: int = DEFAULT_MAX_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    max_bad_commands: int = DEFAULT_MAX_BAD_COMMANDS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    tls_handshake_timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    auth_users: dict[str, str] = field(default_factory=dict)
    #: Bearer token accepted by XOAUTH2/OAUTHBEARER (empty: those are not offered).
    auth_token: str = ""
    allow_plain_auth_without_tls: bool = False
    store_messages: bool = False
    store_dir: Path | None = None
    delays: dict[str, float] = field(default_factory=dict)
    reject_rcpt_temp: float = 0.0
    reject_rcpt_perm: float = 0.0
    reject_data_temp: float = 0.0
    reject_data_perm: float = 0.0
    disconnect: float = 0.0
    #: Ratio of accepted messages dropped after the 250 (see smtpbench.sink.downstream).
    blackhole: float = 0.0
    #: Report each accepted message's id to this run (HOST, PORT), buffering at most report_buffer reports.
    report_to: tuple[str, int] | None = None
    report_buffer: int = 1_000_000
    #: A scheduled pause: stop answering pause_at seconds after the start, for pause_for seconds.
    pause_at: float | None = None
    pause_for: float = 0.0
    seed: int | None = None
    #: Speak LMTP (RFC 2033) instead of SMTP: LHLO, one reply per recipient after the data.
    lmtp: bool = False
    faults: frozenset[str] = frozenset()
    #: Every connection must start with a PROXY protocol header (v1 or v2); its client is the client.
    proxy_protocol: bool = False
    #: Bind with SO_REUSEPORT, sharing the port with the other workers (smtpbench.sink.workers).
    reuse_port: bool = False
    #: This process's index among the workers: keeps their queue ids and random streams apart.
    worker: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values no sink can run with."""
        from smtpbench.sink.faults import validate_faults

        validate_faults(self.faults)
        for phase, seconds in self.delays.items():
            if phase not in PHASES:
                raise ConfigError(f"unknown delay phase {phase!r}", expected="one of " + ", ".join(PHASES))
            if not 0 <= seconds <= 3600:
                raise ConfigError(f"{seconds:g}s is out of range", key=_flag(phase, "delay"), expected="0..3600s")
        for name in (
            "reject_rcpt_temp",
            "reject_rcpt_perm",
            "reject_data_temp",
            "reject_data_perm",
            "disconnect",
            "blackhole",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{value} is out of range", key=_flag(name), expected="a ratio between 0 and 1")
        for kind in ("rcpt", "data"):  # one draw picks temporary, permanent or neither: the two share it
            temp, perm = f"reject_{kind}_temp", f"reject_{kind}_perm"
            if getattr(self, temp) + getattr(self, perm) > 1.0:
                raise ConfigError(f"{_flag(temp)} and {_flag(perm)} add up to more than 1", key=_flag(temp))
        # --pause-for alone is the length of a SIGUSR1 pause; a scheduled one (--pause-at) needs a length.
        if self.pause_at is not None and self.pause_for == 0:
            raise ConfigError("a scheduled pause needs its length", key="--pause-at", expected="--pause-for 5s")
        if self.pause_for < 0 or self.pause_for > 3600:
            raise ConfigError(f"{self.pause_for:g}s is out of range", key="--pause-for", expected="0..3600s")
        if self.report_buffer < 1:
            raise ConfigError(f"{self.report_buffer} is below 1", key="--report-buffer", expected="reports, at least 1")
        if self.max_size < 0:
            raise ConfigError(f"{self.max_size} is negative", key="--max-size", expected="octets, 0 for no limit")
        if self.max_recipients < 1:
            raise ConfigError(f"max_recipients must be at least 1: {self.max_recipients}")
        if self.idle_timeout <= 0:
            raise ConfigError("must be above 0", key="--idle-timeout", expected="a duration like 300s")
        if self.implicit_tls and self.ssl_context is None:
            raise ConfigError("implicit TLS needs a certificate and key", hint="pass --tls-cert and --tls-key")
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", self.hostname):
            raise ConfigError(f"hostname {self.hostname!r} is not a domain name", key="--hostname")


def _flag(name: str, prefix: str = "") -> str:
    """The command-line flag of a field (``reject_rcpt_temp`` -> ``--reject-rcpt-temp``), which errors name."""
    return "--" + "-".join(filter(None, (prefix, name.replace("_", "-"))))
