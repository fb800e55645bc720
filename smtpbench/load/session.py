"""One SMTP client session of the load engine: the hot path.

A session is a list of *opening steps* (connect, implicit TLS, banner, EHLO,
STARTTLS, AUTH ...: :mod:`smtpbench.load.opening`), then up to
``messages_per_session`` transactions (:mod:`smtpbench.load.transaction`),
then QUIT; :func:`smtpbench.load.lifecycle.run_session` runs the whole and
counts its one outcome.  Steps are plain ``async`` functions over a
:class:`Session`, chosen once per run from the profile, so new steps plug in
without touching the transaction loop.  This module holds what they share:
the :class:`Session` state, the run's :class:`Control` and the deadline
:func:`watchdog`.

Every reply is counted by command and code, and checked against the shared
reply-code tables (:func:`smtpbench.protocol.tables.is_expected`) to count
unexpected replies.  Every wait has a deadline from the profile's timeouts.

Deadlines: every wait of a session (a reply, sending message data) is bounded
by that phase's timeout from the profile.  Entering a Trio cancel scope per
wait, or moving a scope's deadline (which changes at nearly every wait, since
the phases' timeouts differ), costs several µs: a large share of a message's
CPU.  So a session only notes its deadline (:meth:`Session.arm`, a float on
the ``time.perf_counter`` clock, which is cheaper to read than Trio's),
runs inside *one* cancel scope, and a run-wide :func:`watchdog` cancels the
scope of every session whose deadline has passed, once per
:func:`watchdog_period` (1 % of the smallest timeout, at most 0.25 s, at
least 1 ms).  A timeout therefore fires at most one period late, never
early, and is recorded as a ``timeout`` error.  Steps that bound themselves
(connect, TLS handshake) run with the session deadline lifted.  A reply that
is already parsed (the rest of a pipelined group's replies, which usually
arrive in one read) is taken without a wait, so without arming a deadline.

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

from smtpbench.load.settings import SessionSettings
from smtpbench.load.trace import TraceLog, Tracer
from smtpbench.metrics.recorder import Recorder
from smtpbench.net.connection import SMTPConnection
from smtpbench.net.errors import ReplyError
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.tables import is_expected

perf = time.perf_counter
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

    __slots__ = ("stopping", "stopped", "budget", "message_no", "sessions", "tracer")

    def __init__(self, budget: int | None, tracer: Tracer | None = None) -> None:
        self.stopping = False
        #: Set when the run begins to stop: it ends the pauses (think_time, session_pause, back-off) at once.
        self.stopped = trio.Event()
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
        "rcpt_ok",
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
        #: ``perf_counter`` time by which the current wait must end (inf: no wait armed).
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
        #: RCPTs of the current envelope the server accepted: a message has that many copies to deliver.
        self.rcpt_ok = 0

    def arm(self, timeout: float) -> None:
        """Bound the next wait: the watchdog cancels the session ``timeout`` from now (at most a period late)."""
        self.deadline = perf() + timeout

    def disarm(self) -> None:
        """Lift the session deadline (before a step that bounds itself)."""
        self.deadline = INF

    async def reply(self, phase: str, timeout_key: str, sample: bool = True) -> tuple[str, Reply]:
        """Await the next reply, record ``phase`` since the last mark (unless not ``sample``), count the reply."""
        conn = self.conn
        assert conn is not None
        self.phase = phase
        if conn.ready:  # parsed already: no wait, so no deadline to arm
            return self.take(phase, sample)
        self.deadline = perf() + self.settings.timeouts[timeout_key]
        await conn.wait_reply()
        return self.take(phase, sample)

    def take(self, phase: str, sample: bool = True) -> tuple[str, Reply]:
        """The next reply, already parsed (``conn.ready`` must not be empty), recorded and counted as :meth:`reply`.

        The pipelined group's later replies usually arrive with the first: taking them needs no ``await``.
        Without ``sample`` the reply is counted but no ``phase`` time is recorded (LMTP's per-recipient
        replies before the last one: the phase runs to the last).
        """
        conn = self.conn
        assert conn is not None
        verb, reply = conn.ready.popleft()
        recorder = self.recorder
        if sample:
            now = perf()
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


async def watchdog(control: Control, period: float) -> None:
    """Cancel every running session whose armed deadline has passed; runs until cancelled."""
    while True:
        await trio.sleep(period)
        now = perf()
        for s in control.sessions:
            if s.deadline <= now:
                s.scope.cancel()
