"""The sink server: listeners, sessions, delivery, stats.

:func:`serve` is the in-process entry point (tests, the conformance matrix);
the ``smtpbench sink`` command and :class:`~smtpbench.sink.embedded.EmbeddedSink`
run it in a process of their own.
"""

from __future__ import annotations

import ipaddress
import json
from itertools import count

import trio

from smtpbench.delivery.reporter import Reporter
from smtpbench.sink import syntax
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.downstream import Downstream, PauseGate
from smtpbench.sink.model import SinkStats, StoredMessage
from smtpbench.sink.session import Session

_KEYWORDS = ("PIPELINING", "8BITMIME", "BINARYMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN", "HELP")
_BUILTIN_LOCAL = ("localhost", "example.test", "[127.0.0.1]", "[IPv6:::1]", "127.0.0.1")


class SinkServer:
    """A running sink: ``host``/``port`` it listens on, ``stats``, ``messages`` (when stored)."""

    def __init__(self, config: SinkConfig, host: str, port: int) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.stats = SinkStats()
        #: Accepted messages, oldest first; only filled with ``store_messages``.
        self.messages: list[StoredMessage] = []
        self.delays = {k: v for k, v in config.delays.items() if v > 0}
        self.randomised = bool(
            config.reject_rcpt_temp
            or config.reject_rcpt_perm
            or config.reject_data_temp
            or config.reject_data_perm
            or config.disconnect
            or config.blackhole
        )
        self.keeps_content = config.store_messages or config.store_dir is not None or config.report_to is not None
        self.reporter = None if config.report_to is None else Reporter(*config.report_to, config.report_buffer)
        #: Blackhole and reports for each accepted message (None: neither is asked for).
        self.downstream = (
            Downstream(self.stats, config.blackhole, self.reporter) if config.blackhole or self.reporter else None
        )
        self.gate = PauseGate()
        self.local_domains = self._local_domains(config, host)
        faults = config.faults
        banner_host = "*" * 32 if "C-01" in faults else config.hostname
        self.greeting = f"220 {banner_host} ESMTP smtpbench-sink\r\n".encode()
        self._ids = count(1)
        self._conn_numbers = count(0)
        self._nursery: trio.Nursery | None = None
        if config.store_dir is not None:
            config.store_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _local_domains(config: SinkConfig, host: str) -> frozenset[str]:
        names = {config.hostname.lower(), host.lower(), *_BUILTIN_LOCAL}
        literal = syntax.address_literal(f"[IPv6:{host}]" if ":" in host else f"[{host}]")
        if literal:
            names.add(literal.lower())
        for domain in config.local_domains:
            norm = syntax.address_literal(domain) if domain.startswith("[") else domain
            names.add((norm or domain).lower().rstrip("."))
        return frozenset(names)

    def is_local_domain(self, domain: str) -> bool:
        """True when mail for ``domain`` is delivered here (not relayed); ``*`` in the local domains: every domain."""
        if "*" in self.local_domains:  # a delivery sink: the final destination of all the mail it gets
            return True
        if domain.startswith("["):
            literal = syntax.address_literal(domain)
            return literal is not None and literal.lower() in self.local_domains
        return domain.lower().rstrip(".") in self.local_domains

    def ehlo_reply(self, name: str, peer_literal: str, *, tls: bool, faults: frozenset[str]) -> bytes:
        """The multi-line 250 to EHLO, advertising what this session may use now."""
        cfg = self.config
        keywords = list(_KEYWORDS)
        keywords.insert(1, f"SIZE {cfg.max_size}")
        if faults and ("E-04" in faults or "V-02" in faults):
            keywords.append("EXPN")
        if faults and "LG-01" in faults:
            keywords.append("ETRN")
        if cfg.ssl_context is not None and not tls and not cfg.implicit_tls:
            keywords.append("STARTTLS")
        if cfg.auth_users and (tls or cfg.allow_plain_auth_without_tls or (faults and "U-01" in faults)):
            keywords.append("AUTH PLAIN LOGIN")
        lines = [f"{cfg.hostname} Hello {name} {peer_literal}".rstrip(), *keywords]
        head = "".join(f"250-{line}\r\n" for line in lines[:-1])
        return (head + f"250 {lines[-1]}\r\n").encode()

    def next_id(self) -> str:
        """A new queue id, unique within this server."""
        return f"{next(self._ids):010X}"

    def next_connection(self) -> int:
        """The serial number of a new connection (seeds its random choices)."""
        return next(self._conn_numbers)

    def deliver(self, message: StoredMessage) -> None:
        """Keep an accepted message in memory and/or write it under ``store_dir``."""
        if self.config.store_messages:
            self.messages.append(message)
        store_dir = self.config.store_dir
        if store_dir is not None:
            (store_dir / f"{message.id}.eml").write_bytes(message.content)
            (store_dir / f"{message.id}.json").write_text(json.dumps(message.envelope(), indent=1) + "\n")

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection."""
        await Session(self, stream, self.next_connection()).run()


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
        server._nursery = nursery
        if server.reporter is not None:
            nursery.start_soon(server.reporter.run)
        if config.pause_at is not None:
            nursery.start_soon(server.gate.schedule, config.pause_at, config.pause_for)
        task_status.started(server)
        await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
