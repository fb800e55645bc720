"""``[target] source_addresses``: the local addresses sessions bind to, round-robin.

Why: a TCP connection is one 4-tuple.  Towards one server address and port,
one local address has only the ephemeral port range (Linux: 32768-60999, about
28,000 ports), and a port stays in TIME_WAIT for 60 s after the client
closes: about 470 new connections per second sustained per source address.
Several source addresses multiply that.

The key is a list of IP addresses (``["127.0.0.2", "127.0.0.3"]``) or one
network in CIDR notation (``"127.0.0.0/29"``: its host addresses, as
:meth:`ipaddress.IPv4Network.hosts` lists them).  Validation guarantees a
non-empty list of distinct unicast addresses of one family, at most
:data:`MAX_SOURCE_ADDRESSES` of them.  Whether they exist on this host is
found out by binding: a missing one is the ``eaddrnotavail`` error kind.

This module imports pydantic (through :mod:`smtpbench.fields`): import it lazily.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated, Any

from pydantic import Field

from smtpbench.config import shown, type_name
from smtpbench.fields import Invalid, checker

#: At most this many source addresses (a CIDR larger than that is refused): 4096 addresses
#: already allow over 100 million connections to one server port per TIME_WAIT period.
MAX_SOURCE_ADDRESSES = 4096

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EXPECTED = 'a list of IP addresses like ["127.0.0.2", "127.0.0.3"] or a network like "127.0.0.0/30"'


def _address(value: Any) -> IPAddress:
    if not isinstance(value, str):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="an IP address")
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise Invalid(f"{shown(value)} is not an IP address", expected=_EXPECTED) from None
    if ip.is_unspecified or ip.is_multicast:
        raise Invalid(f"{shown(value)} is not a unicast address", expected="an address of this host")
    return ip


def _network(value: str) -> list[IPAddress]:
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        hint = "host bits set" in str(exc) and "give the network address, e.g. 127.0.0.0/30"
        raise Invalid(f"{shown(value)} is not a network: {exc}", expected=_EXPECTED, hint=hint or None) from None
    if net.num_addresses > MAX_SOURCE_ADDRESSES + 2:
        raise Invalid(
            f"{value} holds {net.num_addresses:,} addresses",
            expected=f"a network of at most {MAX_SOURCE_ADDRESSES} addresses",
        )
    hosts: list[IPAddress] = list(net.hosts())  # never empty: a /32 or /128 is its address
    return hosts[:MAX_SOURCE_ADDRESSES]


def parse_sources(value: Any) -> list[IPAddress]:
    """The addresses ``value`` (a list of addresses or a CIDR string) names, in order.

    Raises :class:`~smtpbench.fields.Invalid` (the key path is added by the
    caller) for anything but distinct unicast addresses of one family, at
    most :data:`MAX_SOURCE_ADDRESSES`; a list element's error names its index.
    """
    if isinstance(value, str):
        if "/" not in value:
            raise Invalid(f"{shown(value)} is not a network", expected=_EXPECTED, hint="put one address in [ ]")
        ips = _network(value)
    elif isinstance(value, list):
        if not value:
            raise Invalid("is an empty array", expected=_EXPECTED)
        if len(value) > MAX_SOURCE_ADDRESSES:
            raise Invalid(f"lists {len(value):,} addresses", expected=f"at most {MAX_SOURCE_ADDRESSES}")
        ips = []
        for i, item in enumerate(value):
            try:
                ips.append(_address(item))
            except Invalid as exc:
                raise Invalid(exc.problem, expected=exc.expected, hint=exc.hint, loc=(i,)) from None
    else:
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected=_EXPECTED)
    for i, ip in enumerate(ips):
        if ip.version != ips[0].version:
            raise Invalid(f"{ip} is IPv{ip.version}, {ips[0]} IPv{ips[0].version}", expected="one family", loc=(i,))
        if ip in ips[:i]:
            raise Invalid(f"{ip} is listed twice", expected="distinct addresses", loc=(i,))
    return ips


def _check(value: Any) -> list[str] | str:
    parse_sources(value)
    return value.strip() if isinstance(value, str) else [str(ipaddress.ip_address(v.strip())) for v in value]


#: The field type: kept as written (a CIDR stays one string in the resolved profile).
SourceAddresses = Annotated[
    list[str] | str,
    checker(_check, Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | str),
]


def family_of(value: list[str] | str) -> int:
    """``socket.AF_INET`` or ``AF_INET6``: the family of a validated ``source_addresses``."""
    return socket.AF_INET6 if parse_sources(value)[0].version == 6 else socket.AF_INET


def check_target_family(host: str, value: list[str] | str) -> None:
    """Raise :class:`Invalid` when ``host`` is an IP literal of the other family than the sources.

    A host name is resolved later in the sources' family (its other addresses are not used).
    """
    try:
        target = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    first = parse_sources(value)[0]
    if target.version != first.version:
        raise Invalid(
            f"IPv{first.version} source addresses cannot reach the IPv{target.version} target {host}",
            expected=f"IPv{target.version} source addresses",
        )


def bind_addresses(value: list[str] | str) -> tuple[tuple[str, int], ...]:
    """The socket addresses to bind (port 0: the kernel picks at connect time), in round-robin order."""
    return tuple((str(ip), 0) for ip in parse_sources(value))
