"""One SMTP server session of the sink: the command loop over a Trio stream.

Theory of operation
-------------------
Input is processed strictly in order from one buffer.  In command mode every
complete ``CRLF``-terminated line is executed; replies are appended to
``out`` and written as *one* send only when the buffer holds no further
complete command, which is RFC 2920 3.2 (pending replies go out when the
input buffer empties, none is lost, order is kept).  Message content is
consumed by :class:`~smtpbench.protocol.commands.DataReceiver` (only
``CRLF.CRLF`` ends it) or counted off for ``BDAT``; whatever follows in the
same buffer is the next pipelined command.

Faults (``faults.FAULTS``) are tested with ``if faults and ID in faults``:
the empty frozenset keeps the compliant hot path to one truth test.
"""

from __future__ import annotations

import binascii
import contextlib
import random
import re
import ssl
import sys
import traceback
from base64 import b64decode
from email.utils import formatdate
from typing import TYPE_CHECKING

import trio

from smtpbench.protocol.commands import DataReceiver, split_params, split_path
from smtpbench.sink import syntax
from smtpbench.sink.model import StoredMessage

if TYPE_CHECKING:
    from smtpbench.sink.server import SinkServer

RECEIVE_SIZE = 65536
#: RFC 5321 4.5.3.1.4: 512 octets including the CRLF.
COMMAND_LINE_MAX = 512
#: MAIL/RCPT lines may grow by the extension allowances (RFC 1870, 4954,
#: 6531, 3030, 3461) when those extensions are offered, as they are here.
PARAMETER_LINE_MAX = 512 + 26 + 500 + 10 + 16 + 100 + 500
#: RFC 4954 4 suggests 12288 octets for AUTH exchange lines; also our cap on
#: how much of an unterminated line is buffered before it is discarded.
AUTH_LINE_MAX = 12288

CMD, DATA, BDAT, AUTH, IGNORE = 0, 1, 2, 3, 4

LEGACY = frozenset({"SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN", "EXPN"})
BEFORE_EHLO_OK = frozenset({"NOOP", "RSET", "HELP", "VRFY", "EXPN"})

R_MAIL_OK = b"250 2.1.0 Sender OK\r\n"
R_RCPT_OK = b"250 2.1.5 Recipient OK\r\n"
R_OK = b"250 2.0.0 OK\r\n"
R_354 = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_NEED_EHLO = b"503 5.5.1 Error: send EHLO or HELO first\r\n"
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
R_RCPT_TEMP = b"450 4.2.1 Mailbox temporarily unavailable (test knob)\r\n"
R_RCPT_PERM = b"550 5.1.1 Mailbox unavailable (test knob)\r\n"
R_DATA_TEMP = b"451 4.3.0 Error: local error in processing (test knob)\r\n"
R_DATA_PERM = b"554 5.6.0 Error: message rejected (test knob)\r\n"
R_VRFY = b"252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery\r\n"
R_HELP = b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH\r\n"
R_NEED_TLS = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
R_AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
R_AUTH_FAIL = b"535 5.7.8 Error: authentication credentials invalid\r\n"
R_AUTH_CANCEL = b"501 5.0.0 Authentication cancelled\r\n"
R_AUTH_B64 = b"501 5.5.2 Error: invalid base64 data\r\n"
R_NON_ASCII_MAIL = b"550 5.6.7 Error: non-ASCII sender needs the SMTPUTF8 parameter\r\n"
R_NON_ASCII_RCPT = b"553 5.6.7 Error: non-ASCII recipient needs the SMTPUTF8 parameter\r\n"


_UNSHOWN = re.compile(r"[^\x21-\x7e]")


def _shown(text: str, limit: int = 40) -> str:
    """Client text made safe to echo in a reply: printable ASCII only, bounded."""
    return _UNSHOWN.sub("?", text[:limit])


def _literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


class Session:
    """The state of one connection; :meth:`run` serves it until QUIT, EOF, timeout or cancellation."""

    def __init__(self, server: SinkServer, stream: trio.SocketStream, conn_no: int) -> None:
        cfg = server.config
        self.srv = server
        self.cfg = cfg
        self.stats = server.stats
        self.faults = cfg.faults
        self.delays = server.delays
        self.raw_stream = stream
        self.stream: trio.abc.Stream = stream
        try:
            peer = stream.socket.getpeername()
            self.peer_ip = str(peer[0])
        except OSError:
            self.peer_ip = "0.0.0.0"
        self.peer_literal = _literal(self.peer_ip)
        self.out: list[bytes] = []
        self.mode = CMD
        self.closing = False
        self.discarding = False
        self.tls = False
        self.pending_tls = False
        self.flush_input = False
        self.greeted: str | None = None
        self.helo_name = ""
        self.auth_user: str | None = None
        self.auth_state: tuple[str, str] | None = None
        self.bad = 0
        self.p01: list[bytes] | None = None
        self.rng: random.Random | None = None
        if server.randomised:
            self.rng = random.Random(None if cfg.seed is None else cfg.seed * 1_000_003 + conn_no)
        self.idle = cfg.idle_timeout / 10 if self.faults and "TO-01" in self.faults else cfg.idle_timeout
        self.scope: trio.CancelScope | None = None
        self.pending_finish: tuple[int, bool, bytes | None, str] | None = None
        self._reset_transaction()

    # --- transaction state -----------------------------------------------

    def _reset_transaction(self) -> None:
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
        self.fdata: _FaultyData | None = None

    # --- the loop ------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection; never raises for peer misbehaviour, always closes the stream."""
        stats = self.stats
        stats.connections += 1
        stats.active += 1
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                scope.deadline = trio.current_time() + self.idle
                await self._serve()
            if scope.cancelled_caught and not self.closing:
                stats.idle_timeouts += 1
                if not (self.faults and "TO-01" in self.faults):
                    self.out.append(f"421 4.4.2 {self.cfg.hostname} Error: timeout exceeded\r\n".encode())
                    await self._final_flush()
        except trio.Cancelled:
            if not self.closing:
                with trio.CancelScope(shield=True):
                    await self._shutdown()
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError, trio.TooSlowError):
            stats.aborted_sessions += 1
        except Exception:
            # A bug must cost one session, not the whole sink; tests assert
            # that internal_errors stays 0 (tests/sinkutil.SinkThread).
            stats.internal_errors += 1
            traceback.print_exc(file=sys.stderr)
        finally:
            stats.active -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _shutdown(self) -> None:
        if self.faults and "TO-02" in self.faults:
            if self.mode == DATA and self.receiver is not None and self.rcpts:
                self._deliver(self.receiver.message(), "DATA")
            return
        self.out.clear()
        self.out.append(f"421 4.3.2 {self.cfg.hostname} Service shutting down, closing connection\r\n".encode())
        # The peer may already be gone; shutdown goes on regardless.
        with contextlib.suppress(Exception):
            await self._final_flush()

    async def _final_flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            with trio.move_on_after(1.0):
                await self.stream.send_all(data)

    async def _serve(self) -> None:
        faults = self.faults
        cfg = self.cfg
        if cfg.implicit_tls and not await self._handshake():
            return
        if self.delays:
            await self._delay("banner")
        if faults and "C-03" in faults:
            with trio.move_on_after(0.3):
                while await self.stream.receive_some(RECEIVE_SIZE):
                    pass
        if faults and "C-02" in faults:
            self.out.append(f"554 5.3.2 {cfg.hostname} No SMTP service here\r\n".encode())
            self.closing = True
            await self._final_flush()
            return
        self.out.append(self.srv.greeting)
        scope = self.scope
        assert scope is not None
        while not self.closing:
            if self.srv.gate.paused:  # the pause control: hold every reply (smtpbench.sink.downstream)
                await self.srv.gate.wait()
            if self.out:
                pending = b"".join(self.out)
                self.out.clear()
                await self.stream.send_all(pending)
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            scope.deadline = trio.current_time() + self.idle
            await self._feed(bytes(data))
        await self._final_flush()

    async def _delay(self, phase: str) -> None:
        seconds = self.delays.get(phase)
        if seconds:
            await trio.sleep(seconds)

    def _dropped(self) -> bool:
        """Draw the disconnect knob; True means: close now without replying."""
        if self.rng is not None and self.cfg.disconnect and self.rng.random() < self.cfg.disconnect:
            self.stats.disconnects_injected += 1
            self.closing = True
            return True
        return False

    async def _feed(self, buf: bytes) -> None:
        if self.buf_rest:
            buf = self.buf_rest + buf
            self.buf_rest = b""
        faults = self.faults
        if faults and "P-01" in faults and buf[:4].upper() == b"MAIL":
            self.p01 = []
        pos = 0
        n = len(buf)
        while pos < n and not self.closing:
            mode = self.mode
            if mode in (CMD, AUTH):
                if faults and "D-07" in faults:
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
                    self._bad(R_TOO_LONG)
                    continue
                self.stats.commands += 1
                if mode == AUTH:
                    self._auth_response(line)
                else:
                    await self._command(line)
                if self.pending_tls:
                    rest = buf[pos:]
                    if not await self._start_tls():
                        return
                    if faults and "T-04" in faults and rest:
                        buf, pos, n = rest, 0, len(rest)
                        continue
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
                    if self.pending_finish is not None:
                        args, self.pending_finish = self.pending_finish, None
                        await self._finish_message(*args)
                else:
                    assert self.receiver is not None
                    after = self.receiver.feed(chunk)
                    if after is not None:
                        await self._end_of_data()
                if after is not None:
                    if faults and "P-03" in faults:
                        after = b""
                    buf, pos, n = after, 0, len(after)
            elif mode == BDAT:
                take = min(self.bdat_left, n - pos)
                if self.bdat_error is None:
                    self.bdat_size += take
                    if self.bdat_buf is not None and self.bdat_size <= self.max_size_effective():
                        self.bdat_buf += buf[pos : pos + take]
                self.bdat_left -= take
                pos += take
                if self.bdat_left == 0:
                    await self._bdat_done()
            else:  # IGNORE: R-03 fault, input after QUIT is swallowed
                pos = n
        if pos < n and not self.closing:
            self.buf_rest = buf[pos:]
        if self.p01:
            self.out.extend(self.p01)
        self.p01 = None

    buf_rest = b""

    def max_size_effective(self) -> int:
        """The enforced message size limit (0: none)."""
        if self.faults and "D-04" in self.faults:
            return 60000 if not self.cfg.max_size else min(self.cfg.max_size, 60000)
        return self.cfg.max_size

    def _bad(self, reply: bytes) -> None:
        self.out.append(reply)
        self.stats.bad_commands += 1
        self.bad += 1
        faults = self.faults
        if (faults and "X-06" in faults) or self.bad >= self.cfg.max_bad_commands:
            self.out.append(f"421 4.7.0 {self.cfg.hostname} Error: too many errors\r\n".encode())
            self.closing = True

    # --- commands -------------------------------------------------------------

    async def _command(self, line: bytes) -> None:
        faults = self.faults
        size = len(line) + 2
        if size > COMMAND_LINE_MAX or (faults and "X-04" in faults and size > COMMAND_LINE_MAX - 2):
            head = line[:5].upper()
            allowed = (
                PARAMETER_LINE_MAX
                if head in (b"MAIL ", b"RCPT ")
                else AUTH_LINE_MAX
                if head == b"AUTH "
                else COMMAND_LINE_MAX
            )
            if faults and "X-04" in faults:
                allowed -= 2
            if size > allowed:
                self._bad(R_TOO_LONG)
                return
        if b"\r" in line or b"\n" in line:
            self._bad(R_BARE)
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        if not (faults and "E-05" in faults):
            verb = verb.upper()
        handler = _HANDLERS.get(verb)
        if handler is None:
            if not verb.strip() and not arg.strip():
                if faults and "X-01" in faults:
                    return
                self._bad(b"500 5.5.2 Error: empty command\r\n")
            elif verb in LEGACY and verb.upper() == verb:
                self._legacy(verb, arg)
            else:
                self._bad(R_UNKNOWN)
            return
        self.bad = 0
        if faults and "S-01" in faults and self.greeted is None and verb in BEFORE_EHLO_OK:
            self.out.append(R_NEED_EHLO)
            return
        if self.rng is not None and verb != "QUIT" and self._dropped():
            return
        await handler(self, arg)

    def _legacy(self, verb: str, arg: str) -> None:
        faults = self.faults
        if verb == "EXPN" and faults and "V-02" in faults:
            if not arg.strip():
                self.out.append(b"501 5.5.4 Syntax: EXPN list\r\n")
            else:
                self.out.append(b"250-2.1.5 postmaster\r\n250 2.1.5 root\r\n")
        elif verb == "ETRN" and faults and "LG-01" in faults:
            self.out.append(b"250 2.0.0 Queuing started\r\n")
        else:
            self.out.append(R_NOT_IMPL)

    async def _ehlo(self, arg: str) -> None:
        await self._hello(arg, "EHLO")

    async def _helo(self, arg: str) -> None:
        await self._hello(arg, "HELO")

    async def _hello(self, arg: str, verb: str) -> None:
        faults = self.faults
        if self.delays:
            await self._delay("ehlo")
        words = arg.split()
        if not words and not (faults and "E-02" in faults):
            self.out.append(f"501 5.5.4 Syntax: {verb} hostname\r\n".encode())
            return
        name = words[0] if words else ""
        if name and not syntax.valid_domain(name, allow_underscore=bool(faults and "X-05" in faults)):
            self.out.append(b"501 5.5.2 Error: invalid domain name or address literal\r\n")
            return
        if not (faults and "E-03" in faults):
            self._reset_transaction()
        self.greeted = verb
        self.helo_name = name
        if verb == "EHLO" or (faults and "E-01" in faults):
            self.out.append(self.srv.ehlo_reply(name, self.peer_literal, tls=self.tls, faults=faults))
        else:
            self.out.append(f"250 {self.cfg.hostname}\r\n".encode())

    async def _mail(self, arg: str) -> None:
        faults = self.faults
        if self.delays:
            await self._delay("mail")
        out = self.out
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if faults and "T-05" in faults and not self.tls:
            out.append(R_NEED_TLS)
            return
        if not faults and self.mail_from is None:
            simple = syntax.SIMPLE_MAIL.match(arg)
            if simple is not None:
                self.mail_from = arg[6:-1]
                out.append(R_MAIL_OK)
                return
        if self.mail_from is not None:
            if faults and "X-02" in faults:
                self._reset_transaction()
                out.append(b"501 5.5.4 Syntax error in MAIL command\r\n")
                return
            if not (faults and "S-04" in faults):
                out.append(R_NESTED)
                return
            self._reset_transaction()
        parsed = split_path(arg, "FROM")
        if parsed is None:
            out.append(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        path, tail = parsed
        params: dict[str, str | None] = {}
        size = -1
        body8 = binary = utf8 = False
        if tail:
            for name, value in split_params(tail):
                if name in params and not (faults and "N-01" in faults and name in ("RET", "ENVID")):
                    out.append(f"501 5.5.4 Error: duplicate {_shown(name)} parameter\r\n".encode())
                    return
                params[name] = value
                bad = self._mail_param(name, value)
                if bad is not None:
                    out.append(bad)
                    return
            raw_size = params.get("SIZE")
            if raw_size is not None and raw_size.isascii() and raw_size.isdigit():
                size = int(raw_size)
            body = (params.get("BODY") or "").upper()
            body8 = body == "8BITMIME"
            binary = body == "BINARYMIME"
            utf8 = "SMTPUTF8" in params
        if path:
            bad = self._check_address(path, utf8, sender=True)
            if bad is not None:
                out.append(bad)
                return
        elif faults and "A-01" in faults:
            out.append(b"553 5.1.7 Error: null sender not allowed\r\n")
            return
        limit = self.cfg.max_size
        if limit and size > limit and not (faults and "Z-01" in faults):
            out.append(R_SIZE_EXCEEDED)
            return
        self.mail_from = path
        self.mail_params = params
        self.utf8 = utf8
        self.body8 = body8
        self.binary = binary
        out.append(R_MAIL_OK)

    def _mail_param(self, name: str, value: str | None) -> bytes | None:
        faults = self.faults
        if name == "SIZE":
            if faults and "Z-02" in faults:
                return None
            if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
                return b"501 5.5.4 Error: SIZE needs 1 to 20 digits\r\n"
        elif name == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
                return b"501 5.5.4 Error: BODY must be 7BIT, 8BITMIME or BINARYMIME\r\n"
        elif name == "SMTPUTF8":
            if value is not None and not (faults and "B-02" in faults):
                return b"501 5.5.4 Error: SMTPUTF8 takes no value\r\n"
        elif name == "AUTH":
            if faults and "U-05" in faults and self.auth_user is None:
                return b"555 5.5.4 Error: AUTH parameter not accepted\r\n"
            if not value or not syntax.valid_xtext(value):
                return b"501 5.5.4 Error: AUTH needs an xtext mailbox or <>\r\n"
        elif name == "RET":
            if not (faults and "N-01" in faults) and (value is None or value.upper() not in ("FULL", "HDRS")):
                return b"501 5.5.4 Error: RET must be FULL or HDRS\r\n"
        elif name == "ENVID":
            if not (faults and "N-01" in faults) and (not value or len(value) > 100 or not syntax.valid_xtext(value)):
                return b"501 5.5.4 Error: ENVID must be xtext of at most 100 characters\r\n"
        elif not (faults and "B-04" in faults):
            return f"555 5.5.4 Error: unsupported parameter {_shown(name)}\r\n".encode()
        return None

    def _check_address(self, path: str, utf8: bool, *, sender: bool) -> bytes | None:
        """Syntax and charset checks shared by MAIL and RCPT; None when acceptable."""
        faults = self.faults
        code = "5.1.7" if sender else "5.1.3"
        what = "sender" if sender else "recipient"
        if faults and "A-04" in faults and len(path) > 64:
            return f"501 {code} Error: path too long\r\n".encode()
        stripped = syntax.strip_route(path)
        if stripped is None or (faults and "A-03" in faults and stripped[1]):
            return f"501 {code} Error: bad {what} address syntax\r\n".encode()
        mailbox = stripped[0]
        if not mailbox.isascii():
            if not utf8:
                return R_NON_ASCII_MAIL if sender else R_NON_ASCII_RCPT
            if faults and "B-03" in faults:
                return f"553 5.6.7 Error: non-ASCII {what} not supported\r\n".encode()
        local, domain = syntax.split_mailbox(mailbox)
        if sender:
            ok = (
                bool(domain)
                and syntax.valid_domain(domain, utf8=utf8, allow_underscore=bool(faults and "X-05" in faults))
                and syntax.valid_local_part(local, utf8=utf8)
            )
            return None if ok else f"501 {code} Error: bad {what} address syntax\r\n".encode()
        return None

    async def _rcpt(self, arg: str) -> None:
        if self.delays:
            await self._delay("rcpt")
        self._rcpt_reply(arg)
        if self.p01 is not None and self.out:
            self.p01.append(self.out.pop())

    def _rcpt_reply(self, arg: str) -> None:
        faults = self.faults
        out = self.out
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if self.mail_from is None:
            if not (faults and "S-02" in faults):
                out.append(R_NEED_MAIL)
                return
            self.mail_from = ""
        if not faults and self.rng is None:
            simple = syntax.SIMPLE_RCPT.match(arg)
            if (
                simple is not None
                and simple.group(2).lower() in self.srv.local_domains
                and len(self.rcpts) < self.cfg.max_recipients
            ):
                self.rcpts.append(arg[4:-1])
                self.stats.recipients_accepted += 1
                out.append(R_RCPT_OK)
                return
        parsed = split_path(arg, "TO")
        if parsed is None:
            out.append(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        path, tail = parsed
        if tail:
            seen: set[str] = set()
            lax = bool(faults and "N-01" in faults)
            for name, value in split_params(tail):
                if name in seen and not lax:
                    out.append(f"501 5.5.4 Error: duplicate {_shown(name)} parameter\r\n".encode())
                    return
                seen.add(name)
                if name == "NOTIFY":
                    if not lax and (value is None or not syntax.valid_notify(value)):
                        out.append(b"501 5.5.4 Error: NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY\r\n")
                        return
                elif name == "ORCPT":
                    if not lax and (value is None or len(value) > 500 or not syntax.valid_orcpt(value)):
                        out.append(b"501 5.5.4 Error: ORCPT must be addr-type;xtext\r\n")
                        return
                elif not (faults and "B-04" in faults):
                    out.append(f"555 5.5.4 Error: unsupported parameter {_shown(name)}\r\n".encode())
                    return
        if not path:
            out.append(b"501 5.1.3 Error: empty recipient\r\n")
            return
        bad = self._check_address(path, self.utf8, sender=False)
        if bad is not None:
            out.append(bad)
            return
        limit = 50 if faults and "L-01" in faults else self.cfg.max_recipients
        if len(self.rcpts) >= limit:
            if faults and "L-02" in faults:
                self.rcpts.clear()
            self.stats.recipients_rejected += 1
            out.append(R_TOO_MANY)
            return
        mailbox = syntax.strip_route(path)[0]  # type: ignore[index]  # checked above
        local, domain = syntax.split_mailbox(mailbox)
        if self._is_postmaster(local, domain):
            self.rcpts.append(path)
            self.stats.recipients_accepted += 1
            out.append(R_RCPT_OK)
            return
        if faults and "A-02" in faults and local.lower() == "postmaster":
            out.append(b"550 5.1.1 Error: user unknown\r\n")
            return
        if domain and not syntax.valid_domain(domain, utf8=self.utf8):
            out.append(b"501 5.1.3 Error: bad recipient address syntax\r\n")
            return
        plain_local = syntax.unquote_local(local)
        routed = any(c in plain_local for c in "@%!")
        if not syntax.valid_local_part(local, utf8=self.utf8) and not routed:
            out.append(b"501 5.1.3 Error: bad recipient address syntax\r\n")
            return
        foreign = routed or (domain and not self.srv.is_local_domain(domain))
        if foreign and self.auth_user is None and not (faults and "SEC-01" in faults):
            self.stats.recipients_rejected += 1
            out.append(R_RELAY)
            return
        rng = self.rng
        if rng is not None:
            cfg = self.cfg
            if cfg.reject_rcpt_temp or cfg.reject_rcpt_perm:
                draw = rng.random()
                if draw < cfg.reject_rcpt_temp:
                    self.stats.recipients_rejected += 1
                    out.append(R_RCPT_TEMP)
                    return
                if draw < cfg.reject_rcpt_temp + cfg.reject_rcpt_perm:
                    self.stats.recipients_rejected += 1
                    out.append(R_RCPT_PERM)
                    return
        self.rcpts.append(path)
        self.stats.recipients_accepted += 1
        out.append(R_RCPT_OK)

    def _is_postmaster(self, local: str, domain: str) -> bool:
        if self.faults and "A-02" in self.faults:
            return local == "postmaster" and bool(domain) and self.srv.is_local_domain(domain)
        return local.lower() == "postmaster" and (not domain or self.srv.is_local_domain(domain))

    async def _data(self, arg: str) -> None:
        faults = self.faults
        out = self.out
        if arg.strip():
            out.append(R_NO_ARGS)
            return
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if self.mail_from is None:
            out.append(R_NEED_MAIL)
            return
        if (self.bdat_used and not (faults and "K-02" in faults)) or self.binary:
            out.append(b"503 5.5.1 Error: DATA not allowed after BDAT or with BODY=BINARYMIME\r\n")
            return
        if not self.rcpts and not (faults and "S-03" in faults):
            out.append(R_NO_RCPT)
            return
        if self.delays:
            await self._delay("data")
        out.append(R_354)
        self.mode = DATA
        self.bdat_buf = None
        keep = self.srv.keeps_content
        if faults and faults & _DATA_FAULTS:
            self.fdata = _FaultyData(self)
        else:
            self.receiver = DataReceiver(keep=keep, max_size=self.max_size_effective())

    async def _end_of_data(self) -> None:
        receiver = self.receiver
        assert receiver is not None
        self.mode = CMD
        content: bytes | None = None
        if self.srv.keeps_content:
            content = bytes(receiver.content) if self.faults and "D-02" in self.faults else receiver.message()
        await self._finish_message(receiver.size, receiver.overflow, content, "DATA")

    async def _finish_message(self, size: int, overflow: bool, content: bytes | None, via: str) -> None:
        stats = self.stats
        if self.delays:
            await self._delay("data_end")
        if self.rng is not None and self._dropped():
            self._reset_transaction()
            return
        out = self.out
        cfg = self.cfg
        rng = self.rng
        if overflow:
            stats.messages_rejected_perm += 1
            out.append(R_SIZE_EXCEEDED)
        elif rng is not None and (cfg.reject_data_temp or cfg.reject_data_perm) and self._data_rejected(rng, out):
            pass
        elif not self.rcpts:
            # Only reachable with the S-03 / K-02 faults: nobody to deliver to.
            stats.messages_rejected_perm += 1
            out.append(R_NO_RCPT)
        else:
            stats.messages_accepted += 1
            stats.bytes_received += size
            mid = self.srv.next_id()
            downstream = self.srv.downstream  # blackhole and arrival reports (smtpbench.sink.downstream)
            if (downstream is None or downstream.accept(content, len(self.rcpts), rng)) and content is not None:
                self._deliver(content, via, mid)
            out.append(b"250 2.0.0 OK: queued as " + mid.encode() + b"\r\n")
        self._reset_transaction()

    def _data_rejected(self, rng: random.Random, out: list[bytes]) -> bool:
        cfg = self.cfg
        draw = rng.random()
        if draw < cfg.reject_data_temp:
            self.stats.messages_rejected_temp += 1
            out.append(R_DATA_TEMP)
            return True
        if draw < cfg.reject_data_temp + cfg.reject_data_perm:
            self.stats.messages_rejected_perm += 1
            out.append(R_DATA_PERM)
            return True
        return False

    def _deliver(self, content: bytes, via: str, mid: str | None = None) -> None:
        faults = self.faults
        mid = mid or self.srv.next_id()
        if faults and "B-01" in faults:
            content = bytes(b & 0x7F for b in content)
        if not (faults and "D-01" in faults):
            proto = ("ESMTP" if self.greeted == "EHLO" else "SMTP") + ("S" if self.tls else "")
            proto += "A" if self.auth_user else ""
            trace = (
                f"Received: from {self.helo_name or 'unknown'} ({self.peer_literal})\r\n"
                f"\tby {self.cfg.hostname} (smtpbench-sink) with {proto} id {mid};\r\n"
                f"\t{formatdate(usegmt=True)}\r\n"
            )
            content = trace.encode() + content
        self.srv.deliver(
            StoredMessage(
                id=mid,
                mail_from=self.mail_from or "",
                rcpt_to=list(self.rcpts),
                content=content,
                helo=self.helo_name,
                peer=self.peer_ip,
                tls=self.tls,
                auth_user=self.auth_user,
                via=via,
                mail_params=dict(self.mail_params),
            )
        )

    async def _bdat(self, arg: str) -> None:
        faults = self.faults
        parts = arg.split()
        if (
            not 1 <= len(parts) <= 2
            or not (parts[0].isascii() and parts[0].isdigit())
            or (len(parts) == 2 and parts[1].upper() != "LAST")
        ):
            self.out.append(b"501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n")
            return
        size = int(parts[0])
        last = len(parts) == 2
        error: bytes | None = None
        if self.greeted is None:
            error = R_NEED_EHLO
        elif self.mail_from is None:
            error = R_NEED_MAIL
        elif not self.rcpts:
            error = R_NO_RCPT_BDAT
        elif faults and "K-01" in faults and size == 0 and last:
            error = b"501 5.5.4 Error: chunk size must be positive\r\n"
        if error is not None and faults and "K-03" in faults:
            self.out.append(error)
            return
        self.bdat_error = error
        if error is None:
            self.bdat_used = True
            if self.bdat_buf is None:
                self.bdat_buf = bytearray() if self.srv.keeps_content else None
        self.bdat_left = size
        self.bdat_last = last
        self.mode = BDAT
        if size == 0:
            await self._bdat_done()

    async def _bdat_done(self) -> None:
        self.mode = CMD
        if self.bdat_error is not None:
            self.out.append(self.bdat_error)
            self.bdat_error = None
            return
        if not self.bdat_last:
            self.out.append(f"250 2.0.0 {self.bdat_size} octets received\r\n".encode())
            return
        limit = self.max_size_effective()
        overflow = bool(limit) and self.bdat_size > limit
        content = bytes(self.bdat_buf) if self.bdat_buf is not None else None
        await self._finish_message(self.bdat_size, overflow, content, "BDAT")

    async def _rset(self, arg: str) -> None:
        faults = self.faults
        if arg.strip() and not (faults and "X-03" in faults):
            self.out.append(R_NO_ARGS)
            return
        if not (faults and "R-01" in faults):
            self._reset_transaction()
        self.out.append(b"250 OK\r\n" if faults and "ES-01" in faults else R_OK)

    async def _noop(self, arg: str) -> None:
        faults = self.faults
        if faults:
            if "R-02" in faults and arg.strip():
                self.out.append(b"501 5.5.4 Syntax: NOOP\r\n")
                return
            if "P-02" in faults:
                self.flush_input = True
            if "ES-01" in faults:
                self.out.append(b"250 OK\r\n")
                return
        self.out.append(R_OK)

    async def _quit(self, arg: str) -> None:
        faults = self.faults
        if arg.strip():
            self.out.append(R_NO_ARGS)
            return
        if self.delays:
            await self._delay("quit")
        end = b"\n" if faults and "G-01" in faults else b"\r\n"
        self.out.append(f"221 2.0.0 {self.cfg.hostname} Service closing transmission channel".encode() + end)
        self.stats.sessions_completed += 1
        if faults and "R-03" in faults:
            self.mode = IGNORE
            return
        self.closing = True

    async def _vrfy(self, arg: str) -> None:
        if not arg.strip():
            self.out.append(b"501 5.5.4 Syntax: VRFY address\r\n")
        elif self.faults and "V-01" in self.faults:
            self.out.append(f"250 2.1.5 <{_shown(arg.strip(), 200)}>\r\n".encode())
        else:
            self.out.append(R_VRFY)

    async def _help(self, arg: str) -> None:
        if self.faults and "V-03" in self.faults:
            self.out.append(b"250 2.0.0 " + R_HELP[10:])
        else:
            self.out.append(R_HELP)

    async def _starttls(self, arg: str) -> None:
        faults = self.faults
        cfg = self.cfg
        if cfg.ssl_context is None or cfg.implicit_tls:
            self.out.append(R_NOT_IMPL)
        elif self.tls:
            self.out.append(b"503 5.5.1 Error: TLS already active\r\n")
        elif arg.strip() and not (faults and "T-02" in faults):
            self.out.append(b"501 5.5.4 Syntax: STARTTLS (no parameters)\r\n")
        else:
            self.out.append(b"220 2.0.0 Ready to start TLS\r\n")
            self.pending_tls = True

    async def _start_tls(self) -> bool:
        """Flush the 220, then do the handshake; the plaintext buffer is the caller's to drop."""
        self.pending_tls = False
        data = b"".join(self.out)
        self.out.clear()
        await self.stream.send_all(data)
        if self.faults and "T-01" in self.faults:
            self.closing = True
            return False
        if not await self._handshake():
            return False
        keep_state = self.faults and "T-03" in self.faults
        if not keep_state:
            self.greeted = None
            self.helo_name = ""
        self.auth_user = None
        self._reset_transaction()
        return True

    async def _handshake(self) -> bool:
        ctx = self.cfg.ssl_context
        assert ctx is not None
        tls = trio.SSLStream(self.stream, ctx, server_side=True, https_compatible=False)
        try:
            with trio.fail_after(self.cfg.tls_handshake_timeout):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError):
            self.stats.tls_failures += 1
            self.closing = True
            return False
        self.stats.tls_handshakes += 1
        self.stream = tls
        self.tls = True
        return True

    # --- AUTH -----------------------------------------------------------------

    def _auth_offered(self) -> bool:
        cfg = self.cfg
        if not cfg.auth_users:
            return False
        return self.tls or cfg.allow_plain_auth_without_tls or bool(self.faults and "U-01" in self.faults)

    async def _auth(self, arg: str) -> None:
        faults = self.faults
        out = self.out
        if not self.cfg.auth_users:
            out.append(R_NOT_IMPL)
            return
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if not self._auth_offered():
            out.append(R_NEED_TLS)
            return
        if self.auth_user is not None and not (faults and "U-04" in faults):
            out.append(b"503 5.5.1 Error: already authenticated\r\n")
            return
        if self.mail_from is not None:
            out.append(b"503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n")
            return
        parts = arg.split()
        if not parts or len(parts) > 2:
            out.append(b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n")
            return
        mech = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mech == "PLAIN":
            if initial is None:
                self.auth_state = ("PLAIN", "")
                self.mode = AUTH
                out.append(b"334 \r\n")
            else:
                self._auth_step("PLAIN", "", initial)
        elif mech == "LOGIN":
            if initial is None:
                self.auth_state = ("LOGIN-USER", "")
                self.mode = AUTH
                out.append(b"334 VXNlcm5hbWU6\r\n")
            else:
                self._auth_step("LOGIN-USER", "", initial)
        else:
            out.append(b"504 5.5.4 Error: unsupported authentication mechanism\r\n")

    def _auth_response(self, line: bytes) -> None:
        state = self.auth_state
        assert state is not None
        self.mode = CMD
        self.auth_state = None
        text = line.decode("ascii", "replace").strip()
        if text == "*":
            if self.faults and "U-02" in self.faults:
                self._auth_failed()
            else:
                self.out.append(R_AUTH_CANCEL)
            return
        self._auth_step(state[0], state[1], text)

    def _auth_step(self, step: str, user: str, response: str) -> None:
        try:
            decoded = b"" if response == "=" else b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            self.out.append(R_AUTH_B64)
            return
        if step == "LOGIN-USER":
            self.auth_state = ("LOGIN-PASS", decoded.decode("utf-8", "replace"))
            self.mode = AUTH
            self.out.append(b"334 UGFzc3dvcmQ6\r\n")
            return
        if step == "PLAIN":
            fields = decoded.split(b"\0")
            if len(fields) != 3:
                self.out.append(b"501 5.5.2 Error: malformed PLAIN response\r\n")
                return
            user = fields[1].decode("utf-8", "replace")
            password = fields[2].decode("utf-8", "replace")
        else:
            password = decoded.decode("utf-8", "replace")
        expected = self.cfg.auth_users.get(user)
        if expected is not None and expected == password:
            self.auth_user = user
            self.stats.auth_successes += 1
            self.out.append(R_AUTH_OK)
        else:
            self._auth_failed()

    def _auth_failed(self) -> None:
        self.stats.auth_failures += 1
        self.out.append(R_AUTH_FAIL)
        if self.faults and "U-03" in self.faults:
            self.out.append(f"421 4.7.0 {self.cfg.hostname} Error: too many authentication failures\r\n".encode())
            self.closing = True


_DATA_FAULTS = frozenset({"D-03", "D-05", "D-06", "D-08", "Z-03"})


class _FaultyData:
    """DATA reception with the data-phase faults; slow and simple on purpose."""

    def __init__(self, session: Session) -> None:
        self.s = session
        faults = session.faults
        self.buf = bytearray(b"\r\n")  # the DATA line's CRLF: an empty message ends at once
        self.scanned = 0
        self.ends = [b"\r\n.\r\n"]
        if "D-05" in faults:
            self.ends.append(b"\n.\n")
        if "D-06" in faults:
            self.ends.append(b"\n.\r\n")
        self.line_fault = "D-03" in faults
        self.line_reported = False
        self.eight_bit_fault = "D-08" in faults and not session.body8
        self.early_size = "Z-03" in faults
        self.size_reported = False

    def feed(self, chunk: bytes) -> bytes | None:
        s = self.s
        start = max(len(self.buf) - 4, 0)
        self.buf += chunk
        buf = self.buf
        if self.eight_bit_fault:
            for i in range(start, len(buf)):
                if buf[i] >= 0x80:
                    s.out.append(b"554 5.6.0 Error: 8-bit data without BODY=8BITMIME\r\n")
                    s.stats.messages_rejected_perm += 1
                    s._reset_transaction()
                    s.mode = CMD
                    nl = buf.find(b"\r\n", i)
                    return bytes(buf[nl + 2 :]) if nl >= 0 else b""
        found = -1
        found_len = 0
        for end in self.ends:
            idx = buf.find(end, max(start - 2, 0))
            if idx >= 0 and (found < 0 or idx < found):
                found, found_len = idx, len(end)
        body_end = found if found >= 0 else len(buf)
        if self.line_fault and not self.line_reported:
            lines = bytes(buf[:body_end]).split(b"\r\n")
            if any(len(line) + 2 > 1000 for line in lines[1:]):
                self.line_reported = True
                s.out.append(b"500 5.5.6 Error: line too long\r\n")
        limit = s.max_size_effective()
        if self.early_size and not self.size_reported and limit and body_end - 2 > limit:
            self.size_reported = True
            s.out.append(R_SIZE_EXCEEDED)
            s.stats.messages_rejected_perm += 1
        if found < 0:
            return None
        raw = bytes(buf[2 : found + 2]) if found >= 2 else b""
        rest = bytes(buf[found + found_len :])
        s.mode = CMD
        s.fdata = None
        if self.size_reported:
            s._reset_transaction()
            return rest
        content = raw[1:] if raw.startswith(b"..") else raw
        content = content.replace(b"\r\n..", b"\r\n.")
        overflow = bool(limit) and len(raw) > limit
        s.pending_finish = (len(raw), overflow, content if s.srv.keeps_content else None, "DATA")
        return rest


_HANDLERS = {
    "EHLO": Session._ehlo,
    "HELO": Session._helo,
    "MAIL": Session._mail,
    "RCPT": Session._rcpt,
    "DATA": Session._data,
    "BDAT": Session._bdat,
    "RSET": Session._rset,
    "NOOP": Session._noop,
    "QUIT": Session._quit,
    "VRFY": Session._vrfy,
    "HELP": Session._help,
    "STARTTLS": Session._starttls,
    "AUTH": Session._auth,
}
