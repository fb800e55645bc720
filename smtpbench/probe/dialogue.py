"""One probe over the network: connect, greeting, EHLO, TLS, AUTH, one transaction, QUIT.

Theory of operation
-------------------
The dialogue drives an :class:`~smtpbench.net.connection.SMTPConnection`
through the client state machine (:mod:`smtpbench.protocol.state`), so every
reply is paired with the command it answers exactly as in the load engine,
pipelined groups included.  Each line goes to the :class:`Transcript` the
moment it is sent or its reply is complete.

Each step either succeeds or ends the dialogue by raising :class:`_Stop`
with the :class:`~smtpbench.probe.model.Outcome`: a refusal carries the
deciding reply, a failure (no connection, timeout, broken TLS...) its
reason.  Whatever happened, the connection is closed at the end: with QUIT
when the session can still take one, without it otherwise (after a 421, or
after a 354 when ``--quit-after data`` abandons the message).  Every wait is
bounded by ``--timeout``.
"""

from __future__ import annotations

import ssl

import trio

from smtpbench.net.connection import SMTPConnection, connect_tcp, resolve
from smtpbench.net.errors import ConnectionClosed, SessionError, SessionTimeout, TLSHandshakeError, classify
from smtpbench.net.tls import client_context
from smtpbench.probe.annotate import auth_shown, cert_facts, ehlo_notes, validity_note
from smtpbench.probe.certinfo import decode_der
from smtpbench.probe.model import EXIT_ACCEPTED, EXIT_BROKEN, EXIT_CONNECT, EXIT_TLS, STEP_EXIT, Outcome, TLSFacts
from smtpbench.probe.options import ProbeOptions
from smtpbench.probe.transcript import Transcript
from smtpbench.protocol import commands, sasl
from smtpbench.protocol.errors import SMTPProtocolError
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.state import ClientProtocol, State

#: Largest BDAT chunk (RFC 3030 sets no limit; 64 KiB keeps each write and each reply wait short).
CHUNK_SIZE = 65536
#: Message lines shown in the transcript before the rest is summarised.
SHOWN_MESSAGE_LINES = 30
#: The longest wait for the reply to QUIT and for the server to close.
CLOSE_WAIT = 5.0
#: How long a session closed by a 421 is watched for what the server still sends.
DRAIN_WAIT = 1.0

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_STEP_OF = {"MAIL": "mail", "RCPT": "rcpt", "DATA": "data"}


class _Stop(Exception):
    """Ends the dialogue with ``outcome``; ``polite`` says whether a QUIT may still be sent."""

    def __init__(self, outcome: Outcome, polite: bool = True) -> None:
        super().__init__(outcome.line())
        self.outcome = outcome
        self.polite = polite


class Dialogue:
    """The one session of a probe; :meth:`run` returns its outcome and never raises for network trouble."""

    def __init__(self, opts: ProbeOptions, transcript: Transcript, message: bytes) -> None:
        self.o = opts
        self.tr = transcript
        self.message = message
        self.conn: SMTPConnection | None = None
        self.step = "connect"

    # ------------------------------------------------------------ outcomes

    def _refused(self, reply: Reply, step: str | None = None, reason: str = "", polite: bool = True) -> _Stop:
        step = step or self.step
        text = reply.lines[0] if reply.lines else ""
        if not polite:
            self.tr.info("the server is waiting for message text after its 354: closing without QUIT")
        return _Stop(Outcome(step, "refused", STEP_EXIT[step], reason, reply.code, text), polite)

    def _failed(self, reason: str, code: int | None = None, polite: bool = False) -> _Stop:
        if code is None:
            code = EXIT_CONNECT if self.step in ("connect", "banner") else EXIT_BROKEN
        self.tr.info(reason, failure=True)
        return _Stop(Outcome(self.step, "failed", code, reason), polite)

    def _stopped(self, polite: bool = True) -> _Stop:
        return _Stop(Outcome(self.step, "stopped", EXIT_ACCEPTED, f"--quit-after {self.step}"), polite)

    # ------------------------------------------------------------ I/O

    @property
    def _c(self) -> SMTPConnection:
        assert self.conn is not None
        return self.conn

    async def _write(self, data: bytes) -> None:
        try:
            with trio.fail_after(self.o.timeout):
                await self._c.send_raw(data)
        except trio.TooSlowError:
            raise self._failed(f"the server took no data for {self.o.timeout:g}s") from None
        except _TRANSPORT_ERRORS as exc:
            raise self._failed(f"connection lost while sending: {classify(exc)}") from None

    async def _send(self, verb: str, line: bytes, shown: str | None = None) -> None:
        """Show and send one command through the state machine."""
        self.tr.sent(shown if shown is not None else line.decode("utf-8", "replace").rstrip("\r\n"), verb)
        await self._write(self._c.protocol.send(verb, line))

    async def _reply(self, timeout: float | None = None) -> tuple[str, Reply]:
        """The next reply, shown with its annotation; transport trouble ends the dialogue."""
        try:
            verb, reply = await self._c.next_reply(timeout or self.o.timeout, self.step)
        except SessionTimeout:
            raise self._failed(f"no reply within {timeout or self.o.timeout:g}s") from None
        except ConnectionClosed:
            raise self._failed("the server closed the connection") from None
        except SMTPProtocolError as exc:
            raise self._failed(f"protocol error: {exc}") from None  # malformed, unsolicited or out of step
        except _TRANSPORT_ERRORS as exc:
            raise self._failed(f"connection lost: {classify(exc)}") from None
        self.tr.received(verb, reply, ehlo_notes(reply) if verb == "EHLO" and reply.code == 250 else None)
        if verb == "UNSOLICITED":
            raise self._refused(reply, reason="the server closed the session unasked")
        return verb, reply

    async def _command(self, verb: str, line: bytes, shown: str | None = None) -> Reply:
        await self._send(verb, line, shown)
        return (await self._reply())[1]

    # ------------------------------------------------------------ the dialogue

    async def run(self) -> Outcome:
        """Carry out the probe; the outcome says how far it got and why it ended."""
        polite = True
        try:
            outcome = await self._dialogue()
        except _Stop as stop:
            outcome, polite = stop.outcome, stop.polite
        if self.conn is not None:
            await self._close(polite)
        outcome.total = self.tr.now()
        return outcome

    async def _dialogue(self) -> Outcome:
        o = self.o
        await self._connect()
        if o.quit_after == "connect":  # the TCP connection only: an implicit-TLS handshake is the tls step
            raise self._stopped(polite=False)  # no greeting read: a QUIT now would be out of turn
        if o.tls == "implicit":
            await self._handshake()
        self.step = "banner"
        _, greeting = await self._reply()
        if greeting.code != 220:
            raise self._refused(greeting)
        if o.quit_after == "banner":
            raise self._stopped()
        self.step = "ehlo"
        await self._ehlo()
        if o.tls == "starttls":
            if o.quit_after == "ehlo":
                raise self._stopped()
            self.step = "tls"
            await self._starttls()
            self.step = "ehlo"
            await self._ehlo()
            self.step = "tls"
        if o.quit_after in ("ehlo", "tls"):
            self.step = o.quit_after
            raise self._stopped()
        if o.auth_user is not None:
            self.step = "auth"
            await self._auth()
            if o.quit_after == "auth":
                raise self._stopped()
        self.step = "mail"
        return await self._transaction()

    async def _connect(self) -> None:
        o = self.o
        self.tr.begin()
        self.tr.info(f"connecting to {o.target}" + (" (implicit TLS)" if o.tls == "implicit" else ""))
        try:
            with trio.fail_after(o.timeout):
                family, addr = await resolve(o.host, o.port)
                stream = await connect_tcp(family, addr)
        except trio.TooSlowError:
            raise self._failed(f"no connection within {o.timeout:g}s") from None
        except OSError as exc:
            raise self._failed(f"cannot connect: {classify(exc)}: {exc.strerror or exc}") from None
        self.conn = SMTPConnection(stream, ClientProtocol())
        peer, local = stream.socket.getpeername(), stream.socket.getsockname()
        self.tr.info(f"connected to {_addr(peer)} from {_addr(local)}")

    async def _ehlo(self) -> None:
        reply = await self._command("EHLO", commands.ehlo(self.o.helo))
        if reply.code in (500, 502):
            self.tr.info("EHLO not understood: falling back to HELO, without extensions (RFC 5321 3.2)")
            reply = await self._command("HELO", commands.helo(self.o.helo))
        if reply.code != 250:
            raise self._refused(reply)
        self.tr.extensions = dict(self._c.protocol.extensions)

    async def _starttls(self) -> None:
        if "STARTTLS" not in self._c.protocol.extensions:
            raise self._failed("the server does not offer STARTTLS", EXIT_TLS, polite=True)
        reply = await self._command("STARTTLS", commands.STARTTLS)
        if reply.code != 220:
            raise self._refused(reply)
        await self._handshake()

    async def _handshake(self) -> None:
        o = self.o
        trust = "off (--insecure)" if o.insecure else (f"CA file {o.ca_file}" if o.ca_file else "system CA store")
        self.tr.info(f"TLS handshake with {o.host}, certificate check: {trust}")
        step, self.step = self.step, "tls"
        try:
            await self._c.start_tls(client_context(o.ca_file, o.insecure), o.host, o.timeout)
        except (TLSHandshakeError, SessionTimeout) as exc:
            raise self._failed(_tls_reason(exc), EXIT_TLS) from None
        self.step = step
        stream = self._c.stream
        assert isinstance(stream, trio.SSLStream)
        cipher = stream.cipher()
        facts = TLSFacts(
            version=stream.version(), cipher=cipher[0] if cipher else None, bits=cipher[2] if cipher else None
        )
        cert = stream.getpeercert()
        if cert:
            cert_facts(cert, facts)
            facts.verified = True
        else:
            der = stream.getpeercert(binary_form=True)
            facts.verify_error = "not checked (--insecure)"
            try:
                if der:
                    cert_facts(decode_der(der), facts)
            except (ValueError, IndexError):
                facts.verify_error += "; the certificate could not be decoded"
            note = validity_note(facts)
            if note:
                facts.verify_error += f"; {note}"
        self.tr.tls_established(facts)

    async def _auth(self) -> None:
        o = self.o
        user, password = o.auth_user or "", o.password or ""
        offered = self._c.protocol.extensions.get("AUTH")
        if offered is None:
            hint = " (many servers offer it only after STARTTLS)" if o.tls == "none" else ""
            raise self._failed(f"the server does not offer AUTH{hint}", STEP_EXIT["auth"], polite=True)
        mechs = offered.upper().split()
        usable = [m for m in sasl.MECHANISMS if m not in sasl.TOKEN_MECHANISMS]  # a password is not a token
        mech = o.auth_mechanism or next((m for m in usable if m in mechs), None)
        if mech is None:
            raise self._failed(
                f"no mechanism in common: the server offers {offered or 'none'}, smtpbench speaks " + ", ".join(usable),
                STEP_EXIT["auth"],
                polite=True,
            )
        if mech not in mechs:
            self.tr.info(f"{mech} is not among the offered mechanisms ({offered}); trying it as asked")
        if o.tls == "none":
            self.tr.info("warning: AUTH without TLS: the password crosses the network readable (base64 is no cipher)")
        client = sasl.client(mech, user, password)
        first = client.initial()
        line = f"AUTH {mech} {first}" if first is not None else f"AUTH {mech}"
        reply = await self._command("AUTH", f"{line}\r\n".encode(), auth_shown(line, user, password))
        try:
            while reply.code == 334 and client.round < client.rounds:
                token = client.respond(reply.text)
                reply = await self._command("AUTH_RESPONSE", f"{token}\r\n".encode(), auth_shown(token, user, password))
            if reply.code == 235:
                client.finish(reply.text)
        except sasl.SASLError as exc:
            if reply.code == 334:
                await self._command("AUTH_RESPONSE", b"*\r\n", "*")
            raise self._failed(f"AUTH {mech} failed: {exc}", STEP_EXIT["auth"], polite=True) from None
        if reply.code == 334:  # the server wants more than this mechanism gives: cancel (RFC 4954 4)
            cancel = await self._command("AUTH_RESPONSE", b"*\r\n", "*")
            raise self._refused(cancel, reason=f"the server asked for more after the {mech} exchange")
        if reply.code != 235:
            raise self._refused(reply)
        self.tr.info(f"authenticated as {user!r} with {mech}")

    async def _transaction(self) -> Outcome:
        o = self.o
        ext = self._c.protocol.extensions
        params: dict[str, str | None] = {}
        if "SIZE" in ext:  # declare the size up front (RFC 1870): an over-size message is refused before it is sent
            params["SIZE"] = str(len(self.message))
        if "8BITMIME" in ext and any(b > 127 for b in self.message):
            params["BODY"] = "8BITMIME"  # RFC 6152: 8-bit octets only when declared
        group: list[tuple[str, bytes]] = [("MAIL", commands.mail_from(o.sender, params))]
        if o.reaches("rcpt"):
            group += [("RCPT", commands.rcpt_to(r)) for r in o.recipients]
        if o.reaches("data") and not o.chunking:
            group.append(("DATA", commands.DATA))
        pipelined = len(group) > 1 and (o.pipelining == "on" or (o.pipelining == "auto" and "PIPELINING" in ext))
        replies: list[tuple[str, Reply]] = []
        if pipelined:
            if "PIPELINING" not in ext:
                self.tr.info("the server does not offer PIPELINING; pipelining anyway (--pipelining on)")
            self.tr.info(f"sending {len(group)} commands as one pipelined group (RFC 2920)")
            for verb, line in group:
                self.tr.sent(line.decode("utf-8", "replace").rstrip("\r\n"), verb)
            await self._write(b"".join(self._c.protocol.send(v, line) for v, line in group))
            while len(replies) < len(group) and self._c.protocol.state is not State.CLOSED:
                self.step = _STEP_OF[group[len(replies)][0]]
                replies.append(await self._reply())
        else:
            for verb, line in group:
                if self._c.protocol.state is State.CLOSED:
                    break  # a 421 ended the session
                if verb == "DATA" and not any(v == "RCPT" and r.code < 400 for v, r in replies):
                    break  # no recipient accepted: no DATA (RFC 5321 3.3)
                self.step = _STEP_OF[verb]
                replies.append((verb, await self._command(verb, line)))
                if verb == "MAIL" and replies[-1][1].code >= 400:
                    break
        return await self._judge_envelope(replies)

    async def _judge_envelope(self, replies: list[tuple[str, Reply]]) -> Outcome:
        o = self.o
        closing = next(((v, r) for v, r in replies if r.code == 421), None)
        if closing is not None:  # the server is going away: nothing after it counts
            raise self._refused(closing[1], _STEP_OF[closing[0]], "the server closed the session")
        mail = replies[0][1]
        data = next((r for v, r in replies if v == "DATA"), None)
        # A 354 after a refused envelope (a broken pipelining server) leaves the server reading message
        # text: a QUIT would be taken as such, and a "." could deliver an empty message.  Hang up instead.
        polite = data is None or data.code != 354
        if mail.code >= 400:
            raise self._refused(mail, "mail", polite=polite)
        self.step = "mail"
        if not o.reaches("rcpt"):
            raise self._stopped()
        rcpts = [r for v, r in replies if v == "RCPT"]
        refused = [r for r in rcpts if r.code >= 400]
        if len(rcpts) < len(o.recipients) or len(refused) == len(rcpts):
            self.step = "rcpt"
            raise self._refused(refused[0] if refused else mail, "rcpt", "no recipient accepted", polite=polite)
        self.step = "rcpt"
        partial = f"the message is for {len(rcpts) - len(refused)} of {len(rcpts)} recipients" if refused else ""
        if not o.reaches("data"):
            if refused:
                raise self._refused(refused[0], "rcpt", partial)
            raise self._stopped()
        self.step = "data"
        final = await (self._bdat() if o.chunking else self._data(replies))
        if final.code >= 400:
            raise self._refused(final, "data")
        if refused:
            raise self._refused(refused[0], "rcpt", f"{partial}; the message itself was accepted")
        return Outcome("data", "accepted", EXIT_ACCEPTED, "", final.code, final.lines[0] if final.lines else "")

    async def _data(self, replies: list[tuple[str, Reply]]) -> Reply:
        data = next((r for v, r in replies if v == "DATA"), None)
        if data is None:
            raise self._failed("no reply to DATA")
        if data.code != 354:
            raise self._refused(data, "data")
        if self.o.quit_after == "data":
            self.tr.info("closing without sending the message: the server must discard the transaction")
            raise self._stopped(polite=False)  # after a 354, QUIT would be taken as message text
        self._show_message(self.message)
        self.tr.sent(".", "DATA_END")
        await self._write(self._c.protocol.send("DATA_END", commands.encode_data(self.message)))
        return (await self._reply())[1]

    async def _bdat(self) -> Reply:
        if "CHUNKING" not in self._c.protocol.extensions:
            self.tr.info("the server does not offer CHUNKING; sending BDAT anyway (--chunking)")
        if self.o.quit_after == "data":
            raise self._stopped()
        chunks = [self.message[i : i + CHUNK_SIZE] for i in range(0, len(self.message), CHUNK_SIZE)] or [b""]
        reply: Reply | None = None
        for n, chunk in enumerate(chunks, 1):
            last = n == len(chunks)
            verb, line = ("BDAT_LAST", f"BDAT {len(chunk)} LAST") if last else ("BDAT", f"BDAT {len(chunk)}")
            self.tr.sent(line, verb)
            self._show_message(chunk, chunk_of=len(chunk))
            await self._write(self._c.protocol.send(verb, f"{line}\r\n".encode()) + chunk)
            reply = (await self._reply())[1]
            if reply.code >= 400:
                break
        assert reply is not None
        return reply

    def _show_message(self, data: bytes, chunk_of: int | None = None) -> None:
        lines = data.split(b"\r\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for line in lines[:SHOWN_MESSAGE_LINES]:
            self.tr.sent(line.decode("utf-8", "replace"))
        if len(lines) > SHOWN_MESSAGE_LINES:
            rest = lines[SHOWN_MESSAGE_LINES:]
            self.tr.info(f"… {len(rest)} more lines ({sum(len(x) + 2 for x in rest)} octets) not shown")
        what = f"chunk of {chunk_of} octets" if chunk_of is not None else f"message of {len(data)} octets"
        self.tr.info(f"{what}, {len(lines)} lines")

    async def _close(self, polite: bool) -> None:
        """QUIT when the session can take it (reading the 221), then close; bounded by :data:`CLOSE_WAIT`."""
        conn = self._c
        wait = min(self.o.timeout, CLOSE_WAIT)
        try:
            if polite and conn.protocol.can_send("QUIT"):
                self.step = "quit"
                await self._send("QUIT", commands.QUIT)
                await self._reply(wait)
            elif polite:
                await self._drain(min(wait, DRAIN_WAIT))
        except _Stop:
            pass
        await conn.aclose()
        self.tr.info("connection closed")

    async def _drain(self, wait: float) -> None:
        """Show what a closed session (after a 421) still sent, until the server closes or ``wait`` passes."""
        with trio.move_on_after(wait):
            while True:
                try:
                    verb, reply = await self._c.next_reply(wait, "quit")
                except (SessionError, SMTPProtocolError, *_TRANSPORT_ERRORS):
                    return
                self.tr.received(verb, reply)


def _addr(sockaddr: tuple[object, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _tls_reason(exc: Exception) -> str:
    """Why the handshake failed, in words: a certificate verification failure names OpenSSL's reason."""
    if isinstance(exc, SessionTimeout):
        return str(exc)
    cause: BaseException | None = exc
    for _ in range(6):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"certificate not verified: {cause.verify_message} "
                "(--ca-file to trust a private CA, --insecure to look anyway)"
            )
        if cause is None:
            break
        cause = cause.__cause__ or cause.__context__
    return str(exc)
