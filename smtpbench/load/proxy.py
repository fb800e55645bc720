"""``target.proxy_protocol``: each session announces a synthetic client with a PROXY protocol header.

Why: a server behind a proxy (Postfix with ``smtpd_upstream_proxy_protocol =
haproxy``, postscreen, Exim, a sink with ``--proxy-protocol``) takes the client
address from the header, so policies keyed on it (postscreen, per-client rate
limits, allow lists) can be loaded from one machine with many clients.  The
addresses are data in the header only: every packet still goes to the target.

Which client a session announces: the sessions are numbered run-wide (across
shards and workers, :meth:`smtpbench.load.split.Part.number`); session ``n``
announces address ``(n - 1) % P`` of the ``P`` that ``target.proxy_sources``
names (round-robin, in order: the first session the first address), from
source port ``1024 + ((n - 1) // P) % 64512``, so the first ``P * 64512``
sessions announce distinct (address, port) pairs as real clients would.  The
destination is the target's resolved address and port.  When the sources and
the target are of different families, both are announced as IPv6 (an IPv4
address as ``::ffff:a.b.c.d``, as HAProxy does): a header has one family.

The header is written right after TCP connect, before the greeting is
awaited and before any TLS (implicit TLS included):
:func:`smtpbench.load.opening.step_proxy`.
"""

from __future__ import annotations

import ipaddress

from smtpbench.load.sources import IPAddress, parse_sources
from smtpbench.load.split import Part
from smtpbench.net.connection import SockAddr
from smtpbench.protocol.proxy import ProxyHeader, encode

#: The synthetic source ports: 1024 .. 65535.
FIRST_PORT = 1024
PORTS = 65536 - FIRST_PORT


class Announcer:
    """The run's PROXY headers: :meth:`header` of a session number; pure, shared by every session."""

    def __init__(self, version: str, sources: list[str] | str, part: Part) -> None:
        self.version = 1 if version == "v1" else 2
        self.sources: list[IPAddress] = parse_sources(sources)
        self.part = part

    def client(self, number: int) -> tuple[IPAddress, int]:
        """The (address, port) session ``number`` (this part's own, 1-based) announces."""
        n = self.part.number(number) - 1
        count = len(self.sources)
        return self.sources[n % count], FIRST_PORT + (n // count) % PORTS

    def header(self, number: int, destination: SockAddr) -> tuple[bytes, IPAddress]:
        """The header session ``number`` sends to ``destination`` (the resolved target), and the client it names.

        The client is the ``proxy_sources`` address as configured, also when
        the header carries it as IPv4-mapped IPv6.
        """
        client, port = self.client(number)
        source, target = client, ipaddress.ip_address(destination[0].partition("%")[0])
        if source.version != target.version:  # one family per header: both as IPv6
            source, target = _as_v6(source), _as_v6(target)
        family = f"TCP{source.version}"
        return encode(ProxyHeader(self.version, family, str(source), str(target), port, destination[1])), client


def _as_v6(ip: IPAddress) -> ipaddress.IPv6Address:
    return ip if isinstance(ip, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{ip}")
