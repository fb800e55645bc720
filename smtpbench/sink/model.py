"""What the sink counts and what it keeps: :class:`SinkStats` and :class:`StoredMessage`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from smtpbench.protocol.server_state import ServerCounters

#: Distinct client addresses counted one by one; connections from further ones are counted under
#: :data:`OTHER_CLIENTS`, so that a sink exposed to many clients keeps bounded memory.
MAX_CLIENT_ADDRESSES = 1024
OTHER_CLIENTS = "other"


@dataclass
class SinkStats(ServerCounters):
    """Counters of one sink process: the protocol's (:class:`ServerCounters`) plus the connections'.

    Plain ints, updated on the event loop only.
    """

    connections: int = 0
    active: int = 0
    idle_timeouts: int = 0
    disconnects_injected: int = 0
    aborted_sessions: int = 0
    tls_handshakes: int = 0
    #: Of those, abbreviated handshakes that resumed an earlier TLS session (ticket or session id).
    tls_resumed: int = 0
    tls_failures: int = 0
    internal_errors: int = 0
    #: Connections per client IP address (at most MAX_CLIENT_ADDRESSES keys, then OTHER_CLIENTS).
    client_addresses: dict[str, int] = field(default_factory=dict)
    #: Accepted with 250, then dropped (the blackhole knob); included in messages_accepted.
    messages_blackholed: int = 0
    #: With --proxy-protocol: connections whose PROXY header was read, and those refused without a valid one.
    proxy_headers: int = 0
    proxy_refused: int = 0

    def count_client(self, ip: str) -> None:
        """Count one connection from ``ip`` (bounded: see :data:`MAX_CLIENT_ADDRESSES`)."""
        seen = self.client_addresses
        if ip not in seen and len(seen) >= MAX_CLIENT_ADDRESSES:
            ip = OTHER_CLIENTS
        seen[ip] = seen.get(ip, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter (``client_addresses`` a dict of address -> connections)."""
        return asdict(self)


@dataclass
class StoredMessage:
    """One accepted message: envelope plus content as delivered.

    ``content`` is the message with dot-stuffing undone and the sink's
    ``Received:`` trace line prepended (exactly what a mailbox would hold).
    """

    id: str
    mail_from: str
    rcpt_to: list[str]
    content: bytes
    helo: str
    peer: str
    tls: bool
    auth_user: str | None
    via: str  # "DATA" or "BDAT"
    mail_params: dict[str, str | None] = field(default_factory=dict)

    def envelope(self) -> dict[str, object]:
        """The envelope as a JSON-ready dict (what ``--store`` writes next to the .eml)."""
        return {
            "id": self.id,
            "mail_from": self.mail_from,
            "rcpt_to": list(self.rcpt_to),
            "helo": self.helo,
            "peer": self.peer,
            "tls": self.tls,
            "auth_user": self.auth_user,
            "via": self.via,
            "mail_params": dict(self.mail_params),
            "size": len(self.content),
        }
