"""PROXY protocol at load against a real Postfix 3.7 with ``smtpd_upstream_proxy_protocol = haproxy``.

Postfix takes the client from the header (v1 since 2.10, v2 since 3.5) and logs
it: one ``connect from unknown[ADDRESS]`` line per session (peer name lookup
off: no DNS here).  The log must name exactly the synthetic clients the run
announced, as many connects as sessions, round-robin; Postfix then treats the
session as coming from there (it accepts the mail for its virtual domain).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.real.conftest import Factory
from tests.real.servers import LOCAL_DOMAIN
from tests.test_engine import run

pytestmark = pytest.mark.timeout(180)

HAPROXY = {"smtpd_upstream_proxy_protocol": "haproxy", "smtpd_peername_lookup": "no"}


@pytest.mark.parametrize(
    ("version", "sources", "inet_protocols"),
    [
        ("v1", "198.51.100.0/29", "ipv4"),
        ("v2", "198.51.100.0/29", "ipv4"),
        ("v2", "2001:db8::/125", "all"),  # IPv6 clients over an IPv4 connection (header in IPv6, destination mapped)
    ],
)
def test_postfix_logs_the_synthetic_clients(
    real_factory: Factory, tmp_path: Path, version: str, sources: str, inet_protocols: str
) -> None:
    postfix = real_factory("postfix", main_cf={**HAPROXY, "inet_protocols": inet_protocols})
    s = run(
        tmp_path,
        postfix.port,
        f'proxy_protocol = "{version}"\nproxy_sources = "{sources}"\n'
        '[workload]\nsessions = 2\nmessages = 14\nduration = "60s"\ngrace = "10s"\n'
        f'[message]\nto = "user{{n}}@{LOCAL_DOMAIN}"\n',
    )
    assert s["status"] == "completed" and s["counts"]["errors"] == 0, s["errors"]
    started = s["counts"]["sessions_started"]
    assert s["counts"]["messages_accepted"] == 14 and s["proxy"]["sessions_announced"] == started
    expected = {str(ip) for ip in ipaddress.ip_network(sources).hosts()}
    # The harness's readiness probe connects from 127.0.0.1 without a header: Postfix warns, logs it apart.
    synthetic = r"smtpd\[\d+\]: connect from unknown\[(?!127\.0\.0\.1\])[^\]]+\]$"
    lines = postfix.wait_log(synthetic, count=started)
    seen = Counter(line.rpartition("[")[2].rstrip("]") for line in lines)
    assert set(seen) == expected, seen
    assert sum(seen.values()) == started and max(seen.values()) - min(seen.values()) <= 1, seen
    log = postfix.log_text()
    probes = len(re.findall(r": connect from unknown\[127\.0\.0\.1\]", log))
    assert probes == log.count("warning: haproxy read: EOF")  # every 127.0.0.1 connect is a probe without header
    assert s["proxy"]["distinct_clients"] == len(expected)
    assert len(postfix.wait_delivered(14)) == 14


def test_postfix_behind_proxy_refuses_a_client_without_header(real_factory: Factory, tmp_path: Path) -> None:
    """The other way round: without proxy_protocol, Postfix waits 5 s for a header, then drops the session."""
    postfix = real_factory("postfix", main_cf=HAPROXY)
    s = run(
        tmp_path,
        postfix.port,
        '[smtp.timeouts]\nbanner = "20s"\n[workload]\nsessions = 1\nduration = "6s"\ngrace = "20s"\n',
    )
    started = s["counts"]["sessions_started"]
    assert started >= 1 and s["counts"]["sessions_failed"] == started and s["counts"]["messages_sent"] == 0, s
    assert "proxy" not in s
    assert len(postfix.wait_log(r"warning: haproxy read: timeout error", count=started)) == started
