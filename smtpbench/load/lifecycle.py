"""A load session's whole life: its steps, its transactions, QUIT, and exactly one outcome.

See the accounting notes of :mod:`smtpbench.load.session`.
"""

from __future__ import annotations

from smtpbench.load.extensions import Pool
from smtpbench.load.session import UNFINISHED_WAIT, Control, Session, Step, perf
from smtpbench.load.trace import TraceLog
from smtpbench.load.transaction import transactions
from smtpbench.net.errors import SessionTimeout, classify
from smtpbench.protocol import commands


async def run_session(
    s: Session,
    steps: list[Step],
    pool: Pool,
    control: Control,
    intended: float | None = None,
) -> bool:
    """Run one whole session; never raises for server misbehaviour.

    Guarantees exactly one outcome per call (module notes, Accounting):
    completed, failed (its error counted by kind) or, when the run's end
    cancels it, unfinished (phase and wait recorded, ``unfinished_wait``
    histogram); cancellation then propagates after the connection is closed.
    Returns whether the session opened: its steps up to the first message
    (connect, greeting, EHLO, TLS, AUTH) all succeeded.
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
    opened = False
    if tracer is not None:
        s.trace = TraceLog()
    try:
        with s.scope:
            try:
                for step in steps:
                    await step(s)
                opened = True
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
    return opened


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
