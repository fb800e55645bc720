"""The PROXY protocol codec (smtpbench.protocol.proxy), the run's announcer and the summary's client tally.

Known vectors follow HAProxy's proxy-protocol.txt; hypothesis checks that
:func:`decode` reads back exactly what :func:`encode` wrote, says "need more"
for every proper prefix and nothing longer, and answers arbitrary octets only
with a header, ``None`` or :class:`ProxyError`.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smtpbench.load.proxy import FIRST_PORT, Announcer
from smtpbench.load.split import Part
from smtpbench.metrics.clients import ClientTally, expand, ranges
from smtpbench.metrics.recorder import merge_snapshots
from smtpbench.protocol.proxy import (
    SIGNATURE,
    V1_MAX,
    ProxyError,
    ProxyHeader,
    decode,
    describe,
    encode,
    header_for,
)

# ---------------------------------------------------------------- known vectors


def test_version_1_lines_as_the_specification_writes_them() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    header = ProxyHeader(1, "TCP4", "192.168.0.1", "192.168.0.11", 56324, 443)
    assert decode(line + b"EHLO x\r\n") == (header, len(line))
    assert encode(header) == line
    # The longest line there is: 107 octets with its CRLF (section 2.1).
    worst = b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(worst) <= V1_MAX
    got = decode(worst)
    assert got is not None and got[0].source == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" and got[1] == len(worst)
    assert decode(b"PROXY UNKNOWN ffff:: 1:: 1 2\r\nrest") == (ProxyHeader(1), 30)
    assert encode(ProxyHeader(1)) == b"PROXY UNKNOWN\r\n"


def test_version_2_blocks_built_by_hand() -> None:
    tcp4 = SIGNATURE + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 7, 127, 0, 0, 1]) + struct.pack("!HH", 1031, 25)
    assert decode(tcp4 + b"\x16\x03") == (ProxyHeader(2, "TCP4", "198.51.100.7", "127.0.0.1", 1031, 25), 28)
    assert encode(header_for(2, "198.51.100.7", "127.0.0.1", 1031, 25)) == tcp4
    tcp6 = SIGNATURE + b"\x21\x21\x00\x24" + ipaddress.IPv6Address("2001:db8::7").packed
    tcp6 += ipaddress.IPv6Address("::1").packed + struct.pack("!HH", 65535, 0)
    assert decode(tcp6) == (ProxyHeader(2, "TCP6", "2001:db8::7", "::1", 65535, 0), 52)
    # TLVs after the addresses belong to the header: consumed, ignored.
    with_tlv = SIGNATURE + b"\x21\x11\x00\x11" + bytes(12) + b"\x04\x00\x02ab" + b"EHLO"
    got = decode(with_tlv)
    assert got is not None and got[1] == len(with_tlv) - 4 and got[0].client == "0.0.0.0"
    # LOCAL (a health check): the family and any block are ignored, the real addresses apply.
    local = SIGNATURE + b"\x20\x11\x00\x0c" + bytes(12)
    assert decode(local) == (ProxyHeader(2, local=True), 28) and ProxyHeader(2, local=True).client is None
    assert encode(ProxyHeader(2, local=True)) == SIGNATURE + b"\x20\x00\x00\x00"
    # AF_UNIX: accepted, no IP client.
    unix = SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216)
    got = decode(unix)
    assert got is not None and got[0].family == "UNIX" and got[0].client is None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"EHLO client.example\r\n", "no PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),  # a TLS ClientHello
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 1031 25" + b" " * 80, "without CRLF"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 1031 25\n", "without CRLF"),
        (b"PROXY TCP5 198.51.100.7 127.0.0.1 1031 25\r\n", "not PROXY TCP4|TCP6"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 1031\r\n", "not PROXY TCP4|TCP6"),
        (b"PROXY TCP4  198.51.100.7 127.0.0.1 1031 25\r\n", "not PROXY TCP4|TCP6"),
        (b"PROXY TCP4 198.51.100 127.0.0.1 1031 25\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 198.51.100.07 127.0.0.1 1031 25\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 ::1 127.0.0.1 1031 25\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1031 25\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 65536 25\r\n", "not a port"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 -1 25\r\n", "not a port"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 \xd9\xa1 25\r\n", "not ASCII"),
        (SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
        (SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command 2"),
        (SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12), "unknown family/transport 0x13"),
        (SIGNATURE + b"\x21\x10\x00\x0c" + bytes(12), "unknown family/transport 0x10"),
        (SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "addresses need 12"),
        (SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "addresses need 36"),
    ],
)
def test_bad_headers_are_refused_with_the_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(ProxyError, match=fragment.replace("|", r"\|")) as info:
        decode(data)
    assert "\n" not in str(info.value)


def test_what_a_version_cannot_say_is_refused_by_the_encoder() -> None:
    for bad in (
        ProxyHeader(1, local=True),
        ProxyHeader(1, "UDP4", "198.51.100.7", "127.0.0.1"),
        ProxyHeader(2, "UNIX"),
        ProxyHeader(3, "TCP4", "198.51.100.7", "127.0.0.1"),
        ProxyHeader(2, "TCP4", "::1", "127.0.0.1"),
        ProxyHeader(2, "TCP4", "198.51.100.7", "127.0.0.1", 70000),
        ProxyHeader(2, "TCP4", "not-an-ip", "127.0.0.1"),
    ):
        with pytest.raises(ProxyError):
            encode(bad)
    with pytest.raises(ProxyError, match="different families"):
        header_for(1, "198.51.100.7", "::1", 1, 25)
    with pytest.raises(ProxyError):
        header_for(1, "nope", "::1", 1, 25)


def test_a_trace_describes_a_header_in_one_readable_line() -> None:
    v1 = encode(header_for(1, "198.51.100.7", "127.0.0.1", 1031, 25))
    assert describe(v1 + b"EHLO x\r\n") == v1
    v2 = encode(header_for(2, "2001:db8::7", "::1", 1031, 25))
    assert describe(v2) == b"<PROXY v2 header, 52 octets: TCP6 2001:db8::7 ::1 1031 25>\r\n"
    assert describe(encode(ProxyHeader(2, local=True))) == b"<PROXY v2 header, 16 octets: LOCAL>\r\n"
    assert describe(encode(ProxyHeader(2))) == b"<PROXY v2 header, 16 octets: UNKNOWN>\r\n"
    assert (
        describe(b"EHLO x\r\n") == describe(v2[:20]).replace(b"20", b"8") == b"<8 octets: no complete PROXY header>\r\n"
    )


# ---------------------------------------------------------------- properties

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)).map(str)
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)).map(str)
ports = st.integers(0, 65535)


@st.composite
def headers(draw: st.DrawFn) -> ProxyHeader:
    version = draw(st.sampled_from([1, 2]))
    families = ["TCP4", "TCP6", "UNKNOWN"] + (["UDP4", "UDP6", "LOCAL"] if version == 2 else [])
    family = draw(st.sampled_from(families))
    if family == "LOCAL":
        return ProxyHeader(2, local=True)
    if family == "UNKNOWN":
        return ProxyHeader(version)
    address = ipv4 if family.endswith("4") else ipv6
    return ProxyHeader(version, family, draw(address), draw(address), draw(ports), draw(ports))


@given(headers(), st.binary(max_size=40))
@example(ProxyHeader(1, "TCP6", str(ipaddress.ip_address("::ffff:1.2.3.4")), "::", 0, 65535), b"\r\n")
def test_decode_reads_back_what_encode_wrote_and_nothing_after(header: ProxyHeader, rest: bytes) -> None:
    data = encode(header)
    assert decode(data + rest) == (header, len(data))
    assert len(data) <= (V1_MAX if header.version == 1 else 16 + 36)
    for cut in range(len(data)):  # every proper prefix: "need more", never a verdict
        assert decode(data[:cut]) is None


starts = st.sampled_from([b"", b"P", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", SIGNATURE, SIGNATURE + b"\x21"])


@given(starts, st.binary(max_size=300))
@example(SIGNATURE + b"\x21\x11", b"\xff\xff")
@example(SIGNATURE, b"\n")
@example(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b"\r\n")
def test_decode_answers_any_octets_with_a_header_none_or_proxy_error(start: bytes, tail: bytes) -> None:
    data = start + tail
    try:
        got = decode(data)
    except ProxyError as exc:
        assert "\n" not in str(exc)
        return
    if got is None:  # only while a valid header could still follow: v1 within 107 octets, v2 within its length
        if data.startswith(SIGNATURE):
            assert len(data) < 16 or len(data) < 16 + struct.unpack_from("!H", data, 14)[0]
        elif SIGNATURE.startswith(data):
            assert len(data) < len(SIGNATURE)
        else:
            assert data.startswith(b"PROXY ") or b"PROXY ".startswith(data)
            assert len(data) < V1_MAX and b"\n" not in data
        return
    header, used = got
    assert 0 < used <= len(data)
    assert decode(data[:used]) == got  # the header is complete in its own octets
    if header.client is not None:
        assert ipaddress.ip_address(header.client).version == int(header.family[-1])


# ---------------------------------------------------------------- the run's side


def test_sessions_announce_the_sources_round_robin_with_synthetic_ports() -> None:
    a = Announcer("v1", "198.51.100.0/29", Part())  # 6 host addresses
    clients = [a.client(n) for n in range(1, 14)]
    assert [str(ip) for ip, _ in clients[:7]] == [f"198.51.100.{i}" for i in (1, 2, 3, 4, 5, 6, 1)]
    assert [port for _, port in clients] == [FIRST_PORT] * 6 + [FIRST_PORT + 1] * 6 + [FIRST_PORT + 2]
    data, client = a.header(8, ("127.0.0.1", 2525))
    assert data == b"PROXY TCP4 198.51.100.2 127.0.0.1 1025 2525\r\n" and str(client) == "198.51.100.2"
    # Part i of n numbers its sessions run-wide: the parts together announce what one run would.
    parts = [Announcer("v2", "198.51.100.0/29", Part(i, 3)) for i in range(3)]
    together = sorted(str(p.client(k)[0]) for p in parts for k in (1, 2))
    assert together == sorted(str(a.client(n)[0]) for n in range(1, 7))


def test_a_header_has_one_family_mixed_ones_go_as_ipv6() -> None:
    v6_sources = Announcer("v2", ["2001:db8::7"], Part())
    data, client = v6_sources.header(1, ("127.0.0.1", 25))
    assert decode(data) == (ProxyHeader(2, "TCP6", "2001:db8::7", "::ffff:7f00:1", FIRST_PORT, 25), len(data))
    assert str(client) == "2001:db8::7"
    data, client = Announcer("v1", ["198.51.100.9"], Part()).header(1, ("::1", 25, 0, 0))
    assert data.startswith(b"PROXY TCP6 ::ffff:c633:6409 ::1 ") and str(client) == "198.51.100.9"


def test_the_client_tally_is_a_union_written_as_ranges() -> None:
    ips = [ipaddress.ip_address(f"198.51.100.{i}") for i in (1, 2, 3, 5, 9, 10)] + [ipaddress.ip_address("::1")]
    assert ranges(set(ips)) == ["198.51.100.1-198.51.100.3", "198.51.100.5", "198.51.100.9-198.51.100.10", "::1"]
    assert expand(ranges(set(ips))) == set(ips)
    one, two = ClientTally("v1"), ClientTally("v1")
    for ip in ips[:4]:
        one.note(ip)
    for ip in ips[2:]:
        two.note(ip)
    _, merged = merge_snapshots(
        [{"histograms": {}, "counters": c} for c in (_counters(one), _counters(two), _counters(None))]
    )
    assert merged["proxy"] == {
        "version": "v1",
        "sessions_announced": 9,
        "distinct_clients": 7,
        "clients": ranges(set(ips)),
    }
    assert ClientTally.from_dict(merged["proxy"]).seen == set(ips)


def _counters(tally: ClientTally | None) -> dict[str, object]:
    doc: dict[str, object] = {"counts": {}, "errors": {}, "replies": {}, "unexpected_replies": {}}
    if tally is not None:
        doc["proxy"] = tally.to_dict()
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        "v1",
        {"version": "v1", "sessions_announced": -1, "clients": []},
        {"version": "v1", "sessions_announced": 1, "clients": ["nope"]},
        {"version": "v1", "sessions_announced": 1, "clients": [5]},
        {"version": "v1", "sessions_announced": 1, "clients": ["10.0.0.0-10.255.255.255"]},
        {"version": "v1", "sessions_announced": 1, "clients": ["10.0.0.9-10.0.0.1"]},
        {"version": "v1", "sessions_announced": 1, "clients": ["10.0.0.1-::1"]},
    ],
)
def test_a_malformed_tally_is_a_value_error(doc: object) -> None:
    with pytest.raises(ValueError):
        ClientTally.from_dict(doc)
