"""The run's side of the report protocol (:mod:`.wire`): take arrival reports from delivery sinks.

The listening socket is bound before the run starts (a busy address is an
error before any traffic); :meth:`ReportListener.serve` then serves every
sink that connects, for as long as the run lasts.
"""

from __future__ import annotations

import socket

import trio

from smtpbench.delivery import wire
from smtpbench.delivery.tracker import Tracker
from smtpbench.errors import RunError

RECEIVE_SIZE = 65536


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port); raises RunError if that fails."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise RunError(f"cannot listen for delivery reports on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class ReportListener:
    """Serves delivery sinks' reports into a :class:`Tracker`; counts what it saw."""

    def __init__(self, sock: socket.socket, tracker: Tracker) -> None:
        self.sock = sock
        self.tracker = tracker
        host, port = sock.getsockname()[:2]
        #: ``HOST:PORT`` to give sinks as ``--report-to``.
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._last_seq: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self.reports = 0
        self.resent = 0
        self.bad_connections = 0

    @property
    def sinks(self) -> int:
        """Distinct sinks that reported."""
        return len(self._last_seq)

    @property
    def dropped(self) -> int:
        """Reports the sinks had to drop (each such message then looks lost)."""
        return sum(self._dropped.values())

    async def serve(self) -> None:
        """Serve sinks until cancelled."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        reader = wire.LineReader()
        token: str | None = None
        tracker = self.tracker
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        return
                    for line in reader.feed(data):
                        record = wire.parse(line)
                        if isinstance(record, wire.Arrival) and token is not None:
                            if record.seq <= self._last_seq[token]:
                                self.resent += 1
                                continue
                            self._last_seq[token] = record.seq
                            self.reports += 1
                            tracker.arrived(record.ident, record.epoch, record.copies)
                        elif isinstance(record, wire.Dropped) and token is not None:
                            self._dropped[token] = max(self._dropped.get(token, 0), record.total)
                        elif isinstance(record, wire.Hello) and token is None:
                            token = record.token
                            self._last_seq.setdefault(token, 0)
                        else:
                            raise wire.ProtocolError("records before the hello line, or a second hello")
        except wire.ProtocolError:
            self.bad_connections += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
