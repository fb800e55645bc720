"""``smtpbench probe`` against a real Postfix (Debian package, private instance on loopback; tests/real harness).

Postfix's own replies are the test: its greeting, EHLO list, enhanced codes, the 554 it uses for relay denial
(a code RFC 5321 does not list for RCPT: the probe flags it), STARTTLS with a verified certificate, BDAT, and the
deliveries in its maildir and the lines in its log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from smtpbench.probe import model
from tests.real.conftest import Factory
from tests.real.servers import HOSTNAME, LOCAL_DOMAIN, RealServer
from tests.test_probe_sink import final, probe

pytestmark = pytest.mark.timeout(120)


def test_probe_delivers_and_explains(postfix: RealServer, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    code, out, err = probe(
        postfix.address, "--from", f"probe@{LOCAL_DOMAIN}", "--to", f"alice@{LOCAL_DOMAIN}",
        "--header", "X-Probe: postfix", "--json", str(path), "--timeout", "20",
    )  # fmt: skip
    assert code == model.EXIT_ACCEPTED, out + err
    assert f"<- 220 {HOSTNAME} ESMTP Postfix" in out
    assert re.search(r"# SIZE \d+: RFC 1870: .*limit \d+ octets", out)
    assert "# ENHANCEDSTATUSCODES: RFC 2034" in out and "# CHUNKING: RFC 3030" in out and "# VRFY: RFC 5321" in out
    assert "<- 250 2.1.0 Ok" in out and "enhanced 2.1.0: Success; Addressing Status: Other address status" in out
    assert "<- 250 2.1.5 Ok" in out and "enhanced 2.1.5: Success; Addressing Status: Destination address valid" in out
    queued = re.search(r"ACCEPTED at data: 250 2\.0\.0 Ok: queued as (\w+) in [\d.]+ ms, exit 0$", final(out))
    assert queued, final(out)
    assert postfix.wait_log(rf"{queued.group(1)}: .*status=sent \(delivered to maildir\)")
    assert b"X-Probe: postfix" in postfix.wait_delivered(1, local="alice")[0]
    doc = json.loads(path.read_text())
    assert doc["outcome"]["result"] == "accepted" and doc["extensions"]["PIPELINING"] == ""
    assert [e["verb"] for e in doc["events"] if e["kind"] == "received"] == [
        "CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "DATA_END", "QUIT",
    ]  # fmt: skip


@pytest.mark.parametrize("pipelining", ["auto", "off"])
def test_relay_denied_is_flagged_and_exit_15(postfix: RealServer, pipelining: str) -> None:
    code, out, _ = probe(postfix.address, "--to", "someone@elsewhere.invalid", "--pipelining", pipelining)
    assert code == model.EXIT_RECIPIENT, out
    assert "<** 554 5.7.1 <someone@elsewhere.invalid>: Relay access denied" in out
    assert "enhanced 5.7.1: Permanent Failure; Security or Policy Status: Delivery not authorized" in out
    assert "! 554 is not a reply the RFC tables list for RCPT" in out  # Postfix's choice, outside RFC 5321's list
    assert final(out).startswith("REFUSED at rcpt: 554 5.7.1") and "no recipient accepted" in final(out)
    if pipelining == "auto":  # the pipelined DATA gets Postfix's "no valid recipients"
        assert "<** 554 5.5.1 Error: no valid recipients" in out
    assert not postfix.delivered()


def test_starttls_verified_and_bdat(real_factory: Factory) -> None:
    server = real_factory("postfix", tls=True)
    assert server.tls is not None
    code, out, err = probe(
        server.address, "--to", f"bob@{LOCAL_DOMAIN}", "--starttls", "--ca-file", str(server.tls.ca),
        "--chunking", "--body", "chunked through Postfix", "--timeout", "20",
    )  # fmt: skip
    assert code == model.EXIT_ACCEPTED, out + err
    assert "<- 220 2.0.0 Ready to start TLS" in out and "== verified: yes" in out
    assert re.search(r"== TLS TLSv1\.[23], cipher \S+", out) and f"DNS:{HOSTNAME}" in out
    assert re.search(r"-> BDAT \d+ LAST", out)
    assert b"chunked through Postfix" in server.wait_delivered(1, local="bob")[0]
    assert server.wait_log(r"disconnect from \S+ ehlo=2 starttls=1 mail=1 rcpt=1 bdat=1 quit=1")


def test_quit_after_data_delivers_nothing(postfix: RealServer) -> None:
    code, out, _ = probe(postfix.address, "--to", f"carol@{LOCAL_DOMAIN}", "--quit-after", "data")
    assert code == 0 and final(out).startswith("STOPPED at data"), out
    assert postfix.wait_log(r"lost connection after DATA")
    assert not postfix.delivered()
