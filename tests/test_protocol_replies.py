"""Reply parser: unit and property tests (the bytes come from servers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol.errors import (
    MalformedReplyError,
    MismatchedReplyCodeError,
    ReplyTooLongError,
    SMTPProtocolError,
)
from smtpbench.protocol.replies import ReplyParser, enhanced_code


def test_single_and_multiline() -> None:
    p = ReplyParser()
    out = p.feed(b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    assert [r.code for r in out] == [220, 250]
    assert out[1].lines == ("mx.example", "PIPELINING", "SIZE 1000")
    assert out[0].defects == ()
    assert not p.has_partial


def test_split_anywhere() -> None:
    data = b"250-2.1.0 a\r\n250-2.1.0 b\r\n250 2.1.0 ok\r\n"
    for cut in range(len(data)):
        p = ReplyParser()
        got = p.feed(data[:cut]) + p.feed(data[cut:])
        assert len(got) == 1 and got[0].lines == ("2.1.0 a", "2.1.0 b", "2.1.0 ok")
        assert got[0].enhanced == "2.1.0"


def test_enhanced_code() -> None:
    assert enhanced_code("5.7.1 relay denied") == "5.7.1"
    assert enhanced_code("2.0.0") == "2.0.0"
    assert enhanced_code("250 text") is None
    assert enhanced_code("6.1.1 x") is None


def test_lenient_cases_are_defects() -> None:
    p = ReplyParser()
    (r,) = p.feed(b"250\r\n")
    assert r.code == 250 and "last line lacks the SP after the code" in r.defects
    (r,) = p.feed(b"250 ok\n")
    assert "bare LF line end" in r.defects
    (r,) = p.feed(b"250 \x01bad\r\n")
    assert any("control" in d for d in r.defects)
    (r,) = p.feed(b"269 odd\r\n")
    assert any("second digit" in d for d in r.defects)


@pytest.mark.parametrize(
    "data, exc",
    [
        (b"HTTP/1.1 400 Bad Request\r\n", MalformedReplyError),
        (b"25\r\n", MalformedReplyError),
        (b"650 no\r\n", MalformedReplyError),
        (b"250x\r\n", MalformedReplyError),
        (b"250-a\r\n251 b\r\n", MismatchedReplyCodeError),
    ],
)
def test_protocol_errors(data: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        ReplyParser().feed(data)


def test_line_cap_without_line_end() -> None:
    p = ReplyParser(max_line=1000)
    with pytest.raises(ReplyTooLongError):
        for _ in range(100):
            p.feed(b"2" * 100)
    assert p.buffered < 2000


def test_reply_cap_endless_continuation() -> None:
    p = ReplyParser(max_reply=10_000)
    with pytest.raises(ReplyTooLongError):
        for _ in range(10_000):
            p.feed(b"250-more and more\r\n")
    assert p.buffered <= 10_000 + 4096


reply_line_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@st.composite
def replies(draw: st.DrawFn) -> tuple[int, list[str]]:
    code = draw(st.integers(200, 559).filter(lambda c: c % 100 // 10 <= 5))
    lines = draw(st.lists(reply_line_text, min_size=1, max_size=5))
    return code, lines


def encode(code: int, lines: list[str]) -> bytes:
    out = b""
    for i, text in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        out += f"{code}{sep}{text}\r\n".encode()
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(replies(), min_size=1, max_size=6), st.lists(st.integers(1, 50), max_size=20))
def test_roundtrip_any_chunking(rs: list[tuple[int, list[str]]], cuts: list[int]) -> None:
    """Well-formed replies come back intact however the stream is cut."""
    data = b"".join(encode(c, ls) for c, ls in rs)
    p = ReplyParser()
    got = []
    pos = 0
    for n in cuts:
        got += p.feed(data[pos : pos + n])
        pos += n
    got += p.feed(data[pos:])
    assert [(r.code, list(r.lines)) for r in got] == rs
    assert all(r.defects == () for r in got)
    assert b"".join(r.raw for r in got) == data


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_arbitrary_bytes_never_crash(chunks: list[bytes]) -> None:
    """Any bytes: replies or an SMTPProtocolError, never another exception, memory bounded."""
    p = ReplyParser(max_line=512, max_reply=2048)
    try:
        for c in chunks:
            for r in p.feed(c):
                assert 200 <= r.code <= 599
            assert p.buffered <= 512 + 2048 + 300
    except SMTPProtocolError:
        pass
