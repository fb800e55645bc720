"""The sink server: listeners and one :class:`~smtpbench.sink.session.Session` per connection.

:func:`serve` is the in-process entry point (tests, the conformance matrix);
the ``smtpbench sink`` command and :class:`~smtpbench.sink.embedded.EmbeddedSink`
run it in a process of their own.
"""

from __future__ import annotations

import ipaddress

import trio

from smtpbench.sink.config import SinkConfig
from smtpbench.sink.core import SinkCore
from smtpbench.sink.proxy import client_of
from smtpbench.sink.session import Session


class SinkServer(SinkCore):
    """A running sink: ``host``/``port`` it listens on, ``stats``, ``messages`` (when stored)."""

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
        await Session(self, stream, self.next_connection(), peer).run()


async def serve(config: SinkConfig, *, task_status: trio.TaskStatus[SinkServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Bind, report the :class:`SinkServer` through ``task_status``, serve until cancelled.

    Raises :class:`~smtpbench.errors.ConfigError` for an invalid config and
    ``OSError`` when the address cannot be bound.
    """
    config.validate()
    listeners = await trio.open_tcp_listeners(config.port, host=config.host, backlog=4096)
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
    async with trio.open_nursery() as nursery:
        if server.reporter is not None:
            nursery.start_soon(server.reporter.run)
        if config.pause_at is not None:
            nursery.start_soon(server.gate.schedule, config.pause_at, config.pause_for)
        task_status.started(server)
        await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
