"""The PROXY protocol (HAProxy's, versions 1 and 2), sans I/O: :func:`encode` and :func:`decode`.

A proxy in front of a server opens each connection by announcing the client
it relays: version 1 is one text line (``PROXY TCP4 198.51.100.7 127.0.0.1
1031 25\\r\\n``, at most 107 octets), version 2 a binary block (a 12-octet
signature, version and command, family and transport, a length, the
addresses, optional TLVs).  Postfix (``smtpd_upstream_proxy_protocol =
haproxy``), Exim and many others take the announced client as the
connection's client.  The reference is HAProxy's ``proxy-protocol.txt``
(2020/03/05); the checks below cite its rules.

:func:`decode` is what a server runs on the first octets of a connection: it
returns ``None`` while those could still begin a valid header, the header
and its length once complete, and raises :class:`ProxyError` for anything
else, never another exception, whatever the input (hypothesis-tested).
:func:`encode` writes what :func:`decode` reads back exactly.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

#: The version 2 signature (section 2.2): it cannot start any text protocol's first line.
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
#: Section 2.1: a version 1 line is at most 107 octets, CRLF included.
V1_MAX = 107
V2_FIXED = 16
#: Families a header may announce; ``UNKNOWN`` (v1 ``UNKNOWN``, v2 ``AF_UNSPEC`` or ``LOCAL``) carries no address.
FAMILIES = ("TCP4", "TCP6", "UDP4", "UDP6", "UNIX", "UNKNOWN")
#: v2 family-and-transport octets (section 2.2: any other must be rejected).
_V2_FAMILY = {0x00: "UNKNOWN", 0x11: "TCP4", 0x12: "UDP4", 0x21: "TCP6", 0x22: "UDP6", 0x31: "UNIX", 0x32: "UNIX"}
_V2_CODE = {"UNKNOWN": 0x00, "TCP4": 0x11, "UDP4": 0x12, "TCP6": 0x21, "UDP6": 0x22}
#: Octets of the v2 address block per address family (high nibble of the family octet).
_V2_ADDRESS_SIZE = {0: 0, 1: 12, 2: 36, 3: 216}


class ProxyError(ValueError):
    """The octets are not a valid PROXY protocol header; the message says why, in one line."""


@dataclass(frozen=True)
class ProxyHeader:
    """One PROXY header.  ``local`` is v2's ``LOCAL`` command (a health check: use the real addresses).

    Addresses are canonical text (``str(ipaddress.ip_address(...))``) for
    the TCP and UDP families, ``None`` otherwise.
    """

    version: int
    family: str = "UNKNOWN"
    source: str | None = None
    destination: str | None = None
    source_port: int = 0
    destination_port: int = 0
    local: bool = False

    @property
    def client(self) -> str | None:
        """The announced TCP client address, or ``None`` when the real one applies (LOCAL, UNKNOWN, UNIX, UDP)."""
        return self.source if self.family in ("TCP4", "TCP6") and not self.local else None


def header_for(version: int, source: str, destination: str, source_port: int, destination_port: int) -> ProxyHeader:
    """The ``PROXY`` header of a TCP connection from ``source`` to ``destination`` (IP addresses of one family).

    Raises :class:`ProxyError` for a non-address, mixed families or a port outside 0..65535.
    """
    try:
        src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    if src.version != dst.version:
        raise ProxyError(f"{src} and {dst} are of different families")
    return ProxyHeader(version, f"TCP{src.version}", str(src), str(dst), source_port, destination_port)


def encode(header: ProxyHeader) -> bytes:
    """The header's octets; :func:`decode` of them gives ``header`` back with their length.

    Raises :class:`ProxyError` for what a version cannot say (v1 has no
    LOCAL, UDP or UNIX; no version encodes UNIX addresses here).
    """
    h = header
    if h.version not in (1, 2):
        raise ProxyError(f"no PROXY protocol version {h.version}")
    if h.local or h.family == "UNKNOWN":
        if h.version == 1:
            if h.local:
                raise ProxyError("version 1 has no LOCAL command")
            return b"PROXY UNKNOWN\r\n"
        return SIGNATURE + bytes((0x20 if h.local else 0x21, 0x00)) + b"\x00\x00"
    if h.family not in _V2_CODE or (h.version == 1 and h.family.startswith("UDP")):
        raise ProxyError(f"version {h.version} cannot announce {h.family}")
    if not (0 <= h.source_port <= 0xFFFF and 0 <= h.destination_port <= 0xFFFF):
        raise ProxyError("a port is outside 0..65535")
    want = int(h.family[-1])
    try:
        src, dst = ipaddress.ip_address(h.source or ""), ipaddress.ip_address(h.destination or "")
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    if src.version != want or dst.version != want:
        raise ProxyError(f"{h.family} needs IPv{want} addresses, not {src} and {dst}")
    if h.version == 1:
        return f"PROXY {h.family} {src} {dst} {h.source_port} {h.destination_port}\r\n".encode("ascii")
    block = src.packed + dst.packed + struct.pack("!HH", h.source_port, h.destination_port)
    return SIGNATURE + bytes((0x21, _V2_CODE[h.family])) + struct.pack("!H", len(block)) + block


def describe(data: bytes) -> bytes:
    """One readable line (CRLF-ended) for a trace: a v1 header as it is, a v2 one in v1's words.

    The binary v2 block would garble a line-based trace (its signature even
    holds ``QUIT``).  Octets that are no header are described as such.
    """
    try:
        got = decode(data)
    except ProxyError:
        got = None
    if got is None:
        return f"<{len(data)} octets: no complete PROXY header>\r\n".encode("ascii")
    header, used = got
    if header.version == 1:
        return data[:used]
    h = header
    words = (
        h.family if h.source is None else f"{h.family} {h.source} {h.destination} {h.source_port} {h.destination_port}"
    )
    if h.local:
        words = "LOCAL"
    return f"<PROXY v2 header, {used} octets: {words}>\r\n".encode("ascii")


def decode(data: bytes) -> tuple[ProxyHeader, int] | None:
    """Read the header at the start of ``data``: ``(header, octets it takes)``, or ``None`` if incomplete.

    ``None`` only while ``data`` could still begin a valid header, so a
    caller reading more needs at most 107 octets (v1) or 16 + 65,535 (v2)
    before a verdict.  Octets after the header are left alone.  Raises
    :class:`ProxyError` for anything else: no header, or a malformed one.
    """
    if data[:12] == SIGNATURE[: len(data[:12])]:
        return None if len(data) < V2_FIXED else _decode_v2(data)
    if data[:6] == V1_PREFIX[: len(data[:6])]:
        return None if len(data) < len(V1_PREFIX) else _decode_v1(data)
    raise ProxyError(f"no PROXY protocol header: the connection starts with {data[:12]!r}")


def _decode_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if b"\n" in data[:V1_MAX] or len(data) >= V1_MAX:
            raise ProxyError(f"version 1 header without CRLF in its first {V1_MAX} octets")
        return None
    line = data[:end]
    if not line.isascii():
        raise ProxyError("version 1 header is not ASCII")
    fields = line.decode("ascii").split(" ")
    if fields[1:2] == ["UNKNOWN"]:  # section 2.1: the rest of the line is ignored
        return ProxyHeader(1), end + 2
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"version 1 header is not PROXY TCP4|TCP6 SRC DST SPORT DPORT: {line[:60]!r}")
    family = fields[1]
    source, destination = (_v1_address(text, int(family[-1])) for text in fields[2:4])
    sport, dport = (_v1_port(text) for text in fields[4:6])
    return ProxyHeader(1, family, source, destination, sport, dport), end + 2


def _v1_address(text: str, version: int) -> str:
    try:
        ip = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except ValueError:
        ip = None
    if ip is None or "%" in text:  # an IPv6 scope id is no address of the protocol's
        raise ProxyError(f"version 1 header: {text[:45]!r} is not an IPv{version} address")
    return str(ip)


def _v1_port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 0xFFFF):
        raise ProxyError(f"version 1 header: {text[:10]!r} is not a port (0..65535)")
    return int(text)


def _decode_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command > 1:  # section 2.2: unexpected values must be dropped
        raise ProxyError(f"version 2 header with version {version} command {command} (only 2, LOCAL or PROXY)")
    (length,) = struct.unpack_from("!H", data, 14)
    total = V2_FIXED + length
    if len(data) < total:
        return None
    if command == 0:  # LOCAL: family and addresses are ignored
        return ProxyHeader(2, local=True), total
    family = _V2_FAMILY.get(data[13])
    if family is None:
        raise ProxyError(f"version 2 header with unknown family/transport 0x{data[13]:02x}")
    need = _V2_ADDRESS_SIZE[data[13] >> 4]
    if length < need:
        raise ProxyError(f"version 2 {family} header of {length} octets (addresses need {need})")
    if family in ("UNKNOWN", "UNIX"):
        return ProxyHeader(2, family), total
    size = 4 if family.endswith("4") else 16
    src = ipaddress.ip_address(data[16 : 16 + size])
    dst = ipaddress.ip_address(data[16 + size : 16 + 2 * size])
    sport, dport = struct.unpack_from("!HH", data, 16 + 2 * size)
    return ProxyHeader(2, family, str(src), str(dst), sport, dport), total
