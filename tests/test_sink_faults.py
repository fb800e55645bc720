"""The fault registry, and that each probed fault changes exactly the behaviour it names.

Each probe returns True when it sees the violation.  It must see nothing on
the compliant sink and see it with the fault on: both halves are asserted,
so no probe can pass vacuously.  (The full per-check matrix lives with the
conformance suite, which runs its checks against these faults.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpbench.sink.config import SinkConfig
from smtpbench.sink.faults import FAULTS, NOT_COVERED
from smtpbench.sink.server import SinkServer
from tests.sinkutil import RawClient, SinkThread

CATALOGUE = Path("/work/shared/reference/conformance-checks.md")
GROUP = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"


def test_registry_names_catalogue_ids() -> None:
    ids = set(FAULTS) | set(NOT_COVERED)
    assert not set(FAULTS) & set(NOT_COVERED)
    assert all(re.fullmatch(r"[A-Z]{1,3}-\d\d", i) for i in ids)
    assert all(desc and "\n" not in desc for desc in FAULTS.values())
    if CATALOGUE.exists():
        catalogue = set(re.findall(r"^\*\*([A-Z]{1,3}-\d\d) ", CATALOGUE.read_text(), re.M))
        assert len(catalogue) == 70
        assert ids == catalogue


def session(server: SinkServer) -> RawClient:
    c = RawClient(server.port)
    c.ehlo()
    return c


def probe_x01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.codes(b"\r\n \r\nNOOP\r\n", 3, timeout=0.5) != [500, 500, 250]


def probe_x04(s: SinkServer) -> bool:
    with session(s) as c:
        return c.codes(b"NOOP " + b"x" * 505 + b"\r\n", 1) != [250]


def probe_e01(s: SinkServer) -> bool:
    with RawClient(s.port) as c:
        return len(c.cmd("HELO client.example").lines) > 1


def probe_e03(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(b"MAIL FROM:<a@x>\r\nRCPT TO:<u@example.test>\r\n", 2)
        c.ehlo()
        return c.cmd("RCPT TO:<u@example.test>").code == 250


def probe_s02(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("RCPT TO:<u@example.test>").code == 250


def probe_r01(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(b"MAIL FROM:<a@x>\r\nRCPT TO:<u@example.test>\r\nRSET\r\n", 3)
        return c.cmd("DATA").code == 354


def probe_v01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("VRFY zz-random@example.test").code == 250


def probe_v03(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("HELP").code == 250


def probe_a02(s: SinkServer) -> bool:
    with session(s) as c:
        c.cmd("MAIL FROM:<a@x.example>")
        return c.cmd("RCPT TO:<Postmaster>").code != 250


def smuggle(s: SinkServer, end: bytes) -> bool:
    before = s.stats.messages_accepted
    with session(s) as c:
        c.codes(GROUP, 3)
        body = b"hello" + end + GROUP + b"Subject: SMUGGLED\r\n\r\nx\r\n.\r\n"
        codes = c.codes(body, 5, timeout=0.7)
    return codes != [250] or s.stats.messages_accepted != before + 1


def probe_d05(s: SinkServer) -> bool:
    return smuggle(s, b"\n.\n")


def probe_d06(s: SinkServer) -> bool:
    return smuggle(s, b"\n.\r\n")


def probe_d02(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(GROUP, 3)
        c.codes(b"..x\r\n.\r\n", 1)
    return not s.messages[-1].content.endswith(b"\r\n.x\r\n")


def probe_d01(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(GROUP, 3)
        c.codes(b"x\r\n.\r\n", 1)
    return not s.messages[-1].content.startswith(b"Received: from client.example ([127.0.0.1])")


def probe_d07(s: SinkServer) -> bool:
    with session(s) as c:
        return len(c.codes(b"NOOP\nNOOP\r\n", 2, timeout=0.5)) != 1


def probe_p02(s: SinkServer) -> bool:
    with session(s) as c:
        return len(c.codes(b"NOOP\r\n" * 50, 50, timeout=1)) != 50


def probe_p03(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(GROUP, 3)
        return c.codes(b"x\r\n.\r\n" + GROUP, 4, timeout=0.5) != [250, 250, 250, 354]


def probe_p01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.codes(GROUP, 3) != [250, 250, 354]


def probe_l01(s: SinkServer) -> bool:
    with session(s) as c:
        c.cmd("MAIL FROM:<a@x.example>")
        codes = c.codes(b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(100)), 100)
        return codes != [250] * 100


def probe_k03(s: SinkServer) -> bool:
    with session(s) as c:
        return c.codes(b"BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n", 3, timeout=0.5) != [503]


def probe_b04(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("MAIL FROM:<a@x.example> FOO=BAR").code == 250


def probe_z01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd(f"MAIL FROM:<a@x.example> SIZE={s.config.max_size + 1}").code == 250


def probe_es01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("NOOP").enhanced is None


def probe_lg01(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("ETRN").code == 250


def probe_sec01(s: SinkServer) -> bool:
    with session(s) as c:
        c.cmd("MAIL FROM:<>")
        return c.cmd("RCPT TO:<relay-test@smtpbench-relay.invalid>").code == 250


def probe_g01(s: SinkServer) -> bool:
    with session(s) as c:
        return bool(c.cmd("QUIT").defects)


def probe_x06(s: SinkServer) -> bool:
    with session(s) as c:
        c.codes(b"FOOBAR\r\n", 1)
        return c.wait_closed(0.5)


def probe_u05(s: SinkServer) -> bool:
    with session(s) as c:
        return c.cmd("MAIL FROM:<a@x.example> AUTH=<>").code != 250


def probe_c02(s: SinkServer) -> bool:
    c = RawClient(s.port)
    with c:
        return c.greeting is None or c.greeting.code != 220


def probe_to01(s: SinkServer) -> bool:
    with session(s) as c:
        got = c.replies(1, timeout=1.5)
        return not (got and got[0].code == 421)


PROBES: dict[str, Callable[[SinkServer], bool]] = {
    "X-01": probe_x01,
    "X-04": probe_x04,
    "X-06": probe_x06,
    "E-01": probe_e01,
    "E-03": probe_e03,
    "S-02": probe_s02,
    "R-01": probe_r01,
    "V-01": probe_v01,
    "V-03": probe_v03,
    "A-02": probe_a02,
    "D-01": probe_d01,
    "D-02": probe_d02,
    "D-05": probe_d05,
    "D-06": probe_d06,
    "D-07": probe_d07,
    "P-01": probe_p01,
    "P-02": probe_p02,
    "P-03": probe_p03,
    "L-01": probe_l01,
    "K-03": probe_k03,
    "B-04": probe_b04,
    "Z-01": probe_z01,
    "ES-01": probe_es01,
    "LG-01": probe_lg01,
    "SEC-01": probe_sec01,
    "G-01": probe_g01,
    "U-05": probe_u05,
    "C-02": probe_c02,
    "TO-01": probe_to01,
}


def config(faults: frozenset[str]) -> SinkConfig:
    # A 1 s idle timeout keeps TO-01 fast: its fault drops idle sessions after 0.1 s without 421.
    return SinkConfig(faults=faults, store_messages=True, idle_timeout=1.0)


def test_compliant_sink_shows_no_probed_violation() -> None:
    with SinkThread(config(frozenset())) as server:
        seen = {fid for fid, probe in PROBES.items() if probe(server)}
    assert seen == set()


@pytest.mark.parametrize("fid", sorted(PROBES))
def test_fault_shows_its_violation(fid: str) -> None:
    with SinkThread(config(frozenset({fid}))) as server:
        assert PROBES[fid](server), f"{fid}: {FAULTS[fid]}"


def test_starttls_injection_fault_executes_plaintext() -> None:
    from tests.sinkutil import tls_pair

    tls = tls_pair()
    results = {}
    for faults in (frozenset(), frozenset({"T-04"})):
        with (
            SinkThread(SinkConfig(ssl_context=tls.server_context, faults=faults)) as server,
            RawClient(server.port) as c,
        ):
            c.ehlo()
            c.send(b"STARTTLS\r\nNOOP\r\n")
            assert [r.code for r in c.replies(1)] == [220]
            c.sock = tls.client_context.wrap_socket(c.sock, server_hostname="localhost")
            c.parser = type(c.parser)()
            c.send(b"EHLO x.example\r\n")
            results[faults] = c.replies(1)[0]
    assert len(results[frozenset()].lines) > 1  # the EHLO reply comes first
    assert results[frozenset({"T-04"})].code == 250 and len(results[frozenset({"T-04"})].lines) == 1  # the NOOP's
