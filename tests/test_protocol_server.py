"""The sans-I/O server role (smtpbench.protocol.server): bytes in, replies out, no sockets."""

from __future__ import annotations

import re
from base64 import b64encode

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol.commands import encode_data
from smtpbench.protocol.replies import ReplyParser
from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_state import AUTH_LINE_MAX, CMD, DATA, ServerConfig

CONFIG = ServerConfig(
    hostname="mx.example.test",
    max_size=100_000,
    keep_content=True,
    local_domains=frozenset({"example.test", "localhost"}),
    auth_users={"alice": "s3cret"},
    starttls=True,
)
SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][\t\x20-\x7e]*\r\n")


class Recorder(ServerConnection):
    """A server role that keeps what it accepts, as an embedding server would deliver it."""

    def __init__(self, config: ServerConfig = CONFIG, **kwargs: object) -> None:
        super().__init__(config, peer_ip="192.0.2.7", **kwargs)  # type: ignore[arg-type]
        self.accepted: list[tuple[str, list[str], bytes | None, str]] = []

    def message_accepted(self, content: bytes | None, via: str) -> str:
        self.accepted.append((self.mail_from or "", list(self.rcpts), content, via))
        return super().message_accepted(content, via)


def take(conn: ServerConnection) -> bytes:
    """What the I/O layer would send now."""
    data = b"".join(conn.out)
    conn.out.clear()
    return data


def codes(data: bytes) -> list[int]:
    return [r.code for r in ReplyParser().feed(data)]


def session(body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> bytes:
    return (
        b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"
        + encode_data(body)
        + b"QUIT\r\n"
    )


def test_ehlo_lists_extensions_for_this_session() -> None:
    conn = Recorder()
    conn.receive_data(b"EHLO client.example\r\n")
    reply = ReplyParser().feed(take(conn))[0]
    assert reply.code == 250
    assert reply.lines[0] == "mx.example.test Hello client.example [192.0.2.7]"
    assert "SIZE 100000" in reply.lines
    assert {"PIPELINING", "8BITMIME", "CHUNKING", "STARTTLS"} <= set(reply.lines)
    # AUTH needs TLS here (allow_plain_auth_without_tls is off).
    assert not any(line.startswith("AUTH") for line in reply.lines)


def test_pipelined_transaction_in_one_feed() -> None:
    conn = Recorder()
    conn.receive_data(session(b"Subject: t\r\n\r\n.leading dot\r\n..two\r\n"))
    assert codes(take(conn)) == [250, 250, 250, 354, 250, 221]
    assert conn.closing
    assert conn.accepted == [
        ("a@client.example", ["u@example.test"], b"Subject: t\r\n\r\n.leading dot\r\n..two\r\n", "DATA")
    ]
    assert conn.stats.messages_accepted == 1
    assert conn.stats.commands == 5


def test_incomplete_line_waits_for_the_rest() -> None:
    conn = Recorder()
    conn.receive_data(b"EHLO client.exa")
    assert conn.out == []
    conn.receive_data(b"mple\r\nNOOP\r")
    assert codes(take(conn)) == [250]
    conn.receive_data(b"\n")
    assert codes(take(conn)) == [250]


def test_sequence_errors_and_bad_lines() -> None:
    conn = Recorder()
    conn.receive_data(b"MAIL FROM:<a@b.example>\r\nEHLO c.example\r\nRCPT TO:<u@example.test>\r\nDATA\r\n")
    assert codes(take(conn)) == [503, 250, 503, 503]
    conn.receive_data(b"NO\nOP\r\nFROB\r\n\r\n")
    assert codes(take(conn)) == [500, 500, 500]
    assert conn.stats.bad_commands == 3


def test_relay_refused_and_postmaster_accepted() -> None:
    conn = Recorder()
    conn.receive_data(b"EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<Postmaster>\r\n")
    assert codes(take(conn)) == [250, 250, 550, 250]
    assert conn.rcpts == ["Postmaster"]


def test_size_limit_on_mail_and_on_content() -> None:
    conn = Recorder(ServerConfig(max_size=1000, local_domains=frozenset({"example.test"})))
    conn.receive_data(b"EHLO c.example\r\nMAIL FROM:<a@c.example> SIZE=1001\r\n")
    assert codes(take(conn)) == [250, 552]
    conn.receive_data(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n")
    conn.receive_data(encode_data(b"x" * 998 + b"\r\n" + b"y" * 10 + b"\r\n"))
    assert codes(take(conn)) == [250, 250, 354, 552]
    assert conn.accepted == []
    assert conn.mode == CMD


def test_over_long_line_is_discarded_and_answered_once() -> None:
    conn = Recorder()
    conn.receive_data(b"NOOP " + b"x" * (AUTH_LINE_MAX + 10))
    assert conn.out == []
    assert len(conn.buf_rest) == 0  # not buffered: discarded
    conn.receive_data(b"x" * 100 + b"\r\nNOOP\r\n")
    assert codes(take(conn)) == [500, 250]


def test_bdat_chunks_count_octets_exactly() -> None:
    conn = Recorder()
    chunk1 = b"Subject: b\r\n\r\n.\r\n"  # a lone dot line means nothing in BDAT
    chunk2 = b"end\r\n"
    conn.receive_data(b"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\n")
    conn.receive_data(b"BDAT %d\r\n" % len(chunk1) + chunk1 + b"BDAT %d LAST\r\n" % len(chunk2))
    conn.receive_data(chunk2[:2])
    conn.receive_data(chunk2[2:] + b"NOOP\r\n")
    assert codes(take(conn)) == [250, 250, 250, 250, 250, 250]
    assert conn.accepted[0][2:] == (chunk1 + chunk2, "BDAT")


def test_starttls_stops_reading_plaintext() -> None:
    conn = Recorder()
    conn.receive_data(b"EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<injected@c.example>\r\n")
    assert codes(take(conn)) == [250, 220]
    assert conn.tls_requested
    assert conn.tls_rest == b"MAIL FROM:<injected@c.example>\r\n"
    # The handshake (the I/O layer's job) succeeded: the session restarts, the plaintext is dropped.
    assert conn.tls_started() == b""
    assert conn.tls and conn.greeted is None and conn.mail_from is None
    conn.receive_data(b"MAIL FROM:<a@c.example>\r\nEHLO c.example\r\n")
    out = take(conn)
    assert codes(out) == [503, 250]
    assert b"AUTH PLAIN LOGIN" in out and b"STARTTLS" not in out


def test_auth_plain_and_login_after_tls() -> None:
    conn = Recorder()
    conn.tls = True
    good = b64encode(b"\0alice\0s3cret")
    conn.receive_data(b"EHLO c.example\r\nAUTH PLAIN " + good + b"\r\n")
    assert codes(take(conn)) == [250, 235]
    assert conn.auth_user == "alice"
    conn = Recorder()
    conn.tls = True
    conn.receive_data(
        b"EHLO c.example\r\nAUTH LOGIN\r\n" + b64encode(b"alice") + b"\r\n" + b64encode(b"wrong") + b"\r\n"
    )
    assert codes(take(conn)) == [250, 334, 334, 535]
    assert conn.auth_user is None and conn.stats.auth_failures == 1


def test_quirk_changes_one_behaviour() -> None:
    conn = Recorder(quirks=frozenset({"E-05"}))
    conn.receive_data(b"ehlo c.example\r\nEHLO c.example\r\n")
    assert codes(take(conn)) == [500, 250]


@SETTINGS
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_any_bytes_only_produce_well_formed_replies(data: bytes, cuts: list[int]) -> None:
    """Whatever a peer sends, in whatever pieces: no exception, only well-formed reply lines, bounded buffer."""
    conn = Recorder(ServerConfig(max_bad_commands=10**6, local_domains=frozenset({"example.test"})))
    conn.receive_data(b"EHLO c.example\r\n")
    pos = 0
    for cut in cuts + [len(data)]:
        conn.receive_data(data[pos : pos + cut])
        pos += cut
        assert len(conn.buf_rest) <= AUTH_LINE_MAX + 1
    out = take(conn)
    assert REPLY_LINE.sub(b"", out) == b""


lines_st = st.lists(st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=30)


@SETTINGS
@given(lines_st, st.lists(st.integers(min_value=1, max_value=50), max_size=60))
def test_content_survives_any_split(lines: list[bytes], cuts: list[int]) -> None:
    """Dot-stuffed content fed in arbitrary pieces arrives unstuffed and whole, and the next command still works."""
    body = b"".join(line + b"\r\n" for line in lines)
    wire = session(body)
    whole = Recorder()
    whole.receive_data(wire)
    pieces = Recorder()
    pos = 0
    for cut in cuts + [len(wire)]:
        pieces.receive_data(wire[pos : pos + cut])
        pos += cut
        if pos >= len(wire):
            break
    assert whole.accepted == pieces.accepted == [("a@client.example", ["u@example.test"], body, "DATA")]
    assert take(whole) == take(pieces)
    assert pieces.closing and pieces.mode != DATA
