"""Sessions for conformance checks: raw commands, bounded reads, evidence.

A :class:`Probe` is what one check gets: it opens :class:`Session` objects
(each an :class:`~smtpbench.net.connection.SMTPConnection` with ``raw_log``
on), fills placeholders from the options, and keeps every
:class:`Exchange` so that the runner can grade reply hygiene (G-01) over
all traffic and write transcripts.

Sessions bypass the client state machine on purpose: checks send commands
out of order, malformed, or several in one write.  Every read is bounded by
the per-reply timeout; silence, a close, a reset or a malformed reply is
recorded on the exchange (``closed``, ``timed_out``, ``error``), never raised,
so a check always gets to judge what happened.  Only failures to *start* a
session (connect, greeting, EHLO, TLS) raise :class:`CheckAborted`, which the
runner turns into an ``error`` verdict.
"""

from __future__ import annotations

from collections import deque

import trio

from smtpbench.conform.evidence import render_log

# Re-exported: the checks import these from here (they live in exchange.py to keep this module small).
from smtpbench.conform.exchange import CheckAborted as CheckAborted
from smtpbench.conform.exchange import DeliveryOracle as DeliveryOracle
from smtpbench.conform.exchange import Exchange as Exchange
from smtpbench.conform.exchange import verb_of as verb_of
from smtpbench.conform.model import Check
from smtpbench.conform.options import ConformOptions
from smtpbench.net.connection import SMTPConnection, connect_tcp, resolve
from smtpbench.net.errors import ConnectionClosed, classify
from smtpbench.net.tls import client_context
from smtpbench.protocol.errors import SMTPProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.protocol.state import parse_ehlo

#: How long QUIT waits for the server to close the connection (4.1.1.10: at once).
CLOSE_WAIT = 5.0

#: Connection budgets (README "Verdicts"): common anti-abuse limits close a session after 3 syntax or
#: protocol errors (Exim smtp_max_synprot_errors, smtp_max_unknown_commands) or 10 non-mail commands
#: (smtp_accept_max_nonmail); probes stay below them so that a limit never decides a verdict.
ERROR_BUDGET = 2
#: Back-off between retries of a refused connection or a 421/closed greeting (seconds, bounded).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
NONMAIL_BUDGET = 8
#: Replies that count as an error-provoking command (syntax, sequence, not implemented, parameters).
ERROR_CODES = frozenset({500, 501, 502, 503, 504, 555})
#: Commands that anti-abuse counters treat as "non-mail" (and any unknown verb).
MAIL_VERBS = frozenset({"MAIL", "RCPT", "DATA", "DATA_END", "BDAT", "QUIT", "STARTTLS", "AUTH", "AUTH_RESPONSE"})


class Session:
    """One connection of a check."""

    def __init__(self, probe: Probe, conn: SMTPConnection) -> None:
        self.probe = probe
        self.conn = conn
        self.parser = ReplyParser()
        self.pending: deque[Reply] = deque()
        self.exchanges: list[Exchange] = []
        self.greeting: Reply | None = None
        self.extensions: dict[str, str] = {}
        self.closed = False
        self.quit_sent = False
        self.error: str | None = None
        #: Replies that arrived when none was due (judged by G-01).
        self.unsolicited: list[tuple[Exchange | None, Reply]] = []
        self.secrets: set[bytes] = set()
        #: Error-provoking and non-mail commands sent so far (the connection budget).
        self.errors = 0
        self.nonmail = 0
        #: A read timed out: a late reply may still come, so the session is out of step.
        self.out_of_step = False

    def spent(self, errors: int = 1, nonmail: int = 1) -> bool:
        """True when ``errors`` more error-provoking or ``nonmail`` more non-mail commands would exceed the budget."""
        return (
            self.closed
            or self.out_of_step
            or self.errors + errors > ERROR_BUDGET
            or self.nonmail + nonmail > NONMAIL_BUDGET
        )

    def _count(self, ex: Exchange) -> None:
        if ex.verb not in MAIL_VERBS and ex.verb not in ("CONNECT", "EHLO_FIRST"):
            self.nonmail += 1
        self.errors += sum(1 for c in ex.codes if c in ERROR_CODES)

    @property
    def timeout(self) -> float:
        """The per-reply timeout in seconds."""
        return self.probe.options.timeout

    async def _fill(self, count: int, timeout: float) -> bool:
        """Read until ``count`` replies are pending; True when the deadline passed first."""
        with trio.move_on_after(timeout) as scope:
            while len(self.pending) < count and not self.closed:
                try:
                    data = await self.conn.receive_raw()
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self.closed = True
                    break
                try:
                    self.pending.extend(self.parser.feed(data))
                except SMTPProtocolError as exc:
                    self.error = str(exc)
                    self.closed = True
                    break
        return scope.cancelled_caught

    async def _write(self, data: bytes, secret: bool) -> bool:
        if self.closed:
            return False
        if secret:
            self.secrets.add(data)
        try:
            with trio.fail_after(self.timeout):
                await self.conn.send_raw(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError):
            self.closed = True
            return False
        return True

    def _take_stray(self) -> None:
        # Replies read but not consumed before a new write were not asked for.
        last = self.exchanges[-1] if self.exchanges else None
        while self.pending:
            self.unsolicited.append((last, self.pending.popleft()))

    async def read(self, ex: Exchange, count: int, timeout: float | None = None) -> Exchange:
        """Read up to ``count`` more replies into ``ex`` (bounded; never raises)."""
        want = len(ex.replies) + count
        ex.wanted = max(ex.wanted, want)
        timed_out = await self._fill(count, self.timeout if timeout is None else timeout)
        while self.pending and len(ex.replies) < want:
            ex.replies.append(self.pending.popleft())
        ex.timed_out = ex.timed_out or (timed_out and len(ex.replies) < want)
        self.out_of_step = self.out_of_step or ex.timed_out
        ex.closed = self.closed
        ex.error = self.error
        return ex

    async def cmd(
        self,
        line: str | bytes,
        *,
        raw: bool = False,
        verb: str | None = None,
        replies: int = 1,
        timeout: float | None = None,
        secret: bool = False,
    ) -> Exchange:
        """Send ``line`` in one write (CRLF appended unless ``raw``) and read ``replies`` replies.

        Placeholders in a ``str`` line are filled (:meth:`Probe.fill`).  The
        returned exchange always comes back: check ``code``/``closed``.
        """
        data = self.probe.fill(line).encode("utf-8") if isinstance(line, str) else line
        if not raw:
            data += b"\r\n"
        return await self.send(data, verb=verb, replies=replies, timeout=timeout, secret=secret)

    async def send(
        self,
        data: bytes,
        *,
        verb: str | None = None,
        replies: int = 0,
        timeout: float | None = None,
        secret: bool = False,
    ) -> Exchange:
        """Write ``data`` exactly as given, in one write, then read ``replies`` replies.

        After a reply timeout the session is out of step: a late reply is
        collected first (as unsolicited) so that it is never pinned on this command.
        """
        if self.out_of_step and not self.closed:
            await self._fill(len(self.pending) + 1, self.probe.options.quiet_wait)
        self._take_stray()
        ex = Exchange(data, verb if verb is not None else verb_of(data), secret=secret, wanted=replies)
        self.exchanges.append(ex)
        if not await self._write(data, secret):
            ex.closed = True
            ex.error = self.error
            return ex
        if replies:
            await self.read(ex, replies, timeout)
            self._count(ex)
        return ex

    async def extra(self, ex: Exchange, wait: float | None = None) -> list[Reply]:
        """Wait briefly for replies beyond those already read for ``ex``; return them (added to ``ex``)."""
        before = len(ex.replies)
        wanted = ex.wanted
        timed_out = ex.timed_out
        in_step = not self.out_of_step
        await self.read(ex, 1, timeout=min(self.probe.options.quiet_wait, self.timeout) if wait is None else wait)
        while self.pending:
            ex.replies.append(self.pending.popleft())
        ex.wanted = wanted
        # Silence while waiting for replies that should not come is not a timeout; an earlier one stays.
        ex.timed_out = timed_out
        if in_step:
            # Waiting for replies that should not come is not a reply timeout.
            self.out_of_step = False
        return ex.replies[before:]

    async def read_greeting(self) -> Exchange:
        """Read the greeting (an exchange with nothing sent, verb ``CONNECT``)."""
        ex = Exchange(b"", "CONNECT")
        self.exchanges.append(ex)
        await self.read(ex, 1)
        self.greeting = ex.reply
        return ex

    async def ehlo(self, name: str | None = None) -> Exchange:
        """Send EHLO and record the advertised extensions (keywords upper-cased)."""
        ex = await self.cmd(f"EHLO {name or self.probe.options.helo}")
        if ex.reply is not None and ex.reply.code == 250:
            self.extensions = parse_ehlo(ex.reply)
        return ex

    async def starttls(self) -> Exchange:
        """STARTTLS, the handshake and a new EHLO; raises :class:`CheckAborted` when any of it fails."""
        ex = await self.cmd("STARTTLS")
        if ex.code != 220:
            raise CheckAborted(f"STARTTLS got {ex.outcome}")
        await self._handshake()
        self.extensions = {}
        ehlo = await self.ehlo()
        if ehlo.code != 250:
            raise CheckAborted(f"EHLO after STARTTLS got {ehlo.outcome}")
        return ex

    async def _handshake(self) -> None:
        # Plaintext bytes received after the 220 must not be read as TLS-protected replies.
        self.pending.clear()
        self.parser = ReplyParser()
        opts = self.probe.options
        # Opportunistic TLS, as MTAs do it: the certificate is verified only when --ca-file asks for it;
        # its problems are T-07's finding, never a reason to abort another check.
        ctx = client_context(opts.ca_file, opts.insecure or not opts.ca_file)
        try:
            await self.conn.start_tls(ctx, opts.host, self.timeout)
        except Exception as exc:  # ssl and stream errors alike: the check cannot go on
            self.closed = True
            raise CheckAborted(f"TLS handshake failed: {classify(exc)}: {exc}") from None

    async def quit(self) -> Exchange:
        """Send QUIT, read the reply, then anything else until the server closes (bounded)."""
        ex = await self.cmd("QUIT")
        self.quit_sent = True
        if not self.closed:
            await self.wait_closed(min(self.timeout, CLOSE_WAIT))
        self._take_stray()
        return ex

    async def wait_closed(self, timeout: float) -> bool:
        """True when the server closes the connection within ``timeout`` seconds (replies are collected)."""
        with trio.move_on_after(timeout):
            while not self.closed:
                await self._fill(len(self.pending) + 1, timeout)
        return self.closed

    async def close(self, polite: bool = True) -> None:
        """End the session: QUIT first when ``polite`` and still open; always closes the socket."""
        if polite and not self.closed and not self.quit_sent:
            with trio.move_on_after(min(self.timeout, 5.0)):
                await self.quit()
        self.closed = True
        await self.conn.aclose()

    def peer_ip(self) -> str:
        """The IP address this session is connected to (through TLS too); the target host if unknown."""
        stream = self.conn.stream
        inner = getattr(stream, "transport_stream", stream)
        sock = getattr(inner, "socket", None)
        if sock is not None:
            try:
                return str(sock.getpeername()[0])
            except OSError:
                pass
        return self.probe.options.host

    def transcript(self) -> list[str]:
        """The full exchange of this session, from the connection's raw log."""
        return render_log(self.conn.raw_log or [], self.secrets)


class Probe:
    """What a check runs against: the options, discovered facts, and its sessions."""

    def __init__(
        self,
        options: ConformOptions,
        check: Check,
        extensions: dict[str, str] | None = None,
        oracle: DeliveryOracle | None = None,
    ) -> None:
        self.options = options
        self.check = check
        #: EHLO keywords seen by the runner's discovery session.
        self.extensions = extensions or {}
        self.oracle = oracle
        self.sessions: list[Session] = []
        #: Connection limits met (refused connections, 421 greetings) and the retries they took.
        self.limits: list[str] = []
        #: Retry refused connections and 421 greetings (off for discovery: an unreachable server fails fast).
        self.retry = True
        #: Sessions of the checks run before this one (the runner fills it; G-01 grades them).
        self.history: list[Session] = []

    def fill(self, line: str) -> str:
        """Replace ``{rcpt}``, ``{helo}``, ``{domain}``, ``{foreign}``, ``{sender}``, ``{host}`` in ``line``."""
        o = self.options
        for key, value in (
            ("{rcpt}", o.rcpt or "postmaster"),
            ("{helo}", o.helo),
            ("{domain}", o.domain),
            ("{foreign}", o.foreign_rcpt),
            ("{sender}", o.mail_from),
            ("{host}", o.host),
        ):
            line = line.replace(key, value)
        return line

    async def open(self, plain: bool = False) -> Session:
        """Connect (and wrap in TLS when implicit, unless ``plain``); raises :class:`CheckAborted` on failure.

        A refused connection is retried with back-off (:data:`RETRY_DELAYS`):
        servers limit connections per client address, and a limit must make
        the report slower, not wrong.  Each retry is noted in :attr:`limits`.
        """
        o = self.options
        delays = RETRY_DELAYS if self.retry else ()
        for attempt, delay in enumerate((*delays, None)):
            try:
                with trio.fail_after(o.timeout):
                    family, addr = await resolve(o.host, o.port)
                    stream = await connect_tcp(family, addr)
                break
            except Exception as exc:
                kind = "timeout" if isinstance(exc, trio.TooSlowError) else classify(exc)
                if delay is None or kind == "dns":
                    raise CheckAborted(f"cannot connect to {o.target}: {kind}") from None
                self.limits.append(f"connection {kind} (attempt {attempt + 1}); retried after {delay:g}s")
                await trio.sleep(delay)
        conn = SMTPConnection(stream)
        conn.raw_log = []
        session = Session(self, conn)
        self.sessions.append(session)
        if o.tls == "implicit" and not plain:
            await session._handshake()
        return session

    async def connect(self, start: str | None = None) -> Session:
        """A new session started as ``start`` says (default: the check's): ``none``, ``greeting`` or ``ehlo``.

        With ``--starttls``, an ``ehlo`` start also upgrades to TLS.  Raises
        :class:`CheckAborted` when the greeting is not 220 or EHLO not 250.
        """
        start = start or self.check.start
        session = await self.open()
        if start == "none":
            return session
        greet = await session.read_greeting()
        for delay in RETRY_DELAYS if self.retry else ():
            # A 421 or a close instead of the greeting is usually a per-client connection limit: back off.
            if greet.code not in (421, None):
                break
            self.limits.append(f"greeting {greet.outcome}; retried after {delay:g}s")
            await session.close(polite=False)
            await trio.sleep(delay)
            session = await self.open()
            greet = await session.read_greeting()
        if greet.code != 220:
            raise CheckAborted(f"greeting was {greet.outcome}, not 220")
        if start == "ehlo":
            ex = await session.ehlo()
            if ex.code != 250:
                raise CheckAborted(f"EHLO got {ex.outcome}")
            if self.options.tls == "starttls":
                await session.starttls()
        return session

    async def renew(self, session: Session, errors: int = 1, nonmail: int = 1, start: str | None = None) -> Session:
        """``session`` when it can take ``errors`` more error-provoking and ``nonmail`` more non-mail commands;
        otherwise it is closed and a fresh session (started as ``start`` says) is returned.

        The runner's connection budget: each probe group calls this before it
        sends, so that no connection reaches a server's error or non-mail limit.
        """
        if not session.spent(errors, nonmail):
            return session
        await session.close()
        return await self.connect(start)

    async def aclose(self) -> None:
        """Close every session this probe opened (politely, bounded)."""
        for s in self.sessions:
            if not s.closed:
                await s.close()

    def exchanges(self) -> list[tuple[Session, Exchange]]:
        """Every exchange of every session, in order."""
        return [(s, ex) for s in self.sessions for ex in s.exchanges]

    def transcript(self) -> list[str]:
        """The whole traffic of this check, session by session."""
        out: list[str] = []
        for i, s in enumerate(self.sessions, 1):
            out.append(f"--- session {i}")
            out.extend(s.transcript())
        return out

    def peer_ip(self) -> str:
        """The server's IP address as seen on the first session (the target host before that)."""
        return self.sessions[0].peer_ip() if self.sessions else self.options.host

    def delivered(self) -> list[bytes] | None:
        """Messages the oracle has seen so far, or ``None`` without a delivery oracle."""
        return None if self.oracle is None else list(self.oracle())
