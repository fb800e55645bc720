"""``smtpbench sink --workers N``: N processes serve one port; the parent speaks for them all.

Theory of operation
-------------------
The parent binds the address once with SO_REUSEPORT (without listening: it
only reserves the port, and learns it when ``--port 0``), then forks the
workers.  Each worker binds the same address and port with SO_REUSEPORT and
listens, so Linux spreads new connections among them; each runs the whole
sink (:func:`smtpbench.sink.control.run_until_stopped`) in its own Trio
loop and sends its counters to the parent over a pipe every second and once
more when it stops.  Once every worker listens, the parent prints the one
``listening on`` line.

Signals: the parent forwards SIGINT/SIGTERM (as SIGTERM: workers ignore a
terminal's SIGINT so that they stop once, as told) and SIGUSR1/SIGUSR2 to
every worker.  A worker that dies (killed, crashed) is reported on stderr at
once; the others go on serving the port, its counters up to its last report
(at most a second old) are kept, and the final stats say how each worker
ended.  The parent's stats are the sum over workers
(:func:`merge_stats`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from types import FrameType
from typing import Any

import trio

from smtpbench.errors import ConfigError
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.control import CONTROLS, run_until_stopped
from smtpbench.sink.model import MAX_CLIENT_ADDRESSES, OTHER_CLIENTS
from smtpbench.sink.server import SinkServer, reuse_port_socket

#: Every worker must listen within this many seconds (a loaded 2-core machine starts one in well under 5).
START_TIMEOUT_S = 30.0
#: After a stop, how long workers get to say goodbye to their sessions before they are killed.
STOP_TIMEOUT_S = 15.0
#: How often a worker sends its counters to the parent.
REPORT_EVERY_S = 1.0
#: Counters that are the same for all workers (each pauses on the same signal): the largest is kept, not the sum.
SHARED_COUNTERS = frozenset({"pauses", "paused_ms"})
STOPS = (signal.SIGINT, signal.SIGTERM)


class WorkerError(Exception):
    """The workers could not be started (one line: which and why)."""


def check_supported() -> None:
    """Raise :class:`ConfigError` where several workers cannot share a port (SO_REUSEPORT spreading is Linux's)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers above 1 needs Linux (SO_REUSEPORT)", key="--workers")


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The sink's stats as one process would give them: counters summed, addresses merged (bounded)."""
    merged: dict[str, Any] = {}
    addresses: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            if key == "client_addresses":
                for ip, n in value.items():
                    if ip not in addresses and len(addresses) >= MAX_CLIENT_ADDRESSES:
                        ip = OTHER_CLIENTS
                    addresses[ip] = addresses.get(ip, 0) + n
            elif key in SHARED_COUNTERS:
                merged[key] = max(merged.get(key, 0), value)
            elif isinstance(value, int):
                merged[key] = merged.get(key, 0) + value
    merged["client_addresses"] = addresses
    return merged


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    listening: bool = False
    stats: dict[str, Any] | None = None
    stopped: bool = False
    status: str = "running"
    start_error: str = ""

    def drain(self) -> None:
        """Take every message the worker has sent so far."""
        try:
            while self.conn.poll():
                kind, payload = self.conn.recv()
                if kind == "listening":
                    self.listening = True
                elif kind == "error":
                    self.start_error = str(payload)
                else:  # "stats" every second, "final" once stopped
                    self.stats = payload
                    self.stopped = self.stopped or kind == "final"
        except (EOFError, OSError):
            pass


def _worker_main(config: SinkConfig, conn: multiprocessing.connection.Connection) -> None:
    """A worker process: serve until SIGTERM (or the parent's death), report through ``conn``."""
    # The parent blocked these signals across the fork; a terminal's SIGINT is the parent's to forward.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, *CONTROLS):
        signal.signal(signum, signal.SIG_DFL)
    _die_with_parent()

    def listening(server: SinkServer) -> None:
        conn.send(("listening", server.port))

    run = partial(
        run_until_stopped,
        config,
        stop_signals=(signal.SIGTERM,),
        on_listening=listening,
        report=lambda stats: conn.send(("stats", stats)),
        report_every_s=REPORT_EVERY_S,
    )
    try:
        stats = trio.run(run)
    except OSError as exc:
        conn.send(("error", exc.strerror or str(exc)))
        os._exit(3)
    conn.send(("final", stats))
    conn.close()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the parent dies, so no orphan keeps the port."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _signal(worker: _Worker, signum: int) -> None:
    pid = worker.process.pid
    if pid and worker.process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _how_it_ended(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Workers:
    """The parent's side: start, watch, signal and stop the workers; :meth:`run` is all of it."""

    def __init__(self, config: SinkConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.workers: list[_Worker] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.died = 0
        self._pid = os.getpid()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # pragma: no cover - a worker before it reset its handlers
            return
        if signum in STOPS:
            if not self.stopping:
                self.stopping = True
                self.stop_deadline = time.monotonic() + STOP_TIMEOUT_S
            signum = signal.SIGTERM
        for w in self.workers:
            _signal(w, signum)

    def run(self, on_listening: Callable[[str, int], None]) -> dict[str, Any]:
        """Serve until SIGINT/SIGTERM; return the merged stats with ``workers`` (index, pid, status, counts).

        ``on_listening(host, port)`` is called once every worker listens.
        Raises ``OSError`` when the address cannot be bound and
        :class:`WorkerError` when a worker does not start.
        """
        placeholder = reuse_port_socket(self.config.host, self.config.port)
        bound, port = str(placeholder.getsockname()[0]), int(placeholder.getsockname()[1])
        # Said as the one-process sink says it: the address bound, or the name when that is a wildcard.
        host = self.config.host if ipaddress.ip_address(bound).is_unspecified and self.config.host else bound
        config = replace(self.config, port=port, reuse_port=True)
        handled = (*STOPS, *CONTROLS)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            ctx = multiprocessing.get_context("fork")
            for index in range(self.count):
                reader, writer = ctx.Pipe(duplex=False)
                process = ctx.Process(
                    target=_worker_main, args=(replace(config, worker=index), writer), name=f"sink-worker-{index}"
                )
                # Blocked across the fork: a signal now must not reach a worker still holding our handlers.
                old = signal.pthread_sigmask(signal.SIG_BLOCK, handled)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                writer.close()
                self.workers.append(_Worker(index, process, reader))
            self._wait_listening()
            placeholder.close()
            on_listening(host, port)
            self._watch()
        finally:
            placeholder.close()
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        stats = merge_stats([w.stats for w in self.workers if w.stats is not None])
        stats["workers"] = [
            {
                "index": w.index,
                "pid": w.process.pid,
                "status": w.status,
                "messages_accepted": (w.stats or {}).get("messages_accepted", 0),
                "connections": (w.stats or {}).get("connections", 0),
            }
            for w in self.workers
        ]
        return stats

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.listening for w in self.workers):
            if self.stopping:
                raise WorkerError("stopped before every worker listened")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"the workers did not all listen within {START_TIMEOUT_S:g}s")
            waiting = [w for w in self.workers if not w.listening]
            multiprocessing.connection.wait(
                [w.conn for w in waiting] + [w.process.sentinel for w in waiting], timeout=min(left, 0.5)
            )
            for w in waiting:
                w.drain()
                if not w.listening and not w.process.is_alive():
                    w.process.join()
                    why = w.start_error or _how_it_ended(w.process)
                    raise WorkerError(f"worker {w.index} did not start: {why}")

    def _watch(self) -> None:
        """Take reports until every worker has ended; report deaths; kill stragglers after a stop."""
        while True:
            alive = [w for w in self.workers if w.status == "running"]
            if not alive:
                return
            if self.stopping and time.monotonic() > self.stop_deadline:
                return  # _stop_all kills what is left
            multiprocessing.connection.wait([w.conn for w in alive] + [w.process.sentinel for w in alive], 0.5)
            for w in alive:
                w.drain()
                if w.process.is_alive():
                    continue
                w.process.join()
                w.drain()
                if w.stopped:
                    w.status = "stopped"
                    continue
                w.status = "died: " + _how_it_ended(w.process)
                self.died += 1
                print(
                    f"smtpbench-sink: worker {w.index} (pid {w.process.pid}) {w.status}; its counters up to its"
                    f" last report are kept, the other workers go on",
                    file=sys.stderr,
                    flush=True,
                )

    def _stop_all(self) -> None:
        """SIGTERM the workers still running, wait (bounded), then kill; collect their last reports."""
        for w in self.workers:
            _signal(w, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)
                if w.status == "running":
                    w.status = "killed after the stop timeout"
            w.drain()
            if w.status == "running":
                w.status = "stopped" if w.stopped else "died: " + _how_it_ended(w.process)
            w.conn.close()
