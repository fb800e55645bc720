"""Unit and property tests of the extension checks' pure helpers (no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtpbench.conform.checks.ext_auth import _check_challenge
from smtpbench.conform.checks.ext_common import mechanisms, plain_response
from smtpbench.conform.checks.ext_dsn import REGISTRY, registry_notes, reply_problems
from smtpbench.conform.checks.ext_relay import VECTORS, expand
from smtpbench.conform.checks.ext_size import advertised_limit, oversize_body
from smtpbench.conform.evidence import redact_command
from smtpbench.conform.model import Verdict
from smtpbench.conform.probe import Exchange
from smtpbench.protocol.errors import SMTPProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser


def _reply(raw: bytes) -> Reply:
    (reply,) = ReplyParser().feed(raw)
    return reply


@given(st.integers(min_value=60, max_value=300_000))
def test_oversize_body_is_exactly_the_size_asked(octets: int) -> None:
    body = oversize_body(octets)
    assert len(body) == octets
    lines = body.split(b"\r\n")
    assert lines[-1] == b""  # ends in CRLF
    assert all(not line.startswith(b".") and len(line) <= 998 for line in lines)
    assert b"\r" not in body.replace(b"\r\n", b"") and b"\n" not in body.replace(b"\r\n", b"")


def test_advertised_limit() -> None:
    assert advertised_limit({"SIZE": "10240000"}) == 10240000
    assert advertised_limit({"SIZE": "0"}) is None  # 0: no fixed maximum
    assert advertised_limit({"SIZE": ""}) is None
    assert advertised_limit({}) is None


def test_relay_vectors_are_the_sixteen_of_nmap() -> None:
    assert len(VECTORS) == 16
    assert len(set(VECTORS)) == 16
    values = {"from": "f", "to": "t", "ext": "relay.invalid", "srv": "mx.example", "ip": "192.0.2.1", "local": "x.test"}
    expanded = [(expand(m, values), expand(r, values)) for m, r in VECTORS]
    assert expanded[0] == ("", "t@relay.invalid")
    assert ("f@x.test", "relay.invalid!t@mx.example") in expanded
    # No address-literal sender: servers that refuse those by policy would leave the vector untested.
    assert not any("[" in m for m, _ in expanded)
    assert all("{" not in m + r for m, r in expanded)
    # Every vector names the foreign domain on the RCPT side: each one is a relay attempt.
    assert all("relay.invalid" in r for _, r in expanded)


def test_mechanisms_parsing() -> None:
    assert mechanisms({"AUTH": "plain LOGIN cram-md5"}) == {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert mechanisms({"AUTH=LOGIN": "PLAIN"}) == {"LOGIN", "PLAIN"}
    assert mechanisms({}) == set()


def test_plain_response_and_its_redaction() -> None:
    payload = plain_response("u", "p")
    assert payload == "AHUAcA=="
    shown = redact_command(f"AUTH PLAIN {payload}\r\n".encode())
    assert payload not in shown and shown == "AUTH PLAIN <redacted>"


def test_challenge_format() -> None:
    def ex(raw: bytes) -> Exchange:
        return Exchange(b"AUTH PLAIN\r\n", "AUTH", [_reply(raw)])

    assert _check_challenge(ex(b"334 \r\n"), exact_empty=True) is None
    assert _check_challenge(ex(b"334 VXNlcm5hbWU6\r\n")) is None
    text = _check_challenge(ex(b"334 Send your credentials\r\n"))
    assert text is not None and text.verdict is Verdict.FAIL
    nonempty = _check_challenge(ex(b"334 VXNlcm5hbWU6\r\n"), exact_empty=True)
    assert nonempty is not None and nonempty.verdict is Verdict.FAIL
    no_space = _check_challenge(ex(b"334\r\n"), exact_empty=True)
    assert no_space is not None and no_space.verdict is Verdict.WARN


def test_enhanced_code_rules() -> None:
    assert reply_problems(_reply(b"250 2.0.0 Ok\r\n")) == []
    assert reply_problems(_reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")) == []
    assert [v for v, _ in reply_problems(_reply(b"354 2.0.0 go\r\n"))] == [Verdict.WARN]
    assert [v for v, _ in reply_problems(_reply(b"250 Ok\r\n"))] == [Verdict.WARN]
    assert [v for v, _ in reply_problems(_reply(b"550 2.1.1 no\r\n"))] == [Verdict.FAIL]
    multi = _reply(b"250-2.0.0 one\r\n250 2.0.1 two\r\n")
    assert [v for v, _ in reply_problems(multi)] == [Verdict.FAIL]
    assert reply_problems(_reply(b"250-2.0.0 one\r\n250 2.0.0 two\r\n")) == []


def test_registry_notes() -> None:
    assert "1.1" in REGISTRY and 550 in REGISTRY["1.1"]
    assert registry_notes(_reply(b"550 5.1.1 unknown user\r\n")) == []
    assert registry_notes(_reply(b"550 5.9.99 made up\r\n")) != []


@given(st.binary(max_size=600))
def test_enhanced_code_judgement_never_breaks_on_server_bytes(data: bytes) -> None:
    try:
        replies = ReplyParser().feed(b"250 " + data + b"\r\n")
    except SMTPProtocolError:
        return
    for reply in replies:
        for verdict, why in reply_problems(reply):
            assert verdict in (Verdict.FAIL, Verdict.WARN) and why
        registry_notes(reply)


@given(st.sampled_from([2, 4, 5]), st.sampled_from([2, 4, 5]), st.integers(0, 999), st.integers(0, 999))
def test_class_must_match_the_reply(code_class: int, status_class: int, subject: int, detail: int) -> None:
    raw = f"{code_class}50 {status_class}.{subject}.{detail} text\r\n".encode()
    verdicts = [v for v, _ in reply_problems(_reply(raw))]
    assert (Verdict.FAIL in verdicts) == (code_class != status_class)
