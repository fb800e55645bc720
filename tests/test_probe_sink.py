"""``smtpbench probe`` against the sink over loopback: transcript, annotations, TLS, AUTH, faults, exit codes.

Every probe runs through the real CLI in-process; the sink (in its own
thread) is the server, with its knobs and faults supplying the refusals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smtpbench.probe import model
from smtpbench.sink.config import SinkConfig
from tests.hostile import HostileServer, MiniSMTP, make_app, no_greeting
from tests.peers import free_port
from tests.sinkutil import SinkThread, TLSPair, tls_pair
from tests.test_secrets import assert_absent

USER, SECRET = "bench-user", "s3cr3t-Pa55w0rd-7f3a"
LOCAL = "bob@example.test"
FOREIGN = "someone@smtpbench-relay.invalid"
#: A transcript line: seconds since connect, a mark, the text.
LINE = re.compile(r"^ +\d+\.\d{3}s (->|<-|<\*\*|==|\*\*) ")


def probe(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``smtpbench probe ARGS`` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(make_app(), ["probe", *args], env=env, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.stdout}")
    return result.exit_code, result.stdout, result.stderr


def final(out: str) -> str:
    return out.rstrip("\n").splitlines()[-1]


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


@pytest.fixture(scope="module")
def sink(tls: TLSPair) -> Iterator[object]:
    with SinkThread(ssl_context=tls.server_context, auth_users={USER: SECRET}) as server:
        yield server


def target(server: object) -> str:
    return f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the happy path, annotated


@pytest.mark.parametrize("pipelining", ["auto", "off"])
def test_accepted_transcript_is_annotated(sink, pipelining: str) -> None:  # type: ignore[no-untyped-def]
    before = len(sink.messages)
    code, out, err = probe(
        target(sink), "--from", "alice@example.test", "--to", LOCAL, "--to", "carol@example.test",
        "--header", "X-Probe: yes", "--header", "Subject: hello", "--pipelining", pipelining,
    )  # fmt: skip
    assert code == model.EXIT_ACCEPTED, out + err
    lines = out.splitlines()
    assert all(LINE.match(x) or x.startswith(" " * 10) for x in lines[:-1]), out
    assert "-> EHLO smtpbench.example" in out
    assert "<- 220 sink.smtpbench.test" in out and "# 220: <domain> Service ready" in out
    # each reply explained from the shared tables, enhanced code included
    assert (
        "# 250: Requested mail action okay, completed; enhanced 2.1.5: Success; Addressing Status: Destination address valid"
        in out
    )
    assert "# 354: Start mail input; end with <CRLF>.<CRLF>" in out
    # EHLO keywords explained, SIZE with its limit
    assert re.search(r"# SIZE \d+: RFC 1870: .*limit \d+ octets \(10\.0 MiB\)", out)
    assert "# PIPELINING: RFC 2920" in out and "# CHUNKING: RFC 3030" in out
    assert ("one pipelined group" in out) is (pipelining == "auto")
    assert "-> X-Probe: yes" in out and "-> Subject: hello" in out
    assert re.match(r"ACCEPTED at data: 250 2\.0\.0 OK: queued as \w+ in [\d.]+ ms, exit 0$", final(out))
    assert len(sink.messages) == before + 1
    msg = sink.messages[-1]
    assert b"X-Probe: yes" in msg.content and msg.content.count(b"Subject:") == 1
    assert sorted(msg.rcpt_to) == sorted([LOCAL, "carol@example.test"]) and msg.mail_from == "alice@example.test"


def test_json_shape(sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "probe.json"
    code, out, _ = probe(target(sink), "--to", LOCAL, "--json", str(path))
    assert code == 0
    doc = json.loads(path.read_text())
    assert doc["schema"] == "smtpbench-probe/1" and doc["target"] == target(sink)
    assert doc["options"]["to"] == [LOCAL] and doc["options"]["tls"] == "none"
    assert doc["outcome"] == {**doc["outcome"], "step": "data", "result": "accepted", "exit_code": 0, "code": 250}
    assert doc["outcome"]["total_ms"] > 0 and "SIZE" in doc["extensions"] and doc["tls"] is None
    kinds = {e["kind"] for e in doc["events"]}
    assert kinds == {"info", "sent", "received"}
    times = [e["t_ms"] for e in doc["events"]]
    assert times == sorted(times)
    rcpt = next(e for e in doc["events"] if e["kind"] == "received" and e["verb"] == "RCPT")
    assert rcpt["code"] == 250 and rcpt["enhanced"] == "2.1.5" and rcpt["listed"] is True
    assert rcpt["enhanced_meaning"].endswith("Destination address valid")
    assert [e["text"] for e in doc["events"] if e["kind"] == "sent"][0] == "EHLO smtpbench.example"


def test_chunking_sends_bdat(sink) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = probe(target(sink), "--to", LOCAL, "--chunking", "--body", "chunked body")
    assert code == 0, out
    assert re.search(r"-> BDAT \d+ LAST", out) and "-> DATA" not in out
    assert sink.messages[-1].via == "BDAT" and b"chunked body" in sink.messages[-1].content


def test_data_from_stdin_with_header_replaced(sink) -> None:  # type: ignore[no-untyped-def]
    message = b"From: a@example.test\nSubject: old\n  folded\nX-Keep: 1\n\n.leading dot\nbody\n"
    code, out, _ = probe(target(sink), "--to", LOCAL, "--data", "-", "--header", "Subject: new", stdin=message)
    assert code == 0, out
    content = sink.messages[-1].content
    assert b"Subject: new\r\n" in content and b"old" not in content and b"folded" not in content
    assert b"X-Keep: 1\r\n" in content and b"\r\n.leading dot\r\nbody\r\n" in content  # dot-stuffing undone


def test_data_of_header_fields_only_keeps_them_in_the_header(sink) -> None:  # type: ignore[no-untyped-def]
    """A --data message with no body (RFC 5322 3.5) keeps its fields as fields: they were moved into the body
    under the --header fields and a blank line, and a --header of the same name did not replace its field."""
    message = b"From: a@example.test\nSubject: old\nX-Keep: 1\n"
    code, out, _ = probe(target(sink), "--to", LOCAL, "--data", "-", "--header", "Subject: new", stdin=message)
    assert code == 0, out
    content = sink.messages[-1].content
    assert content.endswith(b"\r\nFrom: a@example.test\r\nX-Keep: 1\r\nSubject: new\r\n\r\n"), content
    assert b"old" not in content


def test_attachment_builds_mime(sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    att = tmp_path / "report.pdf"
    att.write_bytes(b"%PDF-1.4 fake\x00\xff" * 50)
    code, out, _ = probe(target(sink), "--to", LOCAL, "--attach", str(att), "--body", "see attached")
    assert code == 0, out
    content = sink.messages[-1].content
    assert b"multipart/mixed" in content and b'filename="report.pdf"' in content
    assert b"Content-Type: application/pdf" in content and b"see attached" in content


# ------------------------------------------------------------------ TLS


def test_starttls_verified_summary(sink, tls: TLSPair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.json"
    code, out, _ = probe(target(sink), "--to", LOCAL, "--starttls", "--ca-file", tls.ca_file, "--json", str(path))
    assert code == 0, out
    assert "-> STARTTLS" in out and "# 220: Ready to start TLS" in out
    assert re.search(r"== TLS TLSv1\.[23], cipher \S+ \(\d+ bits\)", out)
    assert "== certificate issuer:  O=trustme" in out and "== verified: yes" in out
    assert "DNS:localhost" in out and "IP Address:127.0.0.1" in out
    assert out.count("-> EHLO") == 2  # RFC 3207 4.2: EHLO again inside TLS
    facts = json.loads(path.read_text())["tls"]
    assert facts["verified"] is True and facts["verify_error"] is None
    # --insecure: the certificate is read from its DER octets, not verified, and says so
    path2 = tmp_path / "i.json"
    code, out, _ = probe(target(sink), "--to", LOCAL, "--starttls", "--insecure", "--json", str(path2))
    assert code == 0, out
    assert "== verified: NO (not checked (--insecure))" in out
    insecure = json.loads(path2.read_text())["tls"]
    for key in ("subject", "issuer", "not_before", "not_after", "names", "version"):
        assert insecure[key] == facts[key], key


def test_untrusted_certificate_is_a_tls_failure(sink) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = probe(target(sink), "--to", LOCAL, "--starttls", "--ca-file", tls_pair().ca_file)
    assert code == model.EXIT_TLS, out
    assert "** certificate not verified: " in out and "--insecure" in out
    assert final(out).startswith("FAILED at tls (certificate not verified")


def test_broken_tls_fault(tls: TLSPair) -> None:
    with SinkThread(ssl_context=tls.server_context, faults={"T-01"}) as server:
        code, out, _ = probe(target(server), "--to", LOCAL, "--starttls", "--ca-file", tls.ca_file, "--timeout", "10")
    assert code == model.EXIT_TLS, out
    assert "** TLS handshake failed" in out and "FAILED at tls" in final(out)


def test_starttls_not_offered() -> None:
    with SinkThread() as server:
        code, out, _ = probe(target(server), "--to", LOCAL, "--starttls", "--insecure")
    assert code == model.EXIT_TLS and "does not offer STARTTLS" in out and "-> QUIT" in out


def test_implicit_tls(tls: TLSPair) -> None:
    with SinkThread(ssl_context=tls.server_context, implicit_tls=True) as server:
        code, out, _ = probe(target(server), "--to", LOCAL, "--tls", "--ca-file", tls.ca_file)
    assert code == 0, out
    assert "(implicit TLS)" in out and "== verified: yes" in out and "STARTTLS" not in out.split("== TLS")[1]


# ------------------------------------------------------------------ AUTH and secrets


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_decoded_and_secret_never_shown(sink, tls: TLSPair, tmp_path: Path, mechanism: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.json"
    code, out, err = probe(
        target(sink), "--to", FOREIGN, "--starttls", "--ca-file", tls.ca_file, "--auth-user", USER,
        "--auth-mechanism", mechanism, "--json", str(path), env={"SMTPBENCH_PASSWORD": SECRET},
    )  # fmt: skip
    assert code == 0, out + err  # the relay is allowed only after a real AUTH: the secret reached the wire
    assert sink.messages[-1].auth_user == USER
    assert "# 235: Authentication Succeeded" in out and f"authenticated as '{USER}' with {mechanism}" in out
    if mechanism == "LOGIN":
        assert "challenge decoded: 'Username:'" in out and "challenge decoded: 'Password:'" in out
        assert f"(decoded: '{USER}')" in out and "<password hidden>" in out
    else:
        assert f"-> AUTH PLAIN <authzid='' user='{USER}' password hidden>" in out
    assert_absent({"stdout": out, "stderr": err, "json": path.read_text()})


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"])
def test_challenge_and_token_mechanisms(tls: TLSPair, tmp_path: Path, mechanism: str) -> None:
    token = "tok-" + SECRET
    config = SinkConfig(auth_users={USER: SECRET}, auth_token=token, ssl_context=tls.server_context)
    env = {"SMTPBENCH_PASSWORD": SECRET, "SMTPBENCH_TOKEN": token}
    path = tmp_path / "a.json"
    with SinkThread(config) as server:
        code, out, err = probe(
            target(server), "--to", FOREIGN, "--starttls", "--ca-file", tls.ca_file, "--auth-user", USER,
            "--auth-mechanism", mechanism, "--json", str(path), env=env,
        )  # fmt: skip
    assert code == 0, out + err  # relaying needs a real AUTH
    assert f"authenticated as '{USER}' with {mechanism}" in out
    texts = {"stdout": out, "stderr": err, "json": path.read_text()}
    assert_absent(texts)
    for name, text in texts.items():
        assert token not in text and "Yz1iaXdz" not in text, name  # no token, no SCRAM client-final (proof)
    if mechanism == "SCRAM-SHA-256":
        assert "p=<proof hidden>" in out
    if mechanism == "CRAM-MD5":
        assert "digest hidden" in out


def test_password_file_and_refused_auth_with_421(tls: TLSPair, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("wrong-" + SECRET + "\n")
    config = SinkConfig(auth_users={USER: SECRET}, allow_plain_auth_without_tls=True, faults=frozenset({"U-03"}))
    with SinkThread(config) as server:
        code, out, err = probe(target(server), "--to", LOCAL, "--auth-user", USER, "--password-file", str(secret_file))
    assert code == model.EXIT_AUTH, out
    assert "warning: AUTH without TLS" in out
    assert "<** 535" in out and "# 535: Authentication credentials invalid; enhanced 5.7.8" in out
    assert "<** 421" in out  # U-03: the server hangs up after the failure
    assert final(out).startswith("REFUSED at auth: 535")
    assert "wrong-" not in out + err
    assert_absent({"stdout": out, "stderr": err})


# ------------------------------------------------------------------ refusals and exit codes


@pytest.mark.parametrize("pipelining", ["on", "off"])
def test_refused_recipient(pipelining: str) -> None:
    with SinkThread(reject_rcpt_perm=1.0) as server:
        code, out, _ = probe(target(server), "--to", LOCAL, "--pipelining", pipelining)
        assert not server.messages
    assert code == model.EXIT_RECIPIENT, out
    assert "<** 550" in out and final(out).startswith("REFUSED at rcpt: 550") and "no recipient accepted" in out
    assert ("-> DATA" in out) is (pipelining == "on")  # lockstep sends no DATA without a recipient


def test_partly_refused_recipients_still_deliver(sink) -> None:  # type: ignore[no-untyped-def]
    before = len(sink.messages)
    code, out, _ = probe(target(sink), "--to", LOCAL, "--to", FOREIGN)
    assert code == model.EXIT_RECIPIENT, out
    assert len(sink.messages) == before + 1
    assert "the message is for 1 of 2 recipients; the message itself was accepted" in final(out)


def test_exit_codes_by_outcome(tls: TLSPair, tmp_path: Path) -> None:
    # connect failure: nothing listens
    code, out, _ = probe(f"127.0.0.1:{free_port()}", "--to", LOCAL, "--timeout", "5")
    assert code == model.EXIT_CONNECT and "cannot connect: refused" in out
    # greeting refused (C-02: 554 and close)
    with SinkThread(faults={"C-02"}) as server:
        code, out, _ = probe(target(server), "--to", LOCAL)
    assert code == model.EXIT_REFUSED_SESSION and final(out).startswith("REFUSED at banner: 554"), out
    assert "No SMTP service here" in out
    # sender refused (A-01: the null reverse-path gets 553)
    with SinkThread(faults={"A-01"}) as server:
        code, out, _ = probe(target(server), "--from", "", "--to", LOCAL)
    assert code == model.EXIT_SENDER and final(out).startswith("REFUSED at mail: 553"), out
    # message refused after the data
    with SinkThread(reject_data_perm=1.0) as server:
        code, out, _ = probe(target(server), "--to", LOCAL)
    assert code == model.EXIT_MESSAGE and final(out).startswith("REFUSED at data: 554"), out


def test_421_to_mail_and_unlisted_code_flagged() -> None:
    with HostileServer(MiniSMTP(mail_reply=b"421 4.3.2 shutting down, try later\r\n")) as srv:
        code, out, _ = probe(srv.target, "--to", LOCAL)
    assert code == model.EXIT_SENDER and final(out).startswith("REFUSED at mail: 421"), out
    assert (
        "enhanced 4.3.2: Persistent Transient Failure; Mail System Status: System not accepting network messages" in out
    )
    assert "-> QUIT" not in out  # after a 421 the session is over
    with HostileServer(MiniSMTP(mail_reply=b"554 5.7.1 no\r\n")) as srv:
        code, out, _ = probe(srv.target, "--to", LOCAL)
    assert code == model.EXIT_SENDER, out
    assert "! 554 is not a reply the RFC tables list for MAIL" in out
    # MiniSMTP pipelines on regardless and says 354 to DATA: the probe hangs up rather than send text or QUIT
    assert "closing without QUIT" in out and "-> QUIT" not in out


def test_stalled_dialogue_is_broken() -> None:
    with HostileServer(MiniSMTP(data_fault="stall")) as srv:
        code, out, _ = probe(srv.target, "--to", LOCAL, "--timeout", "1")
    assert code == model.EXIT_BROKEN, out
    assert "** no reply within 1s" in out and final(out).startswith("FAILED at data (no reply within 1s)")


def test_replies_out_of_order_break_the_dialogue_at_once() -> None:
    """Fault P-01 answers a pipelined group's DATA before its RCPTs: the 354 pairs with RCPT, a protocol error
    named as such (not a wait for a reply that the out-of-step dialogue would never get)."""
    with SinkThread(faults={"P-01"}) as server:
        code, out, _ = probe(target(server), "--to", LOCAL, "--pipelining", "on", "--timeout", "10")
    assert code == model.EXIT_BROKEN, out
    assert final(out).startswith("FAILED at mail (protocol error: 354 in reply to RCPT"), final(out)


def test_json_not_writable_is_exit_3(sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = probe(target(sink), "--to", LOCAL, "--json", str(tmp_path))  # a directory
    assert code == 3 and err.startswith("smtpbench: probe failed: cannot write") and "ACCEPTED" in out


# ------------------------------------------------------------------ --quit-after


@pytest.mark.parametrize("step", model.STEPS)
def test_quit_after_each_step(sink, tls: TLSPair, step: str) -> None:  # type: ignore[no-untyped-def]
    before = len(sink.messages)
    extra = ["--starttls", "--ca-file", tls.ca_file] if step in ("tls", "auth") else []
    extra += ["--auth-user", USER] if step == "auth" else []
    code, out, _ = probe(target(sink), "--to", LOCAL, "--quit-after", step, *extra, env={"SMTPBENCH_PASSWORD": SECRET})
    assert code == 0, out
    assert final(out).startswith(f"STOPPED at {step} (--quit-after {step})")
    assert len(sink.messages) == before  # nothing delivered
    sent = [x.split("-> ", 1)[1] for x in out.splitlines() if " -> " in x]
    expect_last = {
        "connect": None,
        "banner": "QUIT",
        "ehlo": "QUIT",
        "tls": "QUIT",
        "auth": "QUIT",
        "mail": "QUIT",
        "rcpt": "QUIT",
        "data": "DATA",  # after the 354 the connection is dropped: a QUIT would be message text
    }[step]
    assert (sent[-1] if sent else None) == expect_last, sent
    if step == "rcpt":
        assert "RCPT TO:<bob@example.test>" in sent and "DATA" not in sent
    if step == "mail":
        assert not any(s.startswith("RCPT") for s in sent)


def test_quit_after_connect_with_implicit_tls_skips_the_handshake() -> None:
    """--tls --quit-after connect stops once TCP is up (it did the TLS handshake first: a server that never
    answers the ClientHello made it 'FAILED at tls', exit 12, after --timeout)."""
    with HostileServer(no_greeting) as srv:
        code, out, _ = probe(srv.target, "--tls", "--insecure", "--quit-after", "connect", "--timeout", "20")
    assert code == 0, out
    assert final(out).startswith("STOPPED at connect (--quit-after connect)") and "TLS handshake" not in out


# ------------------------------------------------------------------ bad input


def test_ca_file_that_is_no_pem_bundle_is_one_line_exit_2(sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """It was a traceback (ssl.SSLError from the context built after the 220 to STARTTLS), exit 1."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    code, out, err = probe(target(sink), "--starttls", "--ca-file", str(bad), "--quit-after", "tls")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (out, err)
    assert lines[0].startswith(f"smtpbench: error: --ca-file: CA file {str(bad)!r} holds no usable certificate")
    assert out == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--starttls", "--tls"], "exclude each other"),
        (["--quit-after", "bogus"], "--quit-after"),
        (["--pipelining", "sometimes"], "--pipelining"),
        (["--to", "not-an-address"], "not a mailbox"),
        (["--auth-user", USER], "no password"),
        (["--auth-mechanism", "DIGEST-MD5", "--auth-user", USER], "unsupported mechanism"),
        (["--header", "no colon"], "--header"),
        (["--data", "/nonexistent/file"], "cannot read"),
        (["--data", "-", "--body", "x"], "excludes --body"),
        (["--insecure"], "need --starttls or --tls"),
        (["--quit-after", "tls"], "needs --starttls"),
        (["--json", "/nonexistent/dir/x.json"], "does not exist"),
        (["--timeout", "soon"], "'--timeout'"),  # click's four-line usage block before
        (["--frobnicate"], "No such option: --frobnicate"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], fragment: str) -> None:
    full = [*args] if "--to" in args else ["--to", LOCAL, *args]
    code, out, err = probe("127.0.0.1:1", *full, env={"SMTPBENCH_PASSWORD": ""})
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smtpbench: error: ") and fragment in lines[0], err
    assert out == "" and "Traceback" not in err


def test_no_recipient_is_bad_input_unless_stopping_early(sink) -> None:  # type: ignore[no-untyped-def]
    code, _, err = probe(target(sink))
    assert code == 2 and "--to" in err
    code, out, _ = probe(target(sink), "--quit-after", "mail")
    assert code == 0, out
