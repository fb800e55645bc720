"""``target.proxy_protocol`` through the real CLI against ``smtpbench sink --proxy-protocol`` over loopback.

* v1 and v2, IPv4 and IPv6 synthetic clients (also over IPv6 loopback): the
  sink's per-client counts name exactly the announced addresses, round-robin,
  and add up to the sessions; the run's summary ``proxy`` says the same;
* implicit TLS after the header (the sink consumes the header exactly);
* the sink refuses a connection without a header, or with a bad one: no
  greeting, counted, one logged line; a ``LOCAL`` header keeps the real peer;
* the embedded sink learns PROXY by itself; bad keys exit 2 with one line;
* shards announce disjoint sessions' clients and ``merge`` unions them.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_OK
from smtpbench.metrics.clients import ranges
from smtpbench.protocol.proxy import SIGNATURE, ProxyHeader, encode
from smtpbench.protocol.replies import ReplyParser
from smtpbench.sink.proxy import LOGGED_REFUSALS
from tests.sinkutil import RawClient, SinkThread, tls_pair
from tests.test_bad_input import assert_one_line_usage_error, invoke
from tests.test_shards_sink import one_summary

ROOT = Path(__file__).resolve().parent.parent


def profile(tmp_path: Path, target: str, workload: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[target]\n{target}\n[workload]\nmodel = "closed"\n{workload}\n'
        f'[output]\nresults_dir = "{tmp_path / "results"}"\nreport = false\n'
    )
    return str(path)


def hosts(network: str) -> set[str]:
    return {str(ip) for ip in ipaddress.ip_network(network).hosts()}


@pytest.mark.parametrize(
    ("version", "host", "sources"),
    [
        ("v1", "127.0.0.1", "198.51.100.0/29"),
        ("v2", "127.0.0.1", "198.51.100.0/29"),
        ("v1", "::1", "2001:db8::/125"),
        ("v2", "::1", "2001:db8::/125"),
        ("v2", "127.0.0.1", "2001:db8::/125"),  # IPv6 clients over IPv4: announced as IPv6 (mapped destination)
    ],
)
def test_the_sink_counts_exactly_the_announced_clients(tmp_path: Path, version: str, host: str, sources: str) -> None:
    with SinkThread(host=host, proxy_protocol=True, store_messages=True) as srv:
        target = f'host = "{host}"\nport = {srv.port}\nproxy_protocol = "{version}"\nproxy_sources = "{sources}"'
        code, out, err = invoke(["run", profile(tmp_path, target, "sessions = 3\nmessages = 30"), "-q"])
        seen = dict(srv.stats.client_addresses)
        stats = srv.stats
        peers = {m.peer for m in srv.messages}
    assert code == EXIT_OK, (out, err)
    s = one_summary(tmp_path / "results")
    started = s["counts"]["sessions_started"]
    assert s["counts"]["messages_accepted"] == 30 and s["counts"]["errors"] == 0
    expected = hosts(sources)  # 6 (IPv4 /29) or 7 (IPv6 /125) addresses, fewer than the 30 sessions
    assert set(seen) == expected == peers, seen
    assert sum(seen.values()) == stats.connections == stats.proxy_headers == started >= 30
    assert max(seen.values()) - min(seen.values()) <= 1, seen  # round-robin by session number
    assert stats.proxy_refused == 0
    proxy = s["proxy"]
    assert proxy["version"] == version and proxy["sessions_announced"] == started
    assert proxy["distinct_clients"] == len(expected)
    first, last = sorted(expected, key=lambda a: int(ipaddress.ip_address(a)))[:: len(expected) - 1]
    assert proxy["clients"] == [f"{first}-{last}"]


def test_implicit_tls_starts_right_after_the_header(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, implicit_tls=True, proxy_protocol=True) as srv:
        target = (
            f'host = "127.0.0.1"\nport = {srv.port}\ntls = "implicit"\nca_file = "{pair.ca_file}"\n'
            'proxy_protocol = "v2"\nproxy_sources = ["198.51.100.7", "198.51.100.9"]'
        )
        code, out, err = invoke(["run", profile(tmp_path, target, "sessions = 2\nmessages = 8"), "-q", "--trace", "1"])
        seen = dict(srv.stats.client_addresses)
        handshakes = srv.stats.tls_handshakes
    assert code == EXIT_OK, (out, err)
    s = one_summary(tmp_path / "results")
    assert set(seen) == {"198.51.100.7", "198.51.100.9"} and abs(seen["198.51.100.7"] - seen["198.51.100.9"]) <= 1
    assert sum(seen.values()) == handshakes == s["counts"]["sessions_started"] >= 8
    assert s["counts"]["messages_accepted"] == 8 and s["counts"]["errors"] == 0
    # The trace names the header in one readable line (not v2's binary block), before the greeting.
    (trace,) = (tmp_path / "results").glob("*/traces/*-ok.txt")
    first = trace.read_text().splitlines()[0]
    assert re.fullmatch(
        r"\+[\d.]+ C: <PROXY v2 header, 28 octets: TCP4 198\.51\.100\.[79] 127\.0\.0\.1 \d+ \d+>", first
    )


def _closed_without_greeting(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        got = b""
        try:  # the sink closes at once (a reset, as the header's octets were left unread); 30 s bounds a bug
            while chunk := sock.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
    return got == b""


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"EHLO client.example\r\n", "no PROXY protocol header"),
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 1031\r\n", "not PROXY TCP4|TCP6"),
        (SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "addresses need 12"),
        (b"PROXY TCP4 198.51", "connection closed"),
    ],
)
def test_the_sink_refuses_a_connection_without_a_valid_header(
    capsys: pytest.CaptureFixture[str], data: bytes, reason: str
) -> None:
    with SinkThread(proxy_protocol=True) as srv:
        if reason == "connection closed":  # the client gives up half-way: EOF inside the header
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(4096) == b""
        else:
            assert _closed_without_greeting(srv.port, data)
        deadline = time.monotonic() + 30
        while srv.stats.proxy_refused < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = srv.stats
    assert stats.proxy_refused == 1 and stats.connections == 0 and stats.proxy_headers == 0
    logged = [line for line in capsys.readouterr().err.splitlines() if "refused" in line]
    assert len(logged) == 1 and reason in logged[0] and logged[0].startswith("smtpbench-sink: refused 127.0.0.1: ")
    assert LOGGED_REFUSALS >= 1


def test_local_and_unknown_headers_keep_the_real_peer() -> None:
    with SinkThread(proxy_protocol=True) as srv:
        for header in (ProxyHeader(2, local=True), ProxyHeader(1), ProxyHeader(2)):
            raw = RawClient(srv.port, greet=False)
            raw.send(encode(header))
            assert [r.code for r in raw.replies(1)] == [220]
            assert raw.cmd("QUIT").code == 221
            raw.sock.close()
        seen = dict(srv.stats.client_addresses)
    assert seen == {"127.0.0.1": 3}


def test_header_and_early_smtp_input_in_one_write() -> None:
    """What follows the header in the same segment is the session's input, not lost with the header."""
    with SinkThread(proxy_protocol=True) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 1031 25\r\nQUIT\r\n")
            parser, replies = ReplyParser(), []
            while len(replies) < 2 and (chunk := sock.recv(4096)):
                replies += parser.feed(chunk)
        seen = dict(srv.stats.client_addresses)
    assert [r.code for r in replies] == [220, 221] and seen == {"198.51.100.7": 1}


def test_an_embedded_run_announces_to_its_own_sink(tmp_path: Path) -> None:
    target = 'embedded = true\nproxy_protocol = "v1"\nproxy_sources = ["198.51.100.7", "198.51.100.8"]'
    path = profile(tmp_path, target, "sessions = 2\nmessages = 6")
    code, out, err = invoke(["run", path, "-q"])
    assert code == EXIT_OK, (out, err)
    s = one_summary(tmp_path / "results")
    assert s["counts"]["messages_accepted"] == 6 and s["counts"]["errors"] == 0, s["errors"]
    assert s["proxy"]["clients"] == ["198.51.100.7-198.51.100.8"]
    assert s["proxy"]["sessions_announced"] == s["counts"]["sessions_started"] >= 6


@pytest.mark.parametrize(
    ("target", "path", "fragment"),
    [
        ('proxy_protocol = "v1"\nproxy_sources = "198.51.100.1/24"', "target.proxy_sources", "host bits set"),
        ('proxy_protocol = "v1"\nproxy_sources = "nope/24"', "target.proxy_sources", "not a network"),
        ('proxy_protocol = "v2"\nproxy_sources = "10.0.0.0/8"', "target.proxy_sources", "at most 4096"),
        ('proxy_protocol = "v2"\nproxy_sources = ["198.51.100.7", "::1"]', "target.proxy_sources[1]", "IPv6"),
        ('proxy_protocol = "v3"\nproxy_sources = "198.51.100.0/24"', "target.proxy_protocol", "v2"),
        ('proxy_protocol = "v2"', "target.proxy_protocol", "needs proxy_sources"),
        ('proxy_sources = "198.51.100.0/24"', "target.proxy_sources", "only applies with proxy_protocol"),
    ],
)
def test_bad_proxy_keys_exit_2_naming_the_key(tmp_path: Path, target: str, path: str, fragment: str) -> None:
    code, out, err = invoke(["run", profile(tmp_path, f"port = 2525\n{target}", "sessions = 1\nduration = 1"), "-q"])
    assert_one_line_usage_error(code, out, err, path, fragment)
    assert not (tmp_path / "results").exists()


def test_sink_option_in_help_and_the_embedded_sink_is_told() -> None:
    code, out, _ = invoke(["sink", "--help"])
    assert code == 0 and "--proxy-protocol" in out


@pytest.mark.timeout(240)
def test_shards_announce_their_own_sessions_and_merge_unions_them(tmp_path: Path) -> None:
    with SinkThread(proxy_protocol=True) as srv:
        target = f'host = "127.0.0.1"\nport = {srv.port}\nproxy_protocol = "v1"\nproxy_sources = "198.51.100.0/27"'
        path = profile(tmp_path, target, "sessions = 2\nmessages = 12\nseed = 3")
        for i in range(2):
            proc = subprocess.run(
                [sys.executable, "-m", "smtpbench", "run", path, "--shard", f"{i}/2", "-q"]
                + ["--results-dir", str(tmp_path / f"shard-{i}")],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert proc.returncode == EXIT_OK, proc.stderr
        seen = dict(srv.stats.client_addresses)
    merged = subprocess.run(
        [sys.executable, "-m", "smtpbench", "merge", str(tmp_path / "shard-0"), str(tmp_path / "shard-1")]
        + ["-o", str(tmp_path / "merged"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert merged.returncode == EXIT_OK, merged.stderr
    parts = [one_summary(tmp_path / f"shard-{i}")["proxy"] for i in range(2)]
    whole = json.loads((tmp_path / "merged" / "summary.json").read_text())["proxy"]
    # Sessions are numbered run-wide, part i of 2 taking i+1, i+3, ...: the parts announce disjoint addresses
    # (each once: fewer sessions than the 30 addresses), and the merged summary holds their union.
    k0, k1 = (p["sessions_announced"] for p in parts)
    numbers = {2 * k - 1 for k in range(1, k0 + 1)} | {2 * k for k in range(1, k1 + 1)}
    expected = {ipaddress.ip_address(f"198.51.100.{n}") for n in numbers}
    assert k0 >= 6 and k1 >= 6 and seen == {str(ip): 1 for ip in expected}
    assert [p["distinct_clients"] for p in parts] == [k0, k1]
    assert whole == {"version": "v1", "sessions_announced": k0 + k1, "distinct_clients": k0 + k1,
                     "clients": ranges(expected)}  # fmt: skip
