"""The server role's configuration, counters, reply texts and per-session state (sans I/O).

:class:`ServerState` is the base of :class:`~smtpbench.protocol.server.ServerConnection`:
it holds everything one session knows (greeting seen, sender, recipients,
mode of the input) and the hook methods an embedding server overrides to add
load behaviour (latency, random refusals, dropped connections) and delivery.
The verb handlers live in mixins by area (``server_envelope``, ``server_data``,
``server_auth``) so that no module grows past a screenful of concerns.

Quirks: ``quirks`` is a set of deliberate deviations from RFC 5321, named by
the conformance check each one breaks (the catalogue and its validation are
``smtpbench.sink.faults``).  The empty set is the compliant server, and every
test of a quirk is ``if quirks and ID in quirks``, so the compliant hot path
pays one truth test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from smtpbench.protocol import syntax
from smtpbench.protocol.commands import DataReceiver
from smtpbench.protocol.tables import LIMITS

#: RFC 5321 4.5.3.1.4: 512 octets including the CRLF.
COMMAND_LINE_MAX = LIMITS["command_line_octets"]
#: MAIL/RCPT lines may grow by the extension allowances (RFC 1870, 4954,
#: 6531, 3030, 3461) when those extensions are offered, as they are here.
PARAMETER_LINE_MAX = COMMAND_LINE_MAX + 26 + 500 + 10 + 16 + 100 + 500
#: RFC 4954 4 suggests 12288 octets for AUTH exchange lines; also our cap on
#: how much of an unterminated line is buffered before it is discarded.
AUTH_LINE_MAX = 12288

#: Input modes: what the next received octets are.
CMD, DATA, BDAT, AUTH, IGNORE = 0, 1, 2, 3, 4

R_MAIL_OK = b"250 2.1.0 Sender OK\r\n"
R_RCPT_OK = b"250 2.1.5 Recipient OK\r\n"
R_OK = b"250 2.0.0 OK\r\n"
R_354 = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_NEED_EHLO = b"503 5.5.1 Error: send EHLO or HELO first\r\n"
R_NOT_LMTP = b"500 5.5.1 Error: this is an LMTP server: LHLO, not EHLO or HELO (RFC 2033)\r\n"
R_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
R_NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
R_NO_RCPT = b"554 5.5.1 Error: no valid recipients\r\n"
R_NO_RCPT_BDAT = b"503 5.5.1 Error: no valid recipients\r\n"
R_UNKNOWN = b"500 5.5.2 Error: command not recognized\r\n"
R_BARE = b"500 5.5.2 Error: bare CR or LF in command line\r\n"
R_TOO_LONG = b"500 5.5.6 Error: line too long\r\n"
R_NOT_IMPL = b"502 5.5.1 Error: command not implemented\r\n"
R_NO_ARGS = b"501 5.5.4 Syntax error: no arguments allowed\r\n"
R_SIZE_EXCEEDED = b"552 5.3.4 Error: message exceeds fixed maximum message size\r\n"
R_TOO_MANY = b"452 4.5.3 Error: too many recipients\r\n"
R_RELAY = b"550 5.7.1 Error: relay access denied\r\n"
R_VRFY = b"252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery\r\n"
R_HELP = b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH\r\n"
R_NEED_TLS = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
R_NON_ASCII_MAIL = b"550 5.6.7 Error: non-ASCII sender needs the SMTPUTF8 parameter\r\n"
R_NON_ASCII_RCPT = b"553 5.6.7 Error: non-ASCII recipient needs the SMTPUTF8 parameter\r\n"

#: EHLO keywords always offered, in the order advertised (SIZE goes second).
KEYWORDS = ("PIPELINING", "8BITMIME", "BINARYMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN", "HELP")

_UNSHOWN = re.compile(r"[^\x21-\x7e]")


def shown(text: str, limit: int = 40) -> str:
    """Client text made safe to echo in a reply: printable ASCII only, at most ``limit`` characters."""
    return _UNSHOWN.sub("?", text[:limit])


def address_literal_of(ip: str) -> str:
    """The RFC 5321 address literal of an IP address (``[1.2.3.4]`` or ``[IPv6:...]``)."""
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


class ContentReader(Protocol):
    """Message content reception: :meth:`feed` returns the input after the end of data, or None."""

    def feed(self, chunk: bytes) -> bytes | None:
        """Consume ``chunk``; return what follows the end of data, or None while it has not ended."""


@dataclass
class ServerCounters:
    """What the server role counts (an embedding server may extend it with its own counters)."""

    commands: int = 0
    bad_commands: int = 0
    sessions_completed: int = 0
    messages_accepted: int = 0
    messages_rejected_temp: int = 0
    messages_rejected_perm: int = 0
    recipients_accepted: int = 0
    recipients_rejected: int = 0
    #: LMTP: recipients the message was delivered to / refused for, by their reply after the data.
    recipients_delivered: int = 0
    recipients_failed: int = 0
    bytes_received: int = 0
    auth_successes: int = 0
    auth_failures: int = 0


@dataclass(frozen=True, eq=False)
class ServerConfig:
    """What the server role offers and enforces; shared by every session of a server.

    ``local_domains`` are lower-case names and normalised address literals
    delivered here (anything else is relaying, refused without AUTH).
    ``starttls`` says STARTTLS may be offered (a TLS context exists and TLS is
    not implicit).  ``keep_content`` makes accepted messages carry their content.
    """

    hostname: str = "localhost"
    max_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_bad_commands: int = 10
    starttls: bool = False
    auth_users: Mapping[str, str] = field(default_factory=dict)
    #: A bearer token accepted (for any user) by XOAUTH2 and OAUTHBEARER; empty: not offered.
    auth_token: str = ""
    allow_plain_auth_without_tls: bool = False
    keep_content: bool = False
    local_domains: frozenset[str] = frozenset({"localhost"})

    def is_local_domain(self, domain: str) -> bool:
        """True when mail for ``domain`` is delivered here (not relayed); ``*`` in local_domains: every domain."""
        if "*" in self.local_domains:  # a delivery sink: the final destination of all the mail it gets
            return True
        if domain.startswith("["):
            literal = syntax.address_literal(domain)
            return literal is not None and literal.lower() in self.local_domains
        return domain.lower().rstrip(".") in self.local_domains


class ServerState:
    """One session's protocol state, its output and the hooks of an embedding server.

    Output contract: replies are appended to ``out`` in order; the I/O layer
    sends them (joined) when it has fed every complete input it holds, then
    closes when ``closing`` is set.  ``tls_requested`` asks it to do the
    server-side TLS handshake now and then call ``tls_started``.
    """

    #: Whether :meth:`on_phase` must be called before each phase's reply (latency knobs).
    paced = False
    #: Whether :meth:`drop_now`, :meth:`rcpt_refusal` and :meth:`data_refusal` are consulted.
    chancy = False
    #: An LMTP session (RFC 2033; smtpbench.protocol.server_lmtp): LHLO instead of EHLO/HELO.
    lmtp = False

    def __init__(
        self,
        config: ServerConfig,
        counters: ServerCounters | None = None,
        *,
        quirks: frozenset[str] = frozenset(),
        peer_ip: str = "0.0.0.0",
    ) -> None:
        self.config = config
        self.stats = counters if counters is not None else ServerCounters()
        self.quirks = quirks
        self.peer_ip = peer_ip
        self.peer_literal = address_literal_of(peer_ip)
        self.out: list[bytes] = []
        self.mode = CMD
        self.closing = False
        self.discarding = False
        self.tls = False
        self.tls_requested = False
        self.tls_rest = b""
        self.flush_input = False
        self.greeted: str | None = None
        self.helo_name = ""
        self.auth_user: str | None = None
        self.auth_state: tuple[str, str] | None = None
        self.bad = 0
        self.p01: list[bytes] | None = None
        self.buf_rest = b""
        self._ids = 0
        self.reset_transaction()

    def reset_transaction(self) -> None:
        """Forget the mail transaction (sender, recipients, parameters, data in progress)."""
        self.mail_from: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.rcpts: list[str] = []
        self.utf8 = False
        self.body8 = False
        self.binary = False
        self.bdat_used = False
        self.bdat_buf: bytearray | None = None
        self.bdat_size = 0
        self.bdat_left = 0
        self.bdat_last = False
        self.bdat_error: bytes | None = None
        self.receiver: DataReceiver | None = None
        #: The data-phase quirks' reader (server_data.QuirkyData) instead of ``receiver``.
        self.fdata: ContentReader | None = None

    def max_size_effective(self) -> int:
        """The enforced message size limit (0: none)."""
        if self.quirks and "D-04" in self.quirks:
            return 60000 if not self.config.max_size else min(self.config.max_size, 60000)
        return self.config.max_size

    def bad_command(self, reply: bytes) -> None:
        """Answer a bad command; after too many in a row, 421 and close (RFC 5321 4.3.2 allows it)."""
        self.out.append(reply)
        self.stats.bad_commands += 1
        self.bad += 1
        quirks = self.quirks
        if (quirks and "X-06" in quirks) or self.bad >= self.config.max_bad_commands:
            self.out.append(f"421 4.7.0 {self.config.hostname} Error: too many errors\r\n".encode())
            self.closing = True

    # --- hooks of the embedding server ------------------------------------------

    def on_phase(self, phase: str) -> None:
        """Called (only when ``paced``) before the reply of ``phase``: ehlo, mail, rcpt, data, data_end, quit."""

    def drop_now(self) -> bool:
        """Called (only when ``chancy``) before a command and a final reply; True: close without replying."""
        return False

    def rcpt_refusal(self) -> bytes | None:
        """Called (only when ``chancy``) for an acceptable recipient; a reply refuses it instead."""
        return None

    def data_refusal(self) -> bytes | None:
        """Called (only when ``chancy``) for an acceptable message; a reply refuses it instead."""
        return None

    def delivery_refusal(self) -> bytes | None:
        """Called (only when ``chancy``, in LMTP) for each recipient of a complete message; a reply refuses it."""
        return None

    def message_accepted(self, content: bytes | None, via: str) -> str:
        """Take an accepted message (``content`` when ``keep_content``); return its queue id.

        The transaction (``mail_from``, ``rcpts``, ``mail_params``) is still
        set when this is called.  The default numbers messages per session.
        """
        self._ids += 1
        return f"{self._ids:010X}"
