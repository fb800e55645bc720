"""Run ``smtpbench sink`` as a subprocess on a free loopback port.

Used by the load engine for ``[target] embedded = true`` and by benchmarks:
a separate process so the sink's CPU does not compete with the load
generator's event loop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from types import TracebackType
from typing import IO, Any

from smtpbench.sink.cli import LISTENING_PREFIX, STATS_PREFIX
from smtpbench.sink.control import PARENT_ENV

#: A child starts in ~0.6 s on an idle machine; a full test suite on 2 loaded cores once took over 10 s.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: How long a sink that ended its output before listening gets to exit and finish its stderr.
EXIT_WAIT = 5.0


class EmbeddedSink:
    """``with EmbeddedSink(["--delay-rcpt", "5ms"]) as (host, port): ...``.

    Guarantees: startup waits at most 30 s for the listening line, else the
    child is killed and ``RuntimeError`` raised (with its stderr); exit sends
    SIGTERM and waits at most 10 s before killing.  After exit, ``stats``
    holds the counters the child printed (None if it printed none).
    """

    def __init__(self, config_args: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.args = [sys.executable, "-m", "smtpbench", "sink", "--host", host, "--port", str(port), "--quiet"]
        self.args += list(config_args or [])
        self.host = host
        self.port = 0
        self.stats: dict[str, Any] | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self._lines.append(line)
            if line.startswith(LISTENING_PREFIX):
                address = line[len(LISTENING_PREFIX) :]
                host, _, port = address.rpartition(":")
                self.host = host.strip("[]")
                self.port = int(port)
                self._listening.set()
            elif line.startswith(STATS_PREFIX):
                self.stats = json.loads(line[len(STATS_PREFIX) :])
        self._listening.set()  # EOF: wake the waiter, which then sees no port

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip("\n"))

    def __enter__(self) -> tuple[str, int]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{PARENT_ENV: str(os.getpid())})
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for target, stream in ((self._read_stdout, self._proc.stdout), (self._read_stderr, self._proc.stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._listening.wait(START_TIMEOUT) or not self.port:
            try:  # without a port, the event means stdout ended: the child is exiting
                code: int | None = self._proc.wait(EXIT_WAIT)
            except subprocess.TimeoutExpired:
                code = None
            self._kill()
            for thread in self._threads:  # its last words, read to the end
                thread.join(EXIT_WAIT)
            detail = " ".join(line.removeprefix("smtpbench: ") for line in self._stderr[-3:]) or "no output"
            if code is not None:
                raise RuntimeError(f"sink exited (code {code}) before listening: {detail}")
            raise RuntimeError(f"sink did not report a listening port within {START_TIMEOUT:g}s: {detail}")
        return self.host, self.port

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT)
        self.returncode = self._proc.returncode if self._proc is not None else None

    def stop(self) -> None:
        """SIGTERM the child, wait (bounded), collect its stats."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)
        self.returncode = proc.returncode

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the running child (SIGUSR1 pauses it, SIGUSR2 resumes: see ``smtpbench sink``)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    @property
    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        return "\n".join(self._stderr)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
