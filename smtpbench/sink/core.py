"""What every session of one sink shares: configuration, counters, queue ids, delivery.

:class:`SinkCore` is the base of :class:`~smtpbench.sink.server.SinkServer`;
sessions (:mod:`smtpbench.sink.session`) depend on this module only, so the
server can create sessions without the two modules importing each other.
"""

from __future__ import annotations

import json
from itertools import count

from smtpbench.delivery.reporter import Reporter
from smtpbench.protocol import syntax
from smtpbench.protocol.server_state import ServerConfig
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.downstream import Downstream, PauseGate
from smtpbench.sink.model import SinkStats, StoredMessage

_BUILTIN_LOCAL = ("localhost", "example.test", "[127.0.0.1]", "[IPv6:::1]", "127.0.0.1")


class SinkCore:
    """A sink's shared state: ``host``/``port`` it listens on, ``stats``, ``messages`` (when stored)."""

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
        #: The pause control (smtpbench.sink.downstream): sessions hold their replies while it is paused.
        self.gate = PauseGate()
        #: What the protocol's server role offers and enforces, for every session.
        self.protocol = ServerConfig(
            hostname=config.hostname,
            max_size=config.max_size,
            max_recipients=config.max_recipients,
            max_bad_commands=config.max_bad_commands,
            starttls=config.ssl_context is not None and not config.implicit_tls,
            auth_users=config.auth_users,
            auth_token=config.auth_token,
            allow_plain_auth_without_tls=config.allow_plain_auth_without_tls,
            keep_content=self.keeps_content,
            local_domains=self._local_domains(config, host),
        )
        banner_host = "*" * 32 if "C-01" in config.faults else config.hostname
        self.greeting = f"220 {banner_host} {'LMTP' if config.lmtp else 'ESMTP'} smtpbench-sink\r\n".encode()
        # Workers number from worker << 32 up: ids and seeds stay distinct across processes.
        self._ids = count((config.worker << 32) + 1)
        self._conn_numbers = count(config.worker << 32)
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
