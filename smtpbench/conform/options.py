"""The options of one conformance run (filled by ``config.py`` from the CLI or a profile)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 25
#: The environment variable holding the AUTH password of conform and probe (never a flag or a profile key).
PASSWORD_ENV = "SMTPBENCH_PASSWORD"
DEFAULT_HELO = "smtpbench.example"
DEFAULT_FOREIGN_RCPT = "relay-test@smtpbench-relay.invalid"
DEFAULT_REPLY_TIMEOUT = 10.0
DEFAULT_CHECK_TIMEOUT = 60.0


@dataclass
class ConformOptions:
    """Everything a conformance run needs to know; validated by :mod:`smtpbench.conform.config`.

    ``tls`` is ``"none"``, ``"starttls"`` (upgrade every session) or
    ``"implicit"`` (TLS from the first octet).  ``password`` is held only in
    memory: reports redact it.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls: str = "none"
    ca_file: str | None = None
    insecure: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    rcpt: str | None = None
    foreign_rcpt: str = DEFAULT_FOREIGN_RCPT
    helo: str = DEFAULT_HELO
    sender: str | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    slow: bool = False
    timeout: float = DEFAULT_REPLY_TIMEOUT
    check_timeout: float = DEFAULT_CHECK_TIMEOUT
    concurrency: int = 1
    #: How long to listen for replies that should not come (extra replies, early replies).
    quiet_wait: float = 0.5
    json_path: str | None = None
    junit_path: str | None = None
    transcript_dir: str | None = None
    #: A directory of delivered ``*.eml`` files (the delivery oracle), e.g. ``smtpbench sink --store``.
    store_dir: str | None = None
    quiet: bool = False
    #: An earlier ``--json`` report: failures already in it do not fail the run.
    baseline: str | None = None
    #: The profile's ``[conform.expect]`` waivers, as a plain table (parsed by ``waivers.py``).
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """``host:port`` as shown in reports (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def mail_from(self) -> str:
        """The reverse-path the checks use for ordinary transactions."""
        return self.sender or f"smtpbench@{self.helo}"

    @property
    def domain(self) -> str:
        """The server's local mail domain: the part after ``@`` of ``--rcpt``, else the target host (IPs as literals)."""
        if self.rcpt and "@" in self.rcpt:
            return self.rcpt.rsplit("@", 1)[1]
        if ":" in self.host:
            return f"[IPv6:{self.host}]"
        if self.host.replace(".", "").isdigit():
            return f"[{self.host}]"
        return self.host
