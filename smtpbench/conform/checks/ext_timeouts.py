"""Section 19: server timeouts (TO-01, slow) and shutdown (TO-02, needs a hook).

TO-01 runs its three probes at once (each on its own connection), so the
check takes as long as the longest of them, not their sum.  The durations
are a :class:`TimeoutPlan`: the registered check uses the catalogue's
(5 minutes idle, up to 30 minutes to the close); :func:`make_idle_check`
builds the same check with other durations, which is how the tests run it
against a sink with a short idle timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from smtpbench.conform.checks._util import open_transaction, setup
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe

AREA = "timeouts"


@dataclass(frozen=True)
class TimeoutPlan:
    """How long TO-01 waits, in seconds.

    ``noop_idle``: idle time before the NOOP that must still get 250 (RFC 5321
    4.5.3.2.7: at least 5 minutes).  ``max_idle``: how long to wait for the
    server to close an idle session.  ``data_interval``/``data_max``: one
    octet of DATA every interval, for at most ``data_max``.
    """

    noop_idle: float = 300.0
    max_idle: float = 1800.0
    data_interval: float = 10.0
    data_max: float = 600.0

    @property
    def budget(self) -> float:
        """An upper bound on the check's duration (the runner's cap for it must not be lower)."""
        return max(self.noop_idle, self.max_idle, self.data_max) + 60.0


DEFAULT_PLAN = TimeoutPlan()


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


async def _idle_noop(probe: Probe, plan: TimeoutPlan) -> Finding:
    session = await probe.connect()
    started = time.monotonic()
    closed = await session.wait_closed(plan.noop_idle)
    if closed:
        elapsed = time.monotonic() - started
        return Finding(
            Verdict.WARN,
            f"the server closed an idle session after {_fmt(elapsed)}, before "
            f"{_fmt(plan.noop_idle)} (SHOULD wait at least 5 minutes)",
            session.transcript()[-4:],
        )
    ex = await session.cmd("NOOP")
    await session.close()
    if ex.code != 250:
        return Finding(Verdict.WARN, f"NOOP after {_fmt(plan.noop_idle)} idle got {ex.outcome}", ex.lines())
    return Finding(Verdict.PASS, f"NOOP after {_fmt(plan.noop_idle)} idle: 250", ex.lines())


async def _idle_close(probe: Probe, plan: TimeoutPlan) -> Finding:
    session = await probe.connect()
    started = time.monotonic()
    closed = await session.wait_closed(plan.max_idle)
    elapsed = time.monotonic() - started
    got = list(session.pending)
    session.pending.clear()
    await session.close(polite=False)
    lines = session.transcript()[-4:]
    if not closed:
        return Finding(Verdict.PASS, f"idle session still open after {_fmt(plan.max_idle)}", lines)
    if any(r.code == 421 for r in got):
        return Finding(Verdict.PASS, f"idle session closed after {_fmt(elapsed)}, with a 421 first", lines)
    return Finding(Verdict.WARN, f"idle session closed after {_fmt(elapsed)} without a 421 (SHOULD send 421)", lines)


async def _slow_data(probe: Probe, plan: TimeoutPlan) -> str:
    if not probe.options.rcpt:
        return "slow DATA not tried (needs --rcpt)"
    session = await probe.connect()
    await open_transaction(session)
    await setup(session, "DATA", 354)
    started = time.monotonic()
    sent = 0
    ex: Exchange | None = None
    while time.monotonic() - started < plan.data_max and not session.closed:
        ex = await session.send(b"x", verb="DATA_BODY")
        sent += 1
        await session.read(ex, 1, timeout=plan.data_interval)
        if ex.replies:
            break
    elapsed = time.monotonic() - started
    # Never finish this message: it is junk, and the server must not be made to deliver it.
    await session.close(polite=False)
    if ex is not None and (ex.replies or session.closed):
        how = f"with {ex.replies[0].code}" if ex.replies else "by closing the connection"
        return (
            f"slow DATA (1 octet per {_fmt(plan.data_interval)}) abandoned {how} after {_fmt(elapsed)}, {sent} octets"
        )
    return f"slow DATA still accepted after {_fmt(elapsed)} ({sent} octets)"


def make_idle_check(plan: TimeoutPlan = DEFAULT_PLAN) -> Check:
    """TO-01 with the durations of ``plan``."""

    async def server_timeouts(probe: Probe) -> Finding:
        results: dict[str, Finding] = {}
        notes: list[str] = []

        async def noop() -> None:
            results["noop"] = await _idle_noop(probe, plan)

        async def close() -> None:
            results["close"] = await _idle_close(probe, plan)

        async def data() -> None:
            notes.append(await _slow_data(probe, plan))

        async with trio.open_nursery() as nursery:
            for part in (noop, close, data):
                nursery.start_soon(part)
        result = worst([results["noop"], results["close"]])
        reason = "; ".join([results["noop"].reason, results["close"].reason, *notes])
        return Finding(result.verdict, reason, result.evidence)

    return Check(
        "TO-01",
        "Server timeouts",
        AREA,
        Level.SHOULD,
        "4.5.3.2.7, 4.5.3.2, 3.8",
        needs=frozenset({"slow"}),
        script=server_timeouts,
    )


async def shutdown(probe: Probe) -> Finding:
    # The runner skips checks that need a hook before they start; this only runs if one is ever added.
    return Finding(Verdict.SKIP, "needs a hook to stop the server during a session")


CHECKS = (
    make_idle_check(),
    Check("TO-02", "Shutdown", AREA, Level.SHOULD, "3.8, 4.2.5", needs=frozenset({"hook", "sink"}), script=shutdown),
)
