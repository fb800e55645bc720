"""Test helpers around the sink: a sink in a background thread, and TLS material.

``SinkThread`` runs :func:`smtpbench.sink.server.serve` under its own
``trio.run`` in a daemon thread, so sync tests (stdlib ``smtplib``, raw
sockets) can talk to it over loopback.  ``tls_pair`` makes a throwaway
trustme CA and a server certificate for ``localhost``/``127.0.0.1``/``::1``.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
import trustme

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
        if self._error is not None and exc is None:
            raise self._error


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
