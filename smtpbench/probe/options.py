"""The options of one probe, validated from the command line.

Every problem is a :class:`~smtpbench.errors.ConfigError` (one line, exit 2)
raised before any traffic is sent.  The target syntax and the password
sources are the conformance suite's (:mod:`smtpbench.conform.config`): the
password comes only from ``$SMTPBENCH_PASSWORD`` or ``--password-file``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smtpbench.conform.config import PASSWORD_ENV, parse_target, read_password
from smtpbench.conform.options import DEFAULT_HELO
from smtpbench.credentials import token
from smtpbench.errors import ConfigError
from smtpbench.net.tls import ca_file_problem
from smtpbench.probe.model import STEPS
from smtpbench.protocol.sasl import MECHANISMS, TOKEN_MECHANISMS

DEFAULT_TIMEOUT = 30.0
IMPLICIT_TLS_PORT = 465
PIPELINING_MODES = ("auto", "on", "off")

_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2: printable ASCII except ':'


@dataclass
class ProbeOptions:
    """Everything one probe needs.  ``password`` lives only in memory and is never shown."""

    host: str
    port: int
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    helo: str = DEFAULT_HELO
    tls: str = "none"  # "none", "starttls" or "implicit"
    ca_file: str | None = None
    insecure: bool = False
    auth_user: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_mechanism: str | None = None  # None: the best the server offers
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    data: bytes | None = None  # a whole message (--data)
    attachments: list[Path] = field(default_factory=list)
    pipelining: str = "auto"
    chunking: bool = False
    timeout: float = DEFAULT_TIMEOUT
    quit_after: str | None = None
    json_path: str | None = None

    @property
    def target(self) -> str:
        """``host:port`` as shown (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def reaches(self, step: str) -> bool:
        """True when the probe goes as far as ``step`` (``--quit-after`` not before it)."""
        return self.quit_after is None or STEPS.index(step) <= STEPS.index(self.quit_after)


def _mailbox(value: str, key: str, allow_null: bool = False) -> str:
    if allow_null and value == "":
        return value
    if "@" not in value or any(c in value for c in "<>\r\n ") or value.startswith("@") or value.endswith("@"):
        raise ConfigError(f"{value!r} is not a mailbox", key=key, expected="local@domain")
    return value


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``("Name", "value")``; refuses line breaks and names that are not RFC 5322 field names."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{text!r} is not a header", key="--header", expected="'Name: value'")
    if "\r" in value or "\n" in value:
        raise ConfigError(f"header {name} contains a line break", key="--header")
    return name, value.strip()


def _read_data(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc.strerror}", key="--data") from None


def build_options(
    target: str,
    *,
    sender: str | None = None,
    recipients: list[str] | None = None,
    helo: str | None = None,
    starttls: bool = False,
    tls: bool = False,
    ca_file: str | None = None,
    insecure: bool = False,
    auth_user: str | None = None,
    password_file: str | None = None,
    auth_mechanism: str | None = None,
    headers: list[str] | None = None,
    body: str | None = None,
    data: str | None = None,
    attachments: list[str] | None = None,
    pipelining: str = "auto",
    chunking: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    quit_after: str | None = None,
    json_path: str | None = None,
) -> ProbeOptions:
    """Validate the command-line values; guarantees a usable :class:`ProbeOptions` or a :class:`ConfigError`."""
    host, port = parse_target(target)
    if starttls and tls:
        raise ConfigError("--starttls and --tls exclude each other", key="--tls")
    mode = "implicit" if tls else "starttls" if starttls else "none"
    if tls and not re.search(r":\d+$", target.strip()):
        port = IMPLICIT_TLS_PORT  # SMTPS when no port is given, as swaks does
    if (ca_file or insecure) and mode == "none":
        raise ConfigError(
            "--ca-file and --insecure need --starttls or --tls", key="--ca-file" if ca_file else "--insecure"
        )
    if ca_file and insecure:
        raise ConfigError("--ca-file and --insecure exclude each other", key="--insecure")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"CA file {ca_file!r} does not exist", key="--ca-file")
    if ca_file and (problem := ca_file_problem(ca_file)):
        raise ConfigError(problem, key="--ca-file")
    if quit_after is not None and quit_after not in STEPS:
        raise ConfigError(f"unknown step {quit_after!r}", key="--quit-after", expected="|".join(STEPS))
    if pipelining not in PIPELINING_MODES:
        raise ConfigError(f"unknown mode {pipelining!r}", key="--pipelining", expected="|".join(PIPELINING_MODES))
    if not 0 < timeout <= 3600:
        raise ConfigError(f"timeout {timeout:g} out of range", key="--timeout", expected="0 < seconds <= 3600")
    helo = helo if helo is not None else DEFAULT_HELO
    if not helo or any(c in helo for c in " \r\n<>"):
        raise ConfigError(f"{helo!r} is not a domain", key="--helo")
    mechanism = auth_mechanism.upper() if auth_mechanism else None
    if mechanism is not None and mechanism not in MECHANISMS:
        raise ConfigError(
            f"unsupported mechanism {auth_mechanism!r}", key="--auth-mechanism", expected="|".join(MECHANISMS)
        )
    if auth_user is None and (mechanism or password_file):
        raise ConfigError("--auth-mechanism and --password-file need --auth-user", key="--auth-user")
    password = None
    if auth_user is not None:
        if not auth_user or any(c in auth_user for c in "\r\n\0"):
            raise ConfigError(f"{auth_user!r} is not a user name", key="--auth-user")
        if mechanism in TOKEN_MECHANISMS:  # the secret is a bearer token: --password-file or $SMTPBENCH_TOKEN
            password = token(password_file, "--auth-mechanism")
        else:
            password = read_password(password_file)
        if password is None:
            raise ConfigError(
                "no password",
                key="--auth-user",
                hint=f"set ${PASSWORD_ENV} or pass --password-file (never the password itself)",
            )
    if quit_after == "tls" and mode == "none":
        raise ConfigError("--quit-after tls needs --starttls or --tls", key="--quit-after")
    if quit_after == "auth" and auth_user is None:
        raise ConfigError("--quit-after auth needs --auth-user", key="--quit-after")
    opts = ProbeOptions(host=host, port=port, helo=helo, tls=mode, ca_file=ca_file, insecure=insecure)
    opts.auth_user, opts.password, opts.auth_mechanism = auth_user, password, mechanism
    opts.pipelining, opts.chunking, opts.timeout, opts.quit_after = pipelining, chunking, timeout, quit_after
    opts.sender = _mailbox(sender, "--from", allow_null=True) if sender is not None else f"probe@{helo}"
    opts.recipients = [_mailbox(r, "--to") for r in recipients or ()]
    if not opts.recipients and opts.reaches("rcpt"):
        raise ConfigError("no recipient", key="--to", hint="give --to at least once, or stop earlier with --quit-after")
    opts.headers = [parse_header(h) for h in headers or ()]
    if data is not None and (body is not None or attachments):
        raise ConfigError("--data sends a whole message: it excludes --body and --attach", key="--data")
    opts.body = body
    for name in attachments or ():
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"attachment {name!r} is not a readable file", key="--attach")
        opts.attachments.append(path)
    if json_path is not None:
        parent = Path(json_path).parent
        if not parent.is_dir():
            raise ConfigError(f"folder {str(parent)!r} does not exist", key="--json")
        opts.json_path = json_path
    # Read last: stdin is consumed only once every other option is known to be good.
    if data is not None:
        opts.data = _read_data(data)
    return opts
