"""Dot-stuffing, CRLF normalisation and the server-side end-of-data finder."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol.commands import DataReceiver, encode_data, mail_from, parse_path, rcpt_to


def test_encode_data_examples() -> None:
    assert encode_data(b"") == b".\r\n"
    assert encode_data(b"a") == b"a\r\n.\r\n"
    assert encode_data(b".x\n..y\rz\r\n") == b"..x\r\n...y\r\nz\r\n.\r\n"
    assert encode_data(b"a\r\n.\r\nb") == b"a\r\n..\r\nb\r\n.\r\n"


def test_commands_have_no_space_around_colon() -> None:
    assert mail_from("a@x", {"SIZE": "10", "BODY": "8BITMIME"}) == b"MAIL FROM:<a@x> SIZE=10 BODY=8BITMIME\r\n"
    assert rcpt_to("b@y") == b"RCPT TO:<b@y>\r\n"
    assert parse_path("FROM:<a@x> SIZE=10 SMTPUTF8", "FROM") == ("a@x", {"SIZE": "10", "SMTPUTF8": None})
    assert parse_path("TO:b@y", "TO") is None


def _lines_of(body: bytes) -> list[bytes]:
    import re

    return re.split(rb"\r\n|\r|\n", body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=30))
def test_stuff_then_receive_roundtrip(body: bytes, cuts: list[int]) -> None:
    """Whatever the body and however it is split, the receiver gets it back (CRLF-normalised)."""
    wire = encode_data(body)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    # No bare CR or LF on the wire (2.3.8).
    assert wire.replace(b"\r\n", b"").find(b"\r") < 0 and wire.replace(b"\r\n", b"").find(b"\n") < 0
    r = DataReceiver(keep=True)
    pos, rest = 0, None
    for n in [*cuts, len(wire)]:
        rest = r.feed(wire[pos : pos + n])
        pos += n
        if rest is not None:
            break
    assert rest == wire[pos:] or rest == b""
    got = r.message()
    expected_lines = _lines_of(body)
    if body and not body.endswith((b"\r\n", b"\n", b"\r")):
        pass
    elif body:
        expected_lines = expected_lines[:-1]
    assert got == b"".join(line + b"\r\n" for line in expected_lines) if body else got == b""


def test_smuggling_variants_do_not_end_data() -> None:
    for term in (b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"):
        r = DataReceiver()
        assert r.feed(b"hello" + term + b"MAIL FROM:<x@y>\r\n") is None
        assert r.feed(b"\r\n.\r\nNOOP\r\n") == b"NOOP\r\n"
