"""The server role of SMTP, sans I/O: bytes in, replies out (RFC 5321, 2920, 3030, 3207, 4954).

Theory of operation
-------------------
:meth:`ServerConnection.receive_data` takes whatever octets arrived and
processes them strictly in order.  In command mode every complete
``CRLF``-terminated line is executed and its reply appended to ``out``;
message content goes to :class:`~smtpbench.protocol.commands.DataReceiver`
(only ``CRLF.CRLF`` ends it) or is counted off for ``BDAT``; whatever follows
in the same octets is the next pipelined command.  An incomplete line is
kept for the next call.

The I/O layer sends ``out`` (joined, then cleared) once ``receive_data``
returns: the input it holds is then exhausted, which is RFC 2920 3.2
(pending replies go out when the input buffer empties, none is lost, order
is kept).  Then it closes if ``closing`` is set, or does the TLS handshake
if ``tls_requested`` is set (see :meth:`AuthMixin.tls_started`).

Nothing here reads a socket, a clock or a random generator: the embedding
server adds latency, random refusals and delivery through the hooks of
:class:`~smtpbench.protocol.server_state.ServerState`.
"""

from __future__ import annotations

from collections.abc import Callable

from smtpbench.protocol import syntax
from smtpbench.protocol.server_auth import AuthMixin, advertised
from smtpbench.protocol.server_data import DataMixin
from smtpbench.protocol.server_envelope import EnvelopeMixin
from smtpbench.protocol.server_state import (
    AUTH,
    AUTH_LINE_MAX,
    BDAT,
    CMD,
    COMMAND_LINE_MAX,
    DATA,
    IGNORE,
    KEYWORDS,
    PARAMETER_LINE_MAX,
    R_BARE,
    R_HELP,
    R_NEED_EHLO,
    R_NO_ARGS,
    R_NOT_IMPL,
    R_NOT_LMTP,
    R_OK,
    R_TOO_LONG,
    R_UNKNOWN,
    R_VRFY,
    shown,
)

#: Commands RFC 5321 names but this server does not implement (502), unless a quirk does.
LEGACY = frozenset({"SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN", "EXPN"})
#: Commands that need no EHLO first (RFC 5321 4.1.4); refusing them is the S-01 quirk.
BEFORE_EHLO_OK = frozenset({"NOOP", "RSET", "HELP", "VRFY", "EXPN"})


class ServerConnection(EnvelopeMixin, DataMixin, AuthMixin):
    """One SMTP server session's protocol, fed received octets, producing reply octets.

    Guarantees: replies come out in ``out`` in the order of the commands;
    input is consumed only as far as it is complete; no exception escapes
    for anything a peer sends; memory held for an unterminated line is
    bounded by ``AUTH_LINE_MAX`` (the line is then discarded and answered
    500 when it finally ends).  After ``closing`` is set, input is ignored.
    """

    def receive_data(self, buf: bytes) -> None:
        """Process received octets; replies go to ``out``."""
        if self.buf_rest:
            buf = self.buf_rest + buf
            self.buf_rest = b""
        quirks = self.quirks
        if quirks and "P-01" in quirks and buf[:4].upper() == b"MAIL":
            self.p01 = []
        pos = 0
        n = len(buf)
        while pos < n and not self.closing:
            mode = self.mode
            if mode in (CMD, AUTH):
                if quirks and "D-07" in quirks:
                    idx = buf.find(b"\n", pos)
                    nxt = idx + 1
                    end = idx - 1 if idx > pos and buf[idx - 1] == 13 else idx
                else:
                    idx = buf.find(b"\r\n", pos)
                    nxt = end = idx
                    nxt += 2
                if idx < 0:
                    if n - pos > AUTH_LINE_MAX:
                        # Too long to be any command: drop it, but stay in sync by
                        # answering once when its line end finally arrives.
                        self.discarding = True
                        pos = n - 1 if buf[n - 1] == 13 else n
                    break
                line = buf[pos:end]
                pos = nxt
                if self.discarding:
                    self.discarding = False
                    self.bad_command(R_TOO_LONG)
                    continue
                self.stats.commands += 1
                if mode == AUTH:
                    self.auth_response(line)
                else:
                    self.command(line)
                if self.tls_requested:
                    # Nothing more is read in plaintext: the I/O layer does the handshake.
                    self.tls_rest = buf[pos:]
                    return
                if self.flush_input:
                    self.flush_input = False
                    pos = n
            elif mode == DATA:
                chunk = buf[pos:] if pos else buf
                pos = n
                after: bytes | None
                if self.fdata is not None:
                    after = self.fdata.feed(chunk)
                else:
                    assert self.receiver is not None
                    after = self.receiver.feed(chunk)
                    if after is not None:
                        self.end_of_data()
                if after is not None:
                    if quirks and "P-03" in quirks:
                        after = b""
                    buf, pos, n = after, 0, len(after)
            elif mode == BDAT:
                take = min(self.bdat_left, n - pos)
                self.bdat_chunk(buf, pos, take)
                pos += take
            else:  # IGNORE: R-03 quirk, input after QUIT is swallowed
                pos = n
        if pos < n and not self.closing:
            self.buf_rest = buf[pos:]
        if self.p01:
            self.out.extend(self.p01)
        self.p01 = None

    def command(self, line: bytes) -> None:
        """Execute one command line (without its CRLF)."""
        quirks = self.quirks
        size = len(line) + 2
        if size > COMMAND_LINE_MAX or (quirks and "X-04" in quirks and size > COMMAND_LINE_MAX - 2):
            head = line[:5].upper()
            allowed = (
                PARAMETER_LINE_MAX
                if head in (b"MAIL ", b"RCPT ")
                else AUTH_LINE_MAX
                if head == b"AUTH "
                else COMMAND_LINE_MAX
            )
            if quirks and "X-04" in quirks:
                allowed -= 2
            if size > allowed:
                self.bad_command(R_TOO_LONG)
                return
        if b"\r" in line or b"\n" in line:
            self.bad_command(R_BARE)
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        if not (quirks and "E-05" in quirks):
            verb = verb.upper()
        handler = HANDLERS.get(verb)
        if handler is None:
            if not verb.strip() and not arg.strip():
                if quirks and "X-01" in quirks:
                    return
                self.bad_command(b"500 5.5.2 Error: empty command\r\n")
            elif verb in LEGACY and verb.upper() == verb:
                self._legacy(verb, arg)
            else:
                self.bad_command(R_UNKNOWN)
            return
        self.bad = 0
        if quirks and "S-01" in quirks and self.greeted is None and verb in BEFORE_EHLO_OK:
            self.out.append(R_NEED_EHLO)
            return
        if self.chancy and verb != "QUIT" and self.drop_now():
            return
        handler(self, arg)

    def _legacy(self, verb: str, arg: str) -> None:
        quirks = self.quirks
        if verb == "EXPN" and quirks and "V-02" in quirks:
            if not arg.strip():
                self.out.append(b"501 5.5.4 Syntax: EXPN list\r\n")
            else:
                self.out.append(b"250-2.1.5 postmaster\r\n250 2.1.5 root\r\n")
        elif verb == "ETRN" and quirks and "LG-01" in quirks:
            self.out.append(b"250 2.0.0 Queuing started\r\n")
        else:
            self.out.append(R_NOT_IMPL)

    def ehlo(self, arg: str) -> None:
        """Answer ``EHLO domain``: reset the session and list the extensions offered now (500 in LMTP)."""
        self._hello(arg, "EHLO")

    def helo(self, arg: str) -> None:
        """Answer ``HELO domain``: reset the session, no extensions (500 in LMTP)."""
        self._hello(arg, "HELO")

    def lhlo(self, arg: str) -> None:
        """Answer ``LHLO domain`` as EHLO in an LMTP session (RFC 2033 4.1); an SMTP session does not know it."""
        if not self.lmtp:
            self.bad_command(R_UNKNOWN)
            return
        self._hello(arg, "LHLO")

    def _hello(self, arg: str, verb: str) -> None:
        quirks = self.quirks
        if self.lmtp and verb != "LHLO":
            self.bad_command(R_NOT_LMTP)
            return
        if self.paced:
            self.on_phase("ehlo")
        words = arg.split()
        if not words and not (quirks and "E-02" in quirks):
            self.out.append(f"501 5.5.4 Syntax: {verb} hostname\r\n".encode())
            return
        name = words[0] if words else ""
        if name and not syntax.valid_domain(name, allow_underscore=bool(quirks and "X-05" in quirks)):
            self.out.append(b"501 5.5.2 Error: invalid domain name or address literal\r\n")
            return
        if not (quirks and "E-03" in quirks):
            self.reset_transaction()
        self.greeted = verb
        self.helo_name = name
        if verb != "HELO" or (quirks and "E-01" in quirks):
            self.out.append(self.ehlo_reply(name))
        else:
            self.out.append(f"250 {self.config.hostname}\r\n".encode())

    def ehlo_reply(self, name: str) -> bytes:
        """The multi-line 250 to EHLO, advertising what this session may use now."""
        cfg = self.config
        quirks = self.quirks
        keywords = list(KEYWORDS)
        keywords.insert(1, f"SIZE {cfg.max_size}")
        if quirks and ("E-04" in quirks or "V-02" in quirks):
            keywords.append("EXPN")
        if quirks and "LG-01" in quirks:
            keywords.append("ETRN")
        if cfg.starttls and not self.tls:
            keywords.append("STARTTLS")
        if self.auth_offered():
            keywords.append("AUTH " + advertised(bool(cfg.auth_token)))
        lines = [f"{cfg.hostname} Hello {name} {self.peer_literal}".rstrip(), *keywords]
        head = "".join(f"250-{line}\r\n" for line in lines[:-1])
        return (head + f"250 {lines[-1]}\r\n").encode()

    def rset(self, arg: str) -> None:
        """Answer ``RSET``: end the transaction, keep the session."""
        quirks = self.quirks
        if arg.strip() and not (quirks and "X-03" in quirks):
            self.out.append(R_NO_ARGS)
            return
        if not (quirks and "R-01" in quirks):
            self.reset_transaction()
        if quirks and "P-02" in quirks:
            self.flush_input = True
        self.out.append(b"250 OK\r\n" if quirks and "ES-01" in quirks else R_OK)

    def noop(self, arg: str) -> None:
        """Answer ``NOOP`` (its argument is ignored, 4.1.1.9)."""
        quirks = self.quirks
        if quirks:
            if "R-02" in quirks and arg.strip():
                self.out.append(b"501 5.5.4 Syntax: NOOP\r\n")
                return
            if "ES-01" in quirks:
                self.out.append(b"250 OK\r\n")
                return
        self.out.append(R_OK)

    def quit(self, arg: str) -> None:
        """Answer ``QUIT``: 221 and ``closing``."""
        quirks = self.quirks
        if arg.strip():
            self.out.append(R_NO_ARGS)
            return
        if self.paced:
            self.on_phase("quit")
        end = b"\n" if quirks and "G-01" in quirks else b"\r\n"
        self.out.append(f"221 2.0.0 {self.config.hostname} Service closing transmission channel".encode() + end)
        self.stats.sessions_completed += 1
        if quirks and "R-03" in quirks:
            self.mode = IGNORE
            return
        self.closing = True

    def vrfy(self, arg: str) -> None:
        """Answer ``VRFY``: 252, never disclosing whether a mailbox exists."""
        if not arg.strip():
            self.out.append(b"501 5.5.4 Syntax: VRFY address\r\n")
        elif self.quirks and "V-01" in self.quirks:
            self.out.append(f"250 2.1.5 <{shown(arg.strip(), 200)}>\r\n".encode())
        else:
            self.out.append(R_VRFY)

    def help(self, arg: str) -> None:
        """Answer ``HELP`` with 214 and the command list."""
        if self.quirks and "V-03" in self.quirks:
            self.out.append(b"250 2.0.0 " + R_HELP[10:])
        else:
            self.out.append(R_HELP)


#: Verb -> handler; verbs are matched after upper-casing (RFC 5321 2.4).
HANDLERS: dict[str, Callable[[ServerConnection, str], None]] = {
    "EHLO": ServerConnection.ehlo,
    "HELO": ServerConnection.helo,
    "LHLO": ServerConnection.lhlo,
    "MAIL": ServerConnection.mail,
    "RCPT": ServerConnection.rcpt,
    "DATA": ServerConnection.data,
    "BDAT": ServerConnection.bdat,
    "RSET": ServerConnection.rset,
    "NOOP": ServerConnection.noop,
    "QUIT": ServerConnection.quit,
    "VRFY": ServerConnection.vrfy,
    "HELP": ServerConnection.help,
    "STARTTLS": ServerConnection.starttls,
    "AUTH": ServerConnection.auth,
}
