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
wait, or moving a scope's deadline (which changes at nearly every wait, since
the phases' timeouts differ), costs several µs: a large share of a message's
CPU.  So a session only notes its deadline (:meth:`Session.arm`, a float),
runs inside *one* cancel scope, and a run-wide :func:`watchdog` cancels the
scope of every session whose deadline has passed, once per
:func:`watchdog_period` (1 % of the smallest timeout, at most 0.25 s, at
least 1 ms).  A timeout therefore fires at most one period late, never
early, and is recorded as a ``timeout`` error.  Steps that bound themselves
(connect, TLS handshake) run with the session deadline lifted.

Timing (µs): each command phase runs from the moment its reply became the
next thing awaited to the moment it was parsed, so in lockstep mode a phase
is send -> reply, and in a pipelined group it is the gap since the previous
reply (the first one since the group was sent).  With ``pipeline_data`` a
message's data and the next envelope share one write: ``data_end`` still
runs from that write to the data's reply, and the next ``mail`` phase from
that reply to the MAIL reply.  A ``transaction`` runs from the later of (its
MAIL written) and (the previous message's final reply) to its own final
reply, so it never carries the previous message's wait: with or without
``pipeline_data`` it is about ``mail + rcpt + data + data_end``.

Accounting: every session that starts ends in exactly one outcome, counted
in ``sessions_completed``, ``sessions_failed`` (with its error kind) or
``sessions_unfinished`` (the run's end cancelled it while it waited; its
phase and the time it had waited are recorded).  Every message whose MAIL
was written (``messages_sent``) likewise ends ``accepted``, ``rejected``,
``failed`` (its session failed) or ``unfinished``.  A session tracks the
phase it waits in (:attr:`Session.phase`) and its messages still open.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import trio

from smtpbench.load.auth import step_auth
from smtpbench.load.extensions import HAS_CHUNKING, NO_CHUNKING, UNSUPPORTED, Pool, capabilities
from smtpbench.load.messages import RenderedMessage
from smtpbench.load.settings import SessionSettings
from smtpbench.load.trace import TraceLog, Tracer
from smtpbench.metrics.recorder import Recorder
from smtpbench.net.connection import SMTPConnection, connect_tcp
from smtpbench.net.errors import ReplyError, SessionError, SessionTimeout, classify
from smtpbench.protocol import commands
from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.protocol.state import ClientProtocol, State
from smtpbench.protocol.tables import is_expected

perf = time.perf_counter
current_time = trio.current_time
INF = float("inf")
#: How late (at most) a session's deadline may fire: a share of the smallest timeout, capped.
DEADLINE_SLACK_RATIO = 0.01
DEADLINE_SLACK_MAX_S = 0.25
DEADLINE_SLACK_MIN_S = 0.001
#: The phase (histogram tag) of the time unfinished sessions had waited when the run ended.
UNFINISHED_WAIT = "unfinished_wait"


def watchdog_period(timeouts: dict[str, float]) -> float:
    """The watchdog's period for these timeouts (see the module notes on deadlines)."""
    return max(min(min(timeouts.values()) * DEADLINE_SLACK_RATIO, DEADLINE_SLACK_MAX_S), DEADLINE_SLACK_MIN_S)


class Control:
    """Shared stop flag and message budget of a run."""

    __slots__ = ("stopping", "budget", "message_no", "sessions", "tracer")

    def __init__(self, budget: int | None, tracer: Tracer | None = None) -> None:
        self.stopping = False
        self.budget = budget
        self.message_no = 0
        #: Sessions running now, for the watchdog.
        self.sessions: set[Session] = set()
        #: ``--trace``: chooses and writes the traced sessions (None: nothing is traced).
        self.tracer = tracer

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
            if self.budget == 0:
                self.stopping = True  # the last message is claimed: start no session that would have none
        self.message_no += 1
        return self.message_no


class Session:
    """State of one running session, handed to every step."""

    __slots__ = (
        "settings",
        "recorder",
        "conn",
        "number",
        "mark",
        "rng",
        "pipelined",
        "scope",
        "deadline",
        "phase",
        "open_messages",
        "caps",
        "bdat",
        "started",
        "trace",
    )

    def __init__(self, settings: SessionSettings, recorder: Recorder, number: int, rng: random.Random) -> None:
        self.settings = settings
        self.recorder = recorder
        self.number = number
        self.rng = rng
        self.conn: SMTPConnection | None = None
        self.mark = 0.0
        self.pipelined = False
        #: The session-wide cancel scope, cancelled by the watchdog when ``deadline`` passes.
        self.scope = trio.CancelScope()
        #: Trio time by which the current wait must end (inf: no wait armed).
        self.deadline = INF
        #: The phase the session waits in now (``think`` while pausing between messages).
        self.phase = "connect"
        #: Messages whose MAIL was written and whose outcome is not known yet.
        self.open_messages = 0
        #: The server's extensions as a bit mask (smtpbench.load.extensions), and whether messages go by BDAT.
        self.caps = 0
        self.bdat = False
        #: perf_counter time the session started (its intended start in open runs): end_to_end counts from here.
        self.started = 0.0
        #: The exchange so far when the run traces (``--trace``), else None.
        self.trace: TraceLog | None = None

    def arm(self, timeout: float) -> None:
        """Bound the next wait: the watchdog cancels the session ``timeout`` from now (at most a period late)."""
        self.deadline = current_time() + timeout

    def disarm(self) -> None:
        """Lift the session deadline (before a step that bounds itself)."""
        self.deadline = INF

    async def reply(self, phase: str, timeout_key: str) -> tuple[str, Reply]:
        """Await the next reply, record ``phase`` since the last mark, count the reply."""
        assert self.conn is not None
        self.arm(self.settings.timeouts[timeout_key])
        self.phase = phase
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
        self.phase = phase
        self.mark = perf()
        await self.conn.send(verb, line)
        return (await self.reply(phase, timeout_key))[1]


Step = Callable[[Session], Awaitable[None]]


async def step_connect(s: Session) -> None:
    """TCP connect to the address the engine resolved once, from the session's source address if any."""
    st = s.settings
    assert st.sockaddr is not None, "the target is resolved before the first session"
    s.disarm()
    s.phase = "connect"
    s.mark = perf()
    sources = st.sources
    source = sources[s.number % len(sources)] if sources else None
    try:
        with trio.fail_after(st.timeouts["connect"]):
            stream = await connect_tcp(st.family, st.sockaddr, source)
    except trio.TooSlowError:
        raise SessionTimeout(f"connect not done within {st.timeouts['connect']:g}s", "connect") from None
    s.conn = SMTPConnection(stream, ClientProtocol(ReplyParser()))
    s.conn.raw_log = s.trace
    now = perf()
    s.recorder.record("connect", int((now - s.mark) * 1_000_000))
    s.mark = now


async def step_implicit_tls(s: Session) -> None:
    """TLS handshake right after connect (SMTPS, port 465 style)."""
    assert s.conn is not None and s.settings.ssl_context is not None
    s.disarm()
    s.phase = "tls"
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


class ChunkingUnsupported(SessionError):
    """``chunking = "on"`` but the server does not advertise CHUNKING (RFC 3030)."""

    kind = NO_CHUNKING


async def step_extensions(s: Session) -> None:
    """Note the server's extensions (the last EHLO's) and choose DATA or BDAT; ``chunking = "on"`` needs CHUNKING."""
    assert s.conn is not None
    s.caps = capabilities(s.conn.protocol.extensions)
    chunking = s.settings.chunking
    s.bdat = chunking == "on" or (chunking == "auto" and bool(s.caps & HAS_CHUNKING))
    if chunking == "on" and not s.caps & HAS_CHUNKING:
        await s.command("QUIT", commands.QUIT, "quit", "other")
        raise ChunkingUnsupported('chunking = "on" but the server does not advertise CHUNKING', "ehlo")


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
    steps.append(step_extensions)
    return steps


def _reject_kind(code: int) -> str:
    return "temp_fail" if code < 500 else "perm_fail"


def envelope(s: Session, message_no: int, msg: RenderedMessage) -> list[tuple[str, bytes]]:
    """MAIL (with the parameters ``msg`` needs), one RCPT per recipient, then DATA or ``msg``'s BDAT chunks."""
    st = s.settings
    ext = st.extensions
    n_rcpt = (
        st.recipients_min
        if st.recipients_min == st.recipients_max
        else s.rng.randint(st.recipients_min, st.recipients_max)
    )
    params = ext.mail_params(msg, s.caps, message_no, s.number, s.recorder.counters.counts)
    cmds = [("MAIL", commands.command("MAIL", f"FROM:<{st.sender.render(message_no, s.number)}>{params}"))]
    notify = ext.rcpt_params(s.caps) if ext.dsn else ""
    for i in range(n_rcpt):
        cmds.append(("RCPT", commands.command("RCPT", f"TO:<{st.recipient.render(message_no, s.number, i)}>{notify}")))
    if not s.bdat:
        cmds.append(("DATA", commands.DATA))
        return cmds
    # RFC 3030: chunks may follow the envelope in one pipelined group (2920 lets BDAT be pipelined).
    # The id fields go first as a chunk of their own (a message is its chunks' concatenation).
    *chunks, last = msg.bdat
    cmds.append(("BDAT", st.ids.chunk(message_no)))
    cmds += [("BDAT", chunk) for chunk in chunks]
    cmds.append(("BDAT_LAST", last))
    return cmds


#: Phase and timeout of each envelope verb whose own name is not both.
_PHASES = {"BDAT": ("bdat", "data_block"), "BDAT_LAST": ("data_end", "data_end")}
_BODY_VERBS = ("DATA", "BDAT", "BDAT_LAST")


async def _envelope_replies(s: Session, cmds: list[tuple[str, bytes]], sent: bool) -> bool:
    """Await the envelope's replies (sending it command by command unless ``sent``).

    True when DATA got its 354 (or BDAT ... LAST its 250).  Otherwise the message is counted as
    rejected, by the kind of its first refusal, and an open transaction is reset.
    """
    conn = s.conn
    assert conn is not None
    rec = s.recorder
    counts = rec.counters.counts
    if sent:
        replies = [(verb, (await s.reply(*_PHASES.get(verb) or (verb.lower(),) * 2))[1]) for verb, _ in cmds]
    else:
        replies = []
        for verb, line in cmds:
            if verb in _BODY_VERBS and not any(v == "RCPT" and r.code < 400 for v, r in replies):
                break  # all recipients refused: DATA or BDAT would be pointless (and 503)
            reply = await s.command(verb, line, *_PHASES.get(verb) or (verb.lower(),) * 2)
            replies.append((verb, reply))
            if reply.code >= 400 and verb != "RCPT":
                break
    refusal = 0  # the first refusal's code: it classifies a message that is not sent
    for verb, reply in replies:
        if verb == "RCPT" and reply.code >= 400:
            counts["recipients_rejected"] += 1
        if reply.code >= 400 and not refusal:
            refusal = reply.code
    if replies and replies[-1][0] == "BDAT_LAST":
        counts["transfer.bdat"] += 1  # every chunk was sent (and answered)
        if replies[-1][1].code < 400:
            return True
    elif conn.protocol.state is State.DATA:
        return True
    counts["messages_rejected"] += 1
    s.open_messages -= 1
    rec.counters.errors[_reject_kind(refusal or 554)] += 1
    if conn.protocol.state in (State.MAIL, State.RCPT):
        await s.command("RSET", commands.RSET, "rset", "other")
    return False


def _unsupported(s: Session, keyword: str) -> None:
    """Count a message the server cannot take (it lacks ``keyword``): never sent, never half-sent."""
    counters = s.recorder.counters
    counters.errors[UNSUPPORTED] += 1
    counters.counts["messages_unsupported"] += 1
    counters.counts[f"unsupported.{keyword}"] += 1


async def transactions(s: Session, pool: Pool, control: Control, lag_us: int | None) -> None:
    """Up to ``messages_per_session`` transactions on the session's connection.

    Pipelined (RFC 2920), an envelope goes out in one write; with
    ``pipeline_data`` (and no ``think_time``) a message's data also carries
    the next envelope in the same write (RFC 2920 3.1 lets message content
    start a group).  Then the next ``mail`` phase and the next transaction
    start at the reply to the previous message's data (module notes, Timing).
    With ``think_time`` the session pauses that long between messages.
    """
    st = s.settings
    conn = s.conn
    assert conn is not None
    rec = s.recorder
    counts = rec.counters.counts
    think = st.think_time
    coalesce = s.pipelined and st.pipeline_data and not think and not s.bdat
    ext = st.extensions
    ids = st.ids
    tracker = st.tracker
    left = st.messages_per_session - 1
    message_no = control.claim_message(first=True)
    cmds: list[tuple[str, bytes]] | None = None  # an envelope already on the wire
    msg: RenderedMessage | None = None  # the next envelope's message, once chosen
    start = 0.0
    while message_no >= 0:
        if cmds is None:
            if msg is None:
                msg = pool.pick(s.rng, message_no, s.number)
            lacking = ext.missing(msg, s.caps)
            if lacking:  # never sent broken: counted (not as sent), and on to the next message
                _unsupported(s, lacking)
                msg = None
                if left <= 0:
                    return
                left -= 1
                message_no = control.claim_message()
                continue
            cmds = envelope(s, message_no, msg)
            start = s.mark = perf()
            counts["messages_sent"] += 1
            s.open_messages += 1
            if s.pipelined:
                s.phase = "mail"
                s.arm(st.timeouts["data_block" if s.bdat else "mail"])
                await conn.send_group(cmds)
        sent, msg = msg, None
        assert sent is not None
        if s.bdat and tracker is not None:  # the data goes with the envelope (pipelined or not)
            tracker.sent(message_no, len(cmds) - 2 - len(sent.bdat), s.started)
        accepted = await _envelope_replies(s, cmds, s.pipelined)
        n_rcpt = len(cmds) - 2
        cmds = None
        following = -1
        if s.bdat:  # the chunks went with the envelope: its replies settled the message
            if accepted or s.pipelined:
                counts["bytes_sent"] += sent.size + ids.size(message_no)
            if tracker is not None:
                tracker.replied(message_no, accepted, s.mark)
            if accepted:
                end = s.mark
                s.open_messages -= 1
                counts["messages_accepted"] += 1
                rec.record("transaction", int((end - start) * 1_000_000))
                if lag_us is not None:
                    rec.record("corrected.transaction", int((end - start) * 1_000_000) + lag_us)
        elif accepted:
            wire = ids.stamp(message_no, sent.wire)
            s.arm(st.timeouts["data_block"])
            s.phase = "data_end"
            s.mark = perf()
            if coalesce and left > 0:
                following = control.claim_message()
                left -= 1
            if following >= 0:
                msg = pool.pick(s.rng, following, s.number)
                if not ext.missing(msg, s.caps):  # else it cannot go with this data: the loop's top counts it
                    cmds = envelope(s, following, msg)
                    counts["messages_sent"] += 1
                    s.open_messages += 1
                    await conn.send_group([("DATA_END", wire), *cmds])
            if cmds is None:
                await conn.send("DATA_END", wire)
            counts["transfer.data"] += 1
            counts["bytes_sent"] += sent.size + len(wire) - len(sent.wire)
            if tracker is not None:
                tracker.sent(message_no, n_rcpt, s.started)
            _, reply = await s.reply("data_end", "data_end")
            end = s.mark
            if tracker is not None:
                tracker.replied(message_no, reply.code < 400, end)
            s.open_messages -= 1
            if reply.code < 400:
                counts["messages_accepted"] += 1
            else:
                counts["messages_rejected"] += 1
                rec.counters.errors[_reject_kind(reply.code)] += 1
            rec.record("transaction", int((end - start) * 1_000_000))
            if lag_us is not None:
                rec.record("corrected.transaction", int((end - start) * 1_000_000) + lag_us)
            if following >= 0:
                # The next envelope went out with this data; its transaction starts at this
                # reply (the later of its MAIL written and the previous final reply).
                start = end
                message_no = following
                continue
        if left <= 0:
            return
        left -= 1
        if think:
            s.disarm()  # a pause is not a wait on the server
            s.phase = "think"
            s.mark = perf()
            await trio.sleep(think)
        message_no = control.claim_message()


async def run_session(
    s: Session,
    steps: list[Step],
    pool: Pool,
    control: Control,
    intended: float | None = None,
) -> None:
    """Run one whole session; never raises for server misbehaviour.

    Guarantees exactly one outcome per call (module notes, Accounting):
    completed, failed (its error counted by kind) or, when the run's end
    cancels it, unfinished (phase and wait recorded, ``unfinished_wait``
    histogram); cancellation then propagates after the connection is closed.
    """
    rec = s.recorder
    counters = rec.counters
    counts = counters.counts
    counts["sessions_started"] += 1
    control.sessions.add(s)
    start = perf()
    s.started = start if intended is None else intended
    lag_us = None if intended is None else max(int((start - intended) * 1_000_000), 0)
    outcome = ""  # stays empty when the run's end cuts the session off
    kind = "ok"
    tracer = control.tracer
    if tracer is not None:
        s.trace = TraceLog()
    try:
        with s.scope:
            try:
                for step in steps:
                    await step(s)
                await transactions(s, pool, control, lag_us)
                await s.command("QUIT", commands.QUIT, "quit", "other")
                end = perf()
                rec.record("session", int((end - start) * 1_000_000))
                if intended is not None:
                    rec.record("corrected.session", int((end - intended) * 1_000_000))
                outcome = "completed"
            except Exception as exc:  # server misbehaviour of every kind: counted, never fatal
                kind = classify(exc)
                counters.errors[kind] += 1
                outcome = "failed"
        if s.scope.cancelled_caught:  # the deadline of the wait in progress passed
            kind = SessionTimeout.kind
            counters.errors[kind] += 1
            outcome = "failed"
    finally:
        control.sessions.discard(s)
        _settle(s, outcome, start, intended)
        if tracer is not None and s.trace is not None:
            tracer.offer(s.number, s.trace, kind if outcome else "unfinished")
        if s.conn is not None:
            await s.conn.aclose()


def _settle(s: Session, outcome: str, start: float, intended: float | None) -> None:
    """Count the session's one outcome, and its open messages as failed or unfinished."""
    rec = s.recorder
    counts = rec.counters.counts
    if outcome == "completed":
        counts["sessions_completed"] += 1
    elif outcome == "failed":
        counts["sessions_failed"] += 1
        counts["messages_failed"] += s.open_messages
    else:
        now = perf()
        waited = int((now - start) * 1_000_000)
        counts["sessions_unfinished"] += 1
        counts["messages_unfinished"] += s.open_messages
        rec.counters.note_unfinished(s.phase, waited)
        rec.record(UNFINISHED_WAIT, waited)
        if intended is not None:
            rec.record("corrected." + UNFINISHED_WAIT, int((now - intended) * 1_000_000))
    s.open_messages = 0


async def watchdog(control: Control, period: float) -> None:
    """Cancel every running session whose armed deadline has passed; runs until cancelled."""
    while True:
        await trio.sleep(period)
        now = current_time()
        for s in control.sessions:
            if s.deadline <= now:
                s.scope.cancel()
