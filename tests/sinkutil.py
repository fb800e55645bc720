"""Test helpers around the sink: a sink in a background thread, and TLS material.

``SinkThread`` runs :func:`smtpbench.sink.server.serve` under its own
``trio.run`` in a daemon thread, so sync tests (stdlib ``smtplib``, raw
sockets) can talk to it over loopback.  ``tls_pair`` makes a throwaway
trustme CA and a server certificate for ``localhost``/``127.0.0.1``/``::1``.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
import trustme

from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.server import SinkServer, serve

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class SinkThread:
    """Context manager: ``with SinkThread(SinkConfig(...)) as server: server.port``.

    Startup and shutdown are bounded (10 s each); an exception inside the
    server thread is re-raised on exit.  ``faults`` and other keyword
    arguments build a :class:`SinkConfig` when no config is given.
    """

    def __init__(self, config: SinkConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            kwargs.setdefault("store_messages", True)
            if "faults" in kwargs:
                kwargs["faults"] = frozenset(kwargs["faults"])
            config = SinkConfig(**kwargs)
        self.config = config
        self._ready: queue.Queue[SinkServer | BaseException] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sink", daemon=True)
        self.server: SinkServer | None = None

    def _main(self) -> None:
        async def runner() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    server = await nursery.start(serve, self.config)
                    self._ready.put(server)

        try:
            trio.run(runner)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.put(exc)

    def __enter__(self) -> SinkServer:
        self._thread.start()
        try:
            got = self._ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise TimeoutError("sink did not start within 10 s") from None
        if isinstance(got, BaseException):
            raise got
        self.server = got
        return got

    def stop(self) -> None:
        """Cancel the server and join its thread (bounded)."""
        if self._token is not None and self._cancel is not None and self._thread.is_alive():
            scope = self._cancel
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(scope.cancel)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise TimeoutError("sink thread did not stop within 10 s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if exc is not None:
            return
        if self._error is not None:
            raise self._error
        if self.server is not None and self.server.stats.internal_errors:
            raise AssertionError(f"the sink hit {self.server.stats.internal_errors} internal error(s); see stderr")


@dataclass
class TLSPair:
    """Server context plus what a client needs to trust it."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_file: str
    cert_file: str
    key_file: str


def tls_pair(directory: str | Path | None = None) -> TLSPair:
    """A trustme CA and a server certificate for localhost, 127.0.0.1 and ::1.

    The PEM files are written under ``directory`` (a new temporary directory
    when None) so that CLI tests can pass ``--tls-cert``/``--tls-key``.
    """
    base = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="sink-tls-"))
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1", "sink.smtpbench.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file = base / "server.pem"
    key_file = base / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return TLSPair(server_ctx, client_ctx, str(ca_file), str(cert_file), str(key_file))


class RawClient:
    """A blocking loopback SMTP client that sends exact bytes and parses replies.

    Every read is bounded by ``timeout``; :meth:`replies` returns what arrived
    (possibly fewer than asked) so tests can assert "no reply" too.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 3.0, greet: bool = True) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.parser = ReplyParser()
        self.pending: list[Reply] = []
        self.closed = False
        self.greeting = self.replies(1)[0] if greet else None

    def send(self, data: bytes) -> None:
        """Write ``data`` as one send."""
        self.sock.sendall(data)

    def replies(self, count: int, timeout: float | None = None, first_timeout: float | None = None) -> list[Reply]:
        """Read until ``count`` replies arrived, the peer closed, or the timeout passed.

        ``first_timeout`` (when given) bounds the wait for the first reply and
        ``timeout`` the wait for the rest, so "exactly one reply" checks stay
        quick without being fragile on a loaded machine.
        """
        span = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + (span if first_timeout is None or self.pending else max(first_timeout, span))
        first_seen = bool(self.pending)
        while len(self.pending) < count and not self.closed:
            if not first_seen and self.pending:
                first_seen = True
                deadline = min(deadline, time.monotonic() + span)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.pending.extend(self.parser.feed(data))
        out, self.pending = self.pending[:count], self.pending[count:]
        return out

    def cmd(self, line: str | bytes) -> Reply:
        """Send one command line (CRLF added) and return its reply."""
        data = line if isinstance(line, bytes) else line.encode()
        self.send(data + b"\r\n")
        got = self.replies(1)
        if not got:
            raise AssertionError(f"no reply to {data[:60]!r}")
        return got[0]

    def codes(self, data: bytes, count: int, timeout: float | None = None) -> list[int]:
        """Send ``data`` in one write and return the codes of up to ``count`` replies.

        The first reply is awaited for the full client timeout; ``timeout``
        bounds the wait for further ones.
        """
        self.send(data)
        return [r.code for r in self.replies(count, timeout, first_timeout=self.timeout)]

    def ehlo(self, name: str = "client.example") -> Reply:
        """EHLO and return the reply."""
        return self.cmd(f"EHLO {name}")

    def wait_closed(self, timeout: float = 3.0) -> bool:
        """True when the server closes the connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.pending.extend(self.parser.feed(data))
        except (TimeoutError, OSError) as exc:
            return not isinstance(exc, TimeoutError)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
