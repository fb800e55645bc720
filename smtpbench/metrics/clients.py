"""summary.json ``proxy``: the client addresses a run announced with the PROXY protocol, counted exactly.

A run announces at most as many distinct addresses as ``target.proxy_sources``
names (4096 at most), so the tally keeps the set of those seen: bounded, and
exact when shards or workers merge (a union, not a sum, since two parts may
announce the same address).  In the summary the set is written as ranges of
consecutive addresses (``"198.51.100.1-198.51.100.254"``), which a round-robin
run keeps to one or a few entries, and read back from there by ``merge``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Most addresses a ``clients`` list may expand to when read back (a summary is input to ``merge``).
MAX_CLIENTS = 65536


@dataclass
class ClientTally:
    """Sessions that announced a client address, and the distinct addresses announced."""

    version: str
    announced: int = 0
    seen: set[IPAddress] = field(default_factory=set)

    def note(self, client: IPAddress) -> None:
        """Count one session that announced ``client``."""
        self.announced += 1
        self.seen.add(client)

    def merge(self, other: ClientTally) -> None:
        """Add ``other``'s sessions; the distinct addresses become the union of both."""
        self.announced += other.announced
        self.seen |= other.seen

    def to_dict(self) -> dict[str, Any]:
        """summary.json's ``proxy``: ``{version, sessions_announced, distinct_clients, clients}``."""
        return {
            "version": self.version,
            "sessions_announced": self.announced,
            "distinct_clients": len(self.seen),
            "clients": ranges(self.seen),
        }

    @classmethod
    def from_dict(cls, doc: Any) -> ClientTally:
        """The tally a :meth:`to_dict` wrote; ``ValueError`` (one line) for anything else."""
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
            raise ValueError("proxy is not {version, sessions_announced, clients}")
        announced, listed = doc.get("sessions_announced"), doc.get("clients")
        if not isinstance(announced, int) or announced < 0 or not isinstance(listed, list):
            raise ValueError("proxy.sessions_announced or proxy.clients is malformed")
        return cls(doc["version"], announced, expand(listed))


def ranges(addresses: set[IPAddress]) -> list[str]:
    """``addresses`` as sorted runs of consecutive addresses: ``"A-B"``, or ``"A"`` for a run of one."""
    out: list[str] = []
    ordered = sorted(addresses, key=lambda ip: (ip.version, int(ip)))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1].version == ordered[i].version:
            if int(ordered[j + 1]) != int(ordered[j]) + 1:
                break
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return out


def expand(listed: list[Any], limit: int = MAX_CLIENTS) -> set[IPAddress]:
    """The addresses :func:`ranges` wrote; ``ValueError`` for a malformed entry or more than ``limit`` in all."""
    seen: set[IPAddress] = set()
    for entry in listed:
        if not isinstance(entry, str):
            raise ValueError(f"proxy.clients entry {entry!r} is not a string")
        first, _, last = entry.partition("-")
        try:
            a = ipaddress.ip_address(first)
            b = ipaddress.ip_address(last) if last else a
        except ValueError:
            raise ValueError(f"proxy.clients entry {entry[:90]!r} is not an address or A-B range") from None
        if a.version != b.version or int(b) < int(a) or len(seen) + int(b) - int(a) >= limit:
            raise ValueError(f"proxy.clients entry {entry[:90]!r} is not a range of at most {limit} addresses")
        kind = type(a)
        seen.update(kind(n) for n in range(int(a), int(b) + 1))
    return seen
