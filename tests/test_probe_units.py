"""The probe's sans-I/O parts: the annotation tables, secret hiding, DER reading, message building."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.probe.annotate import auth_shown, ehlo_notes, reply_event, size_limit, validity_note
from smtpbench.probe.certinfo import decode_der
from smtpbench.probe.message import build_message
from smtpbench.probe.model import TLSFacts
from smtpbench.probe.options import build_options
from smtpbench.protocol import sasl, tables
from smtpbench.protocol.replies import ReplyParser
from smtpbench.protocol.state import TRANSITIONS, ClientProtocol, State


def reply(raw: bytes):  # type: ignore[no-untyped-def]
    return ReplyParser().feed(raw)[0]


def test_tables_in_step() -> None:
    """Every registered enhanced code has a text, every code some command lists has a meaning."""
    assert set(tables.ENHANCED_TEXT) == set(tables.RAW["enhanced_codes"])
    listed = set().union(*(c.listed for c in tables.COMMANDS.values())) | tables.ANY_COMMAND | tables.ALSO_COMMON
    assert listed <= set(tables.REPLY_TEXT), sorted(listed - set(tables.REPLY_TEXT))
    for verb, _code in tables.REPLY_TEXT_BY_COMMAND:
        assert verb in tables.COMMANDS or verb == "AUTH_RESPONSE", verb


def test_meanings() -> None:
    assert tables.reply_meaning("RCPT", 250) == "Requested mail action okay, completed"
    assert tables.reply_meaning("CONNECT", 554).startswith("No SMTP service here")
    assert tables.reply_meaning("MAIL", 554) == "Transaction failed"
    assert tables.reply_meaning("MAIL", 299) is None
    assert tables.enhanced_meaning("2.1.5") == "Success; Addressing Status: Destination address valid"
    assert tables.enhanced_meaning("5.7.99") == "Permanent Failure; Security or Policy Status (unregistered detail)"
    assert tables.enhanced_meaning("3.1.1") is None
    assert tables.ehlo_keyword_meaning("auth", "PLAIN LOGIN") == (
        "RFC 4954: SMTP authentication; the SASL mechanisms offered: PLAIN LOGIN"
    )
    assert tables.ehlo_keyword_meaning("X-NOPE") is None


def test_reply_event_flags() -> None:
    ev = reply_event(0.1, "MAIL", reply(b"554 5.7.1 no\r\n"))
    assert ev.listed is False and any("not a reply the RFC tables list for MAIL" in n for n in ev.flags)
    ev = reply_event(0.1, "AUTH_RESPONSE", reply(b"334 UGFzc3dvcmQ6\r\n"))
    assert ev.listed is True and "challenge decoded: 'Password:'" in ev.notes
    ev = reply_event(0.1, "RCPT", reply(b"299 odd\n"))
    assert any("first digit (positive completion)" in n for n in ev.flags)
    assert "reply defect: bare LF line end" in ev.flags
    ev = reply_event(0.1, "UNSOLICITED", reply(b"421 4.4.2 bye\r\n"))
    assert ev.listed is True and not ev.flags


def test_ehlo_notes() -> None:
    notes = ehlo_notes(reply(b"250-mx.example\r\n250-SIZE 0\r\n250-X-VENDOR\r\n250 AUTH PLAIN\r\n"))
    assert notes[0].startswith("SIZE 0: RFC 1870") and notes[0].endswith("no fixed limit")
    assert notes[1] == "X-VENDOR: not a keyword the tables know (vendor-specific?)"
    assert notes[2].endswith("mechanisms offered: PLAIN")
    assert size_limit("") == "no limit stated" and size_limit("x") == "malformed limit 'x'"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    user=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=20),
    password=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=4, max_size=30),
)
def test_auth_shown_never_contains_the_password(user: str, password: str) -> None:
    password = "pw" + password  # not a substring of the fixed display text ("AUTH PLAIN", "hidden"...)
    shown = [
        auth_shown(f"AUTH PLAIN {sasl.plain_response(user, password)}", user, password),
        auth_shown(sasl.b64(password), user, password),
        auth_shown(sasl.b64(user), user, password),
    ]
    forms = {password, sasl.b64(password), sasl.plain_response(user, password)}
    for text in shown:
        for form in forms:
            if form != user and form not in sasl.b64(user) and form not in user:
                assert form not in text, (text, form)
    assert "password hidden" in shown[0] and "password hidden" in shown[1]


def test_der_reader_matches_getpeercert_shape(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("mx.example", "127.0.0.1", common_name="mx.example")
    pem = cert.cert_chain_pems[0].bytes().decode()
    path = tmp_path / "c.pem"
    path.write_text(pem)
    reference = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    mine = decode_der(ssl.PEM_cert_to_DER_cert(pem))
    for key in ("subject", "issuer", "notBefore", "notAfter"):
        assert mine[key] == reference[key], key
    assert mine["subjectAltName"] == (("DNS", "mx.example"), ("IP Address", "127.0.0.1"))
    assert ssl.cert_time_to_seconds(mine["notAfter"]) > 0
    with pytest.raises(ValueError):
        decode_der(b"\x30\x05\x01")


def test_validity_note() -> None:
    facts = TLSFacts(not_before="Jan  1 00:00:00 2000 GMT", not_after="Jan  1 00:00:00 2001 GMT")
    assert validity_note(facts) == "expired on Jan  1 00:00:00 2001 GMT"
    assert validity_note(facts, dt.datetime(2000, 6, 1, tzinfo=dt.UTC)) is None


def test_bdat_in_state_machine() -> None:
    assert (State.RCPT, "BDAT_LAST") in TRANSITIONS
    c = ClientProtocol()
    c.receive(b"220 hi\r\n")
    for verb in ("EHLO", "MAIL", "RCPT", "BDAT", "BDAT_LAST"):
        c.send(verb, b"")
        c.receive(b"250 ok\r\n")
    assert c.state is State.READY


def test_message_built_with_headers_and_8bit_body() -> None:
    opts = build_options("127.0.0.1", sender="a@x.example", recipients=["b@y.example"], body="grüße\n")
    opts.headers = [("Subject", "replaced"), ("X-New", "1")]
    text = build_message(opts)
    assert text.count(b"Subject:") == 1 and b"Subject: replaced\r\n" in text and b"X-New: 1\r\n" in text
    assert all(b < 128 for b in text)  # 8-bit body text is transfer-encoded
    assert b"\r\n" in text and b"\n" not in text.replace(b"\r\n", b"")


def test_auth_shown_when_the_password_is_the_user_name() -> None:
    """A password equal to (or inside) the user name is still never shown: the check for it comes first."""
    assert auth_shown(sasl.b64("alice"), "alice", "alice") == "<password hidden>  (decoded)"
    assert "ali" not in auth_shown(sasl.b64("alice"), "alice", "ali")
    assert sasl.b64("alice") not in auth_shown(sasl.b64("alice"), "alice", "ali")
