"""A sink process's life: serve until a stop signal, obey the pause signals, give the final stats.

Shared by ``smtpbench sink`` (one process) and each of its ``--workers``
(:mod:`smtpbench.sink.workers`), which differ only in what they do once
listening, which signals stop them, and whether they report their counters
as they go.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from smtpbench.sink.config import SinkConfig
from smtpbench.sink.server import SinkServer, serve

#: At shutdown, how long the sink tries to write the reports it still holds.
REPORT_FLUSH_S = 2.0
#: The signals that pause (SIGUSR1) and resume (SIGUSR2) a sink.
CONTROLS = (signal.SIGUSR1, signal.SIGUSR2)
#: Set (to its pid) by a run that starts a sink as its child: the sink stops when that run is gone.
PARENT_ENV = "SMTPBENCH_SINK_PARENT"
#: How often such a sink checks that its run is still there.
PARENT_CHECK_S = 0.5


def final_stats(server: SinkServer) -> dict[str, Any]:
    """A JSON-ready copy of ``server``'s counters, with its pauses and arrival reports."""
    stats = server.stats.as_dict()
    stats.update(pauses=server.gate.pauses, paused_ms=round(server.gate.paused_s * 1000))
    if server.reporter is not None:
        stats.update(reports_sent=server.reporter.sent, reports_dropped=server.reporter.dropped)
    return stats


async def run_until_stopped(
    config: SinkConfig,
    *,
    stop_signals: tuple[int, ...],
    on_listening: Callable[[SinkServer], None],
    on_stop: Callable[[int], None] | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
    report_every_s: float = 1.0,
) -> dict[str, Any]:
    """Serve ``config`` until one of ``stop_signals``; return :func:`final_stats`.

    ``on_listening`` is called once the sink listens; ``on_stop`` with the
    stop signal; ``report`` (when given) with the stats every
    ``report_every_s`` seconds.  SIGUSR1 pauses the sink (for
    ``config.pause_for`` if set, else until SIGUSR2), SIGUSR2 resumes it.
    Signals blocked by a parent that forked this process are unblocked once
    they are caught here.  Raises ``OSError`` when the address cannot be bound.
    """
    with trio.open_signal_receiver(*stop_signals, *CONTROLS) as signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (*stop_signals, *CONTROLS))
        unbound: OSError | None = None
        async with trio.open_nursery() as nursery:
            try:
                server: SinkServer = await nursery.start(serve, config)
            except OSError as exc:  # raised below: raised in here, the nursery would wrap it in an ExceptionGroup
                unbound = exc
            else:
                on_listening(server)
                if report is not None:
                    nursery.start_soon(_report, server, report, report_every_s)
                if os.environ.get(PARENT_ENV) == str(os.getppid()):  # not in a --workers child: its parent watches
                    nursery.start_soon(_stop_with_parent, os.getppid(), stop_signals[-1])
                await _until_stopped(server, signals, nursery, config.pause_for, on_stop)
        if unbound is not None:
            raise unbound
    return final_stats(server)


async def _until_stopped(
    server: SinkServer,
    signals: AsyncIterator[int],
    nursery: trio.Nursery,
    pause_for: float,
    on_stop: Callable[[int], None] | None,
) -> None:
    """Act on the control signals until a stop signal; then flush the reports and cancel ``nursery``."""
    async for signum in signals:
        if signum == signal.SIGUSR1:  # pause: for --pause-for, or until SIGUSR2
            if pause_for:
                nursery.start_soon(server.gate.pause_for, pause_for)
            else:
                server.gate.pause()
            continue
        if signum == signal.SIGUSR2:
            server.gate.resume()
            continue
        if on_stop is not None:
            on_stop(signum)
        server.gate.resume()
        if server.reporter is not None:
            await server.reporter.flush(REPORT_FLUSH_S)
        nursery.cancel_scope.cancel()
        return


async def _stop_with_parent(parent: int, stop: int) -> None:
    """Send this process ``stop`` once ``parent`` is no longer its parent (a killed run must not leave its sink)."""
    while os.getppid() == parent:
        await trio.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), stop)


async def _report(server: SinkServer, report: Callable[[dict[str, Any]], None], every_s: float) -> None:
    while True:
        await trio.sleep(every_s)
        report(final_stats(server))
