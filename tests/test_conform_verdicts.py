"""Issue 7's verdict framework against real loopback servers (the sink): levels from the sentence,
policy, connection budgets, the TLS certificate and version checks (T-07, T-08)."""

from __future__ import annotations

import pathlib
import ssl

import pytest
import trio

from smtpbench.conform.checks import all_checks, select
from smtpbench.conform.levels import check_text, rule_of, settle
from smtpbench.conform.model import CheckResult, Finding, Rule, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.oracle import store_dir_oracle
from smtpbench.conform.probe import ERROR_BUDGET, ERROR_CODES
from smtpbench.conform.runner import run_suite
from smtpbench.sink.config import SinkConfig
from tests.sinkutil import SinkThread, TLSPair, tls_pair
from tests.test_conform_scripted import compliant, run_against

RCPT = "user@example.test"


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


def _run(config: SinkConfig, ids: tuple[str, ...], **opts: object) -> dict[str, CheckResult]:
    with SinkThread(config) as server:
        options = ConformOptions(port=server.port, rcpt=RCPT, timeout=2.0, check_timeout=30.0, quiet_wait=0.25)
        for key, value in opts.items():
            setattr(options, key, value)
        return {r.id: r for r in run_suite(options, select(ids))}


def _why(r: CheckResult) -> str:
    return f"{r.verdict.value}: {r.reason}\n" + "\n".join(r.evidence)


def test_every_check_has_a_sentence_with_whom_it_binds() -> None:
    for check in all_checks():
        text = check_text(check.id)
        assert text is not None, check.id
        assert text.rule.binds in ("server", "client") and text.rule.sentence and text.sends and text.why


def test_fail_needs_a_server_side_must() -> None:
    should = Rule("RFC 5321 4.1.1.9", "If a parameter string is specified, servers SHOULD ignore it.")
    client = Rule("RFC 5321 4.1.4", "a client MUST issue HELO or EHLO before starting a mail transaction.", "client")
    must = Rule("RFC 5321 4.2", "Every command MUST generate exactly one reply.")
    assert settle("X", Finding(Verdict.FAIL, "x", rule=should)).verdict is Verdict.WARN
    assert settle("X", Finding(Verdict.FAIL, "x", rule=client)).verdict is Verdict.INFO
    kept = settle("X", Finding(Verdict.FAIL, "x", ["C: NOOP"], rule=must))
    assert kept.verdict is Verdict.FAIL and kept.evidence[0] == must.quote() and "MUST" in kept.evidence[0]
    assert settle("NO-SUCH-CHECK", Finding(Verdict.FAIL, "x")).verdict is Verdict.WARN
    assert rule_of("D-05") is not None and rule_of("D-05").verdict is Verdict.FAIL  # type: ignore[union-attr]


def test_every_fail_quotes_its_must(tls: TLSPair) -> None:
    # Against the sink with faults, every fail carries the binding sentence as its first evidence line.
    got = _run(SinkConfig(faults=frozenset({"D-07", "E-03"}), store_messages=True), ("D-07", "E-03"))
    for r in got.values():
        assert r.verdict is Verdict.FAIL, _why(r)
        assert r.evidence[0].startswith("# RFC ") and "MUST" in r.evidence[0]


def test_closing_after_several_errors_is_policy_but_on_the_first_is_fail() -> None:
    several = _run(SinkConfig(max_bad_commands=3), ("X-06", "X-01"))
    assert several["X-06"].verdict is Verdict.POLICY, _why(several["X-06"])
    assert "421" in several["X-06"].reason  # the server's own words
    # X-01 keeps each connection under the limit: the sink's limit of 3 never decides it.
    assert several["X-01"].verdict is Verdict.PASS, _why(several["X-01"])
    first = _run(SinkConfig(faults=frozenset({"X-06"})), ("X-06",))
    assert first["X-06"].verdict is Verdict.FAIL, _why(first["X-06"])


def test_tls_certificate_is_reported_once_and_never_aborts(tls: TLSPair) -> None:
    config = SinkConfig(ssl_context=tls.server_context, store_messages=True)
    verified = _run(config, ("T-07", "T-03", "T-04"), ca_file=tls.ca_file)
    assert verified["T-07"].verdict is Verdict.PASS, _why(verified["T-07"])
    # Without --ca-file the trustme CA is unknown: T-07 records it (port is not a submission port: info),
    # and the protocol checks still run their TLS sessions (opportunistic TLS).
    opportunistic = _run(config, ("T-07", "T-03", "T-04"))
    assert opportunistic["T-07"].verdict is Verdict.INFO, _why(opportunistic["T-07"])
    assert "does not verify" in opportunistic["T-07"].reason
    for cid in ("T-03", "T-04"):
        assert opportunistic[cid].verdict is Verdict.PASS, _why(opportunistic[cid])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def _can_offer_tls10() -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    except (ValueError, ssl.SSLError):
        return False
    return True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_versions(tls: TLSPair) -> None:
    modern = _run(SinkConfig(ssl_context=tls.server_context), ("T-08",))
    assert modern["T-08"].verdict is Verdict.PASS, _why(modern["T-08"])
    assert "TLS 1.2" in modern["T-08"].reason
    if not _can_offer_tls10():
        pytest.skip("the local TLS library cannot offer TLS 1.0")
    old = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.load_cert_chain(tls.cert_file, tls.key_file)
    legacy = _run(SinkConfig(ssl_context=old), ("T-08",))
    if "not testable" in legacy["T-08"].reason and "TLS 1.0" in legacy["T-08"].reason.split("not testable")[1]:
        pytest.skip("the local TLS library refuses TLS 1.0 at handshake time")
    assert legacy["T-08"].verdict is Verdict.WARN, _why(legacy["T-08"])
    assert "TLS 1.0" in legacy["T-08"].reason


def test_delivery_oracle_reads_lf_maildirs_and_other_trace_fields(tmp_path: pathlib.Path) -> None:
    maildir = tmp_path / "Maildir" / "new"
    maildir.mkdir(parents=True)
    (maildir / "1.host").write_bytes(b"Return-Path: <a@b>\nReceived: from x\nSubject: s\n\nbody\n")
    (tmp_path / "2.eml").write_bytes(b"Received: from y\r\nSubject: t\r\n\r\nbare\nLF kept\r\n")
    got = store_dir_oracle(str(tmp_path))()
    assert sorted(got) == sorted(
        [b"Return-Path: <a@b>\r\nReceived: from x\r\nSubject: s\r\n\r\nbody\r\n", (tmp_path / "2.eml").read_bytes()]
    )
    # D-01 against the sink, with trace fields a real MTA writes above its Received: line.
    with SinkThread(SinkConfig(store_messages=True)) as server:
        options = ConformOptions(port=server.port, rcpt=RCPT, timeout=2.0, check_timeout=30.0, quiet_wait=0.25)

        def oracle() -> list[bytes]:
            return [b"Return-Path: <x@y>\r\nReceived-SPF: none\r\n" + m.content for m in server.messages]

        (d01,) = run_suite(options, select(("D-01",)), oracle=oracle)
    assert d01.verdict is Verdict.PASS, _why(d01)


async def _discarding_smuggler(stream: trio.SocketStream) -> None:
    """Ends DATA at <LF>.<LF> and throws away whatever else that read held (CVE-2023-51764-style)."""
    try:
        await stream.send_all(b"220 fake.example ESMTP\r\n")
        buf, in_data = b"", False
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            if in_data:
                for end in (b"\n.\n", b"\r\n.\r\n"):
                    if end in buf:
                        buf, in_data = b"", False  # the read-ahead after the end is lost
                        await stream.send_all(b"250 queued\r\n")
                        break
                continue
            while b"\r\n" in buf and not in_data:
                line, buf = buf.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"QUIT":
                    await stream.send_all(b"221 bye\r\n")
                    return
                if verb == b"DATA":
                    in_data = True
                    await stream.send_all(b"354 go\r\n")
                else:
                    await stream.send_all(compliant(line) or b"250 ok\r\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)


def test_smuggling_probe_is_not_fooled_by_a_server_that_discards_read_ahead() -> None:
    r = run_against(_discarding_smuggler, ("D-05",), quiet_wait=0.3)["D-05"]
    assert r.verdict is Verdict.FAIL, _why(r)
    assert "second write" in r.reason and "ended DATA at the bare sequence" in r.reason


def test_closing_on_the_first_unknown_command_is_not_hidden_as_policy() -> None:
    # The sink's X-06 fault: 421 and close after the first unknown command. X-01's first probe sees it.
    got = _run(SinkConfig(faults=frozenset({"X-06"})), ("X-01",))
    assert got["X-01"].verdict is not Verdict.POLICY, _why(got["X-01"])


def test_tls_checks_read_the_greeting_under_implicit_tls(tls: TLSPair) -> None:
    # With --tls the greeting comes inside TLS: T-07 and T-08 must read it before QUIT, else the
    # 220 arrives as an "extra reply to QUIT" and G-01 fails a server that did nothing wrong.
    config = SinkConfig(ssl_context=tls.server_context, implicit_tls=True)
    got = _run(config, ("T-07", "T-08", "G-01"), tls="implicit", ca_file=tls.ca_file)
    assert got["T-07"].verdict is Verdict.PASS, _why(got["T-07"])
    assert got["G-01"].verdict is Verdict.PASS, _why(got["G-01"])
    for cid in ("T-07", "T-08"):
        lines = [line for line in got[cid].transcript if line.startswith(("C:", "S:"))]
        assert lines[:1] == ["S: 220 sink.smtpbench.test ESMTP smtpbench-sink"], got[cid].transcript


def test_only_d02_fails_on_a_sentence_without_its_keyword() -> None:
    # README "Verdicts": a fail needs a server-side MUST / MUST NOT / SHALL in the quoted sentence; the one
    # documented exception is D-02 (4.5.2's dot-stuffing procedure, stated without an RFC 2119 word).
    stated = {
        c.id
        for c in all_checks()
        if (rule := rule_of(c.id)) is not None and rule.verdict is Verdict.FAIL and rule.keyword not in rule.sentence
    }
    assert stated == {"D-02"}
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "D-02 fails on RFC 5321 4.5.2's dot-stuffing" in readme


def test_json_exchange_is_at_most_400_lines() -> None:
    # README: `exchange` is the whole transcript, "at most 400 lines: head and tail kept". D-06's 16 sessions
    # against the sink are about 560 lines; the note of what was left out counts as one of the 400.
    got = _run(SinkConfig(store_messages=True), ("D-06",), quiet_wait=0.1)
    transcript = got["D-06"].transcript
    exchange = got["D-06"].as_dict()["exchange"]
    assert isinstance(exchange, list) and len(transcript) > 400
    assert len(exchange) == 400 and exchange[0] == transcript[0] and exchange[-1] == transcript[-1]
    assert f"… {len(transcript) - 399} lines left out …" in exchange


def _errors_per_session(transcript: list[str]) -> list[int]:
    """How many error-provoking replies (README: 500-504, 555) each session of a transcript holds."""
    counts: list[int] = []
    for line in transcript:
        if line.startswith("--- session"):
            counts.append(0)
        elif counts and line[:7] in {f"S: {code} " for code in ERROR_CODES}:
            counts[-1] += 1
    return counts


def test_no_connection_gets_more_than_two_error_replies() -> None:
    # README "Connection budgets": probes keep any one connection to at most 2 error-provoking replies (below
    # the common limit of 3, e.g. Exim's smtp_max_synprot_errors). X-06 is the error storm: it provokes them.
    ids = tuple(c.id for c in all_checks() if c.area not in ("data", "timeouts") and c.id != "X-06")
    got = _run(SinkConfig(store_messages=True), ids, quiet_wait=0.1)
    over = {
        cid: _errors_per_session(r.transcript)
        for cid, r in got.items()
        if max(_errors_per_session(r.transcript) or [0]) > ERROR_BUDGET
    }
    assert not over, over
