"""Session deadlines: the run-wide watchdog cancels a session only once its armed deadline has passed."""

from __future__ import annotations

import random
import time

import trio

from smtpbench.load.session import Control, Session, SessionSettings, watchdog, watchdog_period
from smtpbench.metrics.recorder import Recorder


def test_watchdog_period_bounds() -> None:
    assert watchdog_period({"a": 300.0, "b": 600.0}) == 0.25
    assert watchdog_period({"a": 2.0, "b": 600.0}) == 0.02
    assert watchdog_period({"a": 0.01}) == 0.001


def _session(control: Control, number: int) -> Session:
    s = Session(
        SessionSettings(host="127.0.0.1", port=1, helo="x", timeouts={}), Recorder(0.0), number, random.Random()
    )
    control.sessions.add(s)
    return s


def test_watchdog_cancels_late_never_early() -> None:
    async def main() -> tuple[float, bool, bool]:
        control = Control(None)
        waiting, idle = _session(control, 1), _session(control, 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog, control, 0.01)
            t0 = time.perf_counter()
            waiting.arm(0.2)  # idle stays disarmed
            with waiting.scope:
                await trio.sleep(5)
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
        return elapsed, waiting.scope.cancelled_caught, idle.scope.cancel_called

    elapsed, cancelled, idle_cancelled = trio.run(main)
    assert cancelled and not idle_cancelled
    assert 0.2 <= elapsed < 0.5, elapsed
