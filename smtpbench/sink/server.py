"""The sink server: listeners and one :class:`~smtpbench.sink.session.Session` per connection.

:func:`serve` is the in-process entry point (tests, the conformance matrix);
the ``smtpbench sink`` command and :class:`~smtpbench.sink.embedded.EmbeddedSink`
run it in a process of their own.
"""

from __future__ import annotations

import ipaddress
import socket

import trio

from smtpbench.sink.config import SinkConfig
from smtpbench.sink.core import SinkCore
from smtpbench.sink.poller import Poller, epoll_available
from smtpbench.sink.proxy import client_of
from smtpbench.sink.session import Session

BACKLOG = 4096


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound, not yet listening, to ``host``'s first address and ``port``, with SO_REUSEPORT.

    Every such socket of this user on the same address and port joins one
    group among which Linux spreads new connections (the sink's workers).
    Raises ``OSError`` (``socket.gaierror`` for a name that does not resolve).
    """
    family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class SinkServer(SinkCore):
    """A running sink: ``host``/``port`` it listens on, ``stats``, ``messages`` (when stored)."""

    #: The shared epoll set of the plain-TCP sessions (None where there is no epoll).
    poller: Poller | None = None

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection (with --proxy-protocol: once its PROXY header is read)."""
        peer = None
        if self.config.proxy_protocol:
            try:
                peer = await client_of(stream, self.stats)
            finally:
                if peer is None:  # refused, or the sink stops meanwhile
                    await trio.aclose_forcefully(stream)
            if peer is None:
                return
        await Session(self, stream, self.next_connection(), peer, self.poller).run()


async def serve(config: SinkConfig, *, task_status: trio.TaskStatus[SinkServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Bind, report the :class:`SinkServer` through ``task_status``, serve until cancelled.

    Raises :class:`~smtpbench.errors.ConfigError` for an invalid config and
    ``OSError`` when the address cannot be bound.
    """
    config.validate()
    if config.reuse_port:
        shared = reuse_port_socket(config.host, config.port)
        shared.listen(BACKLOG)
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(shared))]
    else:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host, backlog=BACKLOG)
    if config.port == 0 and len(listeners) > 1:
        # A name with several addresses would get a different free port on
        # each; serve the first only, so that one (host, port) describes us.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    sockname = listeners[0].socket.getsockname()
    host, port = str(sockname[0]), int(sockname[1])
    try:
        if ipaddress.ip_address(host).is_unspecified:
            host = config.host or host
    except ValueError:
        pass
    server = SinkServer(config, host, port)
    if epoll_available():
        server.poller = Poller(server.gate)
    try:
        async with trio.open_nursery() as nursery:
            if server.poller is not None:
                nursery.start_soon(server.poller.run)
            if server.reporter is not None:
                nursery.start_soon(server.reporter.run)
            if config.pause_at is not None:
                nursery.start_soon(server.gate.schedule, config.pause_at, config.pause_for)
            task_status.started(server)
            await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
    finally:
        if server.poller is not None:
            server.poller.close()
