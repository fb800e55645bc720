"""One SMTP client session of the load engine: the hot path.

A session is a list of *opening steps* (connect, implicit TLS, banner, EHLO,
STARTTLS, AUTH ...), then up to ``messages_per_session`` transactions, then
QUIT.  Steps are plain ``async`` functions over a :class:`Session`, chosen
once per run from the profile (:func:`opening_steps`), so new steps (BDAT,
other extensions) plug in without touching the transaction loop.

Every reply is counted by command and code, and checked against the shared
reply-code tables (:func:`smtpbench.protocol.tables.is_expected`) to count
unexpected replies.  Every wait has a deadline from the profile's timeouts.

Deadlines: every wait of a session (a reply, sending message data) is bounded
by that phase's timeout from the profile.  Entering a Trio cancel scope per
wait costs several µs, a large share of a message's CPU, so a session runs
inside *one* cancel scope whose deadline :meth:`Session.arm` moves before
each wait: it keeps the deadline within ``[now + timeout, now + timeout +
slack]``, where ``slack = min(1 % of timeout, 0.25 s)``, and only touches the
scope when the deadline falls outside that window (rarely: once per ``slack``
of a busy session).  A timeout therefore fires at most ``slack`` late, never
early, and is recorded as a ``timeout`` error.
Steps that bound themselves (connect, TLS handshake) run with the session
deadline lifted.

Timing (µs): each command phase runs from the moment its reply became the
next thing awaited to the moment it was parsed, so in lockstep mode a phase
is send -> reply, and in a pipelined group it is the gap since the previous
reply (the first one since the group was sent).
"""

from __future__ import annotations

import base64
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from smtpbench.load.messages import AddressTemplate, MessagePool
from smtpbench.metrics.recorder import Recorder
from smtpbench.net.connection import SMTPConnection, connect_tcp, resolve
from smtpbench.net.errors import ReplyError, SessionTimeout, classify
from smtpbench.protocol import commands
from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.protocol.state import ClientProtocol, State
from smtpbench.protocol.tables import is_expected

perf = time.perf_counter
current_time = trio.current_time
INF = float("inf")
#: How late (at most) a session's deadline may fire: a share of the timeout, capped.
DEADLINE_SLACK_RATIO = 0.01
DEADLINE_SLACK_MAX_S = 0.25


@dataclass
class SessionSettings:
    """Everything a session needs, fixed for the run."""

    host: str
    port: int
    helo: str
    timeouts: dict[str, float]
    pipelining: str = "auto"  # auto | on | off
    tls: str = "none"  # none | starttls | implicit
    ssl_context: ssl.SSLContext | None = None
    auth_mechanism: str | None = None
    auth_username: str = ""
    auth_password: str = ""
    messages_per_session: int = 1
    recipients_min: int = 1
    recipients_max: int = 1
    sender: AddressTemplate = field(default_factory=lambda: AddressTemplate("sender@smtpbench.example"))
    recipient: AddressTemplate = field(default_factory=lambda: AddressTemplate("user@example.test"))
    family: int = 0
    sockaddr: tuple[str, int] | tuple[str, int, int, int] | None = None


class Control:
    """Shared stop flag and message budget of a run."""

    __slots__ = ("stopping", "budget", "message_no")

    def __init__(self, budget: int | None) -> None:
        self.stopping = False
        self.budget = budget
        self.message_no = 0

    def claim_message(self, first: bool = False) -> int:
        """Reserve the next message number, or return -1 when the run is stopping.

        A session's ``first`` message is granted even while stopping (within
        the message budget): a session that got connected delivers one message
        in the grace period rather than quitting empty-handed.
        """
        if self.stopping and not first:
            return -1
        if self.budget is not None:
            if self.budget <= 0:
                self.stopping = True
                return -1
            self.budget -= 1
        self.message_no += 1
        return self.message_no


class Session:
    """State of one running session, handed to every step."""

    __slots__ = ("settings", "recorder", "conn", "number", "mark", "rng", "pipelined", "scope")

    def __init__(self, settings: SessionSettings, recorder: Recorder, number: int, rng: random.Random) -> None:
        self.settings = settings
        self.recorder = recorder
        self.number = number
        self.rng = rng
        self.conn: SMTPConnection | None = None
        self.mark = 0.0
        self.pipelined = False
        #: The session-wide cancel scope that carries the deadline of the current wait.
        self.scope = trio.CancelScope()

    def arm(self, timeout: float) -> None:
        """Bound the next wait: the session is cancelled in ``[timeout, timeout + slack]`` from now."""
        need = current_time() + timeout
        slack = min(timeout * DEADLINE_SLACK_RATIO, DEADLINE_SLACK_MAX_S)
        deadline = self.scope.deadline
        if deadline < need or deadline > need + slack:
            self.scope.deadline = need + slack

    def disarm(self) -> None:
        """Lift the session deadline (before a step that bounds itself)."""
        if self.scope.deadline != INF:
            self.scope.deadline = INF

    async def reply(self, phase: str, timeout_key: str) -> tuple[str, Reply]:
        """Await the next reply, record ``phase`` since the last mark, count the reply."""
        assert self.conn is not None
        self.arm(self.settings.timeouts[timeout_key])
        verb, reply = await self.conn.next_reply(None, phase)
        now = perf()
        recorder = self.recorder
        recorder.record(phase, int((now - self.mark) * 1_000_000))
        self.mark = now
        code = reply.code
        counters = recorder.counters
        counters.replies[verb][code] += 1
        if not is_expected(verb, code):
            counters.unexpected[verb][code] += 1
        if code == 421:
            raise ReplyError(f"server closing: {reply.code} {reply.text[:80]}", phase, 421)
        return verb, reply

    async def command(self, verb: str, line: bytes, phase: str, timeout_key: str) -> Reply:
        """Send one command and await its reply (lockstep)."""
        assert self.conn is not None
        self.arm(self.settings.timeouts[timeout_key])
        self.mark = perf()
        await self.conn.send(verb, line)
        return (await self.reply(phase, timeout_key))[1]


Step = Callable[[Session], Awaitable[None]]


async def step_connect(s: Session) -> None:
    """TCP connect to the resolved address (resolving again if that failed at start)."""
    st = s.settings
    s.disarm()
    s.mark = perf()
    try:
        with trio.fail_after(st.timeouts["connect"]):
            if st.sockaddr is None:
                st.family, st.sockaddr = await resolve(st.host, st.port)
            stream = await connect_tcp(st.family, st.sockaddr)
    except trio.TooSlowError:
        raise SessionTimeout(f"connect not done within {st.timeouts['connect']:g}s", "connect") from None
    s.conn = SMTPConnection(stream, ClientProtocol(ReplyParser()))
    now = perf()
    s.recorder.record("connect", int((now - s.mark) * 1_000_000))
    s.mark = now


async def step_implicit_tls(s: Session) -> None:
    """TLS handshake right after connect (SMTPS, port 465 style)."""
    assert s.conn is not None and s.settings.ssl_context is not None
    s.disarm()
    await s.conn.start_tls(s.settings.ssl_context, s.settings.host, s.settings.timeouts["tls"])
    now = perf()
    s.recorder.record("tls", int((now - s.mark) * 1_000_000))
    s.mark = now


async def step_banner(s: Session) -> None:
    """Await the greeting; anything but 220 ends the session."""
    _, reply = await s.reply("banner", "banner")
    if reply.code != 220:
        raise ReplyError(f"greeting refused: {reply.code} {reply.text[:80]}", "banner", reply.code)


async def _hello(s: Session, phase: str) -> None:
    reply = await s.command("EHLO", commands.ehlo(s.settings.helo), phase, "ehlo")
    if reply.code in (500, 502):  # old server without EHLO: fall back (RFC 5321 3.2)
        reply = await s.command("HELO", commands.helo(s.settings.helo), phase, "ehlo")
    if reply.code >= 400:
        raise ReplyError(f"EHLO refused: {reply.code} {reply.text[:80]}", phase, reply.code)


async def step_ehlo(s: Session) -> None:
    """EHLO, falling back to HELO; decides whether to pipeline."""
    await _hello(s, "ehlo")
    assert s.conn is not None
    mode = s.settings.pipelining
    s.pipelined = mode == "on" or (mode == "auto" and "PIPELINING" in s.conn.protocol.extensions)


async def step_starttls(s: Session) -> None:
    """STARTTLS, handshake, and the EHLO again that RFC 3207 4.2 requires."""
    assert s.conn is not None and s.settings.ssl_context is not None
    reply = await s.command("STARTTLS", commands.STARTTLS, "starttls", "tls")
    if reply.code != 220:
        raise ReplyError(f"STARTTLS refused: {reply.code} {reply.text[:80]}", "starttls", reply.code)
    await step_implicit_tls(s)
    await step_ehlo(s)


async def step_auth(s: Session) -> None:
    """AUTH PLAIN (initial response) or LOGIN."""
    st = s.settings
    if st.auth_mechanism == "LOGIN":
        reply = await s.command("AUTH", b"AUTH LOGIN\r\n", "auth", "auth")
        for secret in (st.auth_username, st.auth_password):
            if reply.code != 334:
                break
            line = base64.b64encode(secret.encode()) + b"\r\n"
            reply = await s.command("AUTH_RESPONSE", line, "auth", "auth")
    else:
        token = base64.b64encode(f"\0{st.auth_username}\0{st.auth_password}".encode()).decode()
        reply = await s.command("AUTH", f"AUTH PLAIN {token}\r\n".encode(), "auth", "auth")
    if reply.code != 235:
        raise ReplyError(f"AUTH failed: {reply.code}", "auth", reply.code)


def opening_steps(settings: SessionSettings) -> list[Step]:
    """The session's opening steps for this profile, in order."""
    steps: list[Step] = [step_connect]
    if settings.tls == "implicit":
        steps.append(step_implicit_tls)
    steps += [step_banner, step_ehlo]
    if settings.tls == "starttls":
        steps.append(step_starttls)
    if settings.auth_mechanism:
        steps.append(step_auth)
    return steps


def _reject_kind(code: int) -> str:
    return "temp_fail" if code < 500 else "perm_fail"


async def transaction(s: Session, pool: MessagePool, message_no: int, lag_us: int | None) -> None:
    """One mail transaction: MAIL, RCPT x n, DATA, body, final reply (and RSET if refused)."""
    st = s.settings
    conn = s.conn
    assert conn is not None
    rec = s.recorder
    counts = rec.counters.counts
    rng = s.rng
    n_rcpt = (
        st.recipients_min
        if st.recipients_min == st.recipients_max
        else rng.randint(st.recipients_min, st.recipients_max)
    )
    cmds = [("MAIL", commands.mail_from(st.sender.render(message_no, s.number)))]
    for i in range(n_rcpt):
        cmds.append(("RCPT", commands.rcpt_to(st.recipient.render(message_no, s.number, i))))
    cmds.append(("DATA", commands.DATA))
    start = s.mark = perf()
    refusal = 0  # the first refusal's code: it classifies a message that is not sent
    if s.pipelined:
        s.arm(st.timeouts["mail"])
        await conn.send_group(cmds)
        replies = [(verb, (await s.reply(verb.lower(), verb.lower()))[1]) for verb, _ in cmds]
    else:
        replies = []
        for verb, line in cmds:
            if verb == "DATA" and not any(v == "RCPT" and r.code < 400 for v, r in replies):
                break  # all recipients refused: DATA would be pointless (and 503)
            reply = await s.command(verb, line, verb.lower(), verb.lower())
            replies.append((verb, reply))
            if reply.code >= 400 and verb != "RCPT":
                break
    for verb, reply in replies:
        if verb == "RCPT" and reply.code >= 400:
            counts["recipients_rejected"] += 1
        if reply.code >= 400 and not refusal:
            refusal = reply.code
    if conn.protocol.state is not State.DATA:
        counts["messages_rejected"] += 1
        rec.counters.errors[_reject_kind(refusal or 554)] += 1
        if conn.protocol.state in (State.MAIL, State.RCPT):
            await s.command("RSET", commands.RSET, "rset", "other")
        return
    msg = pool.pick(rng)
    s.arm(st.timeouts["data_block"])
    s.mark = perf()
    await conn.send("DATA_END", msg.wire)
    counts["messages_sent"] += 1
    counts["bytes_sent"] += msg.size
    _, reply = await s.reply("data_end", "data_end")
    end = s.mark
    if reply.code < 400:
        counts["messages_accepted"] += 1
    else:
        counts["messages_rejected"] += 1
        rec.counters.errors[_reject_kind(reply.code)] += 1
    rec.record("transaction", int((end - start) * 1_000_000))
    if lag_us is not None:
        rec.record("corrected.transaction", int((end - start) * 1_000_000) + lag_us)


async def run_session(
    s: Session,
    steps: list[Step],
    pool: MessagePool,
    control: Control,
    intended: float | None = None,
) -> None:
    """Run one whole session; never raises for server misbehaviour.

    Errors are counted by kind in the recorder; cancellation (the run's
    end) propagates after the connection is closed.
    """
    rec = s.recorder
    counts = rec.counters.counts
    counts["sessions_started"] += 1
    start = perf()
    lag_us = None if intended is None else max(int((start - intended) * 1_000_000), 0)
    try:
        with s.scope:
            try:
                for step in steps:
                    await step(s)
                for i in range(s.settings.messages_per_session):
                    n = control.claim_message(first=i == 0)
                    if n < 0:
                        break
                    await transaction(s, pool, n, lag_us)
                await s.command("QUIT", commands.QUIT, "quit", "other")
                end = perf()
                rec.record("session", int((end - start) * 1_000_000))
                if intended is not None:
                    rec.record("corrected.session", int((end - intended) * 1_000_000))
                counts["sessions_completed"] += 1
            except Exception as exc:  # server misbehaviour of every kind: counted, never fatal
                rec.counters.errors[classify(exc)] += 1
        if s.scope.cancelled_caught:  # the deadline of the wait in progress passed
            rec.counters.errors[SessionTimeout.kind] += 1
    finally:
        if s.conn is not None:
            await s.conn.aclose()
