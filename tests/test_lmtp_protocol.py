"""LMTP (RFC 2033), sans I/O: the client's per-recipient replies and the server role's LHLO and per-recipient replies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol import commands, tables
from smtpbench.protocol.errors import LocalProtocolError, SMTPProtocolError
from smtpbench.protocol.lmtp import LMTPClientProtocol
from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_lmtp import LMTPServerConnection
from smtpbench.protocol.server_state import ServerConfig
from smtpbench.protocol.state import ClientProtocol, State

GREETED = b"220 lmtp.test LMTP\r\n"
LHLO_OK = b"250-lmtp.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"


def greeted_client() -> LMTPClientProtocol:
    c = LMTPClientProtocol()
    assert c.receive(GREETED)[0][0] == "CONNECT"
    c.send("LHLO", commands.lhlo("client.test"))
    (verb, reply), *_ = c.receive(LHLO_OK)
    assert verb == "LHLO" and reply.code == 250
    return c


def envelope(c: LMTPClientProtocol, n_rcpt: int, body: str = "DATA") -> None:
    c.send("MAIL", commands.mail_from("a@x.test"))
    for i in range(n_rcpt):
        c.send("RCPT", commands.rcpt_to(f"u{i}@example.test"))
    c.send(body, commands.DATA if body == "DATA" else b"BDAT 3 LAST\r\nhi\n")


def test_lhlo_sets_the_extensions_and_ehlo_helo_are_refused() -> None:
    c = greeted_client()
    assert c.state is State.READY and set(c.extensions) == {"PIPELINING", "CHUNKING"}
    for verb in ("EHLO", "HELO"):
        with pytest.raises(LocalProtocolError, match="LHLO"):
            c.send(verb, commands.ehlo("x"))
    assert tables.is_expected("LHLO", 250) and tables.is_expected("LHLO", 500)
    assert not tables.is_expected("LHLO", 354)


def test_one_reply_per_accepted_recipient_in_rcpt_order() -> None:
    c = greeted_client()
    envelope(c, 3)
    got = c.receive(b"250 ok\r\n250 r0\r\n550 r1 refused\r\n250 r2\r\n354 go\r\n")
    assert [v for v, _ in got] == ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"]
    assert c.final_replies_due() == 2
    c.send("DATA_END", commands.encode_data(b"hi"))
    first = c.receive(b"250 2.0.0 <u0@example.test> saved\r\n")
    assert [(v, r.code) for v, r in first] == [("DATA_END", 250)]
    assert c.state is State.DATA and c.pending[0] == "DATA_END"  # still one to come
    # The last reply and the next command's reply in one read: each paired with its own verb.
    c.send("NOOP", commands.NOOP)
    rest = c.receive(b"452 4.2.2 <u2@example.test> over quota\r\n250 noop\r\n")
    assert [(v, r.code) for v, r in rest] == [("DATA_END", 452), ("NOOP", 250)]
    assert c.state is State.READY and not c.pending


def test_no_accepted_recipient_means_one_reply() -> None:
    c = greeted_client()
    envelope(c, 2, "BDAT_LAST")
    got = c.receive(b"250 ok\r\n550 a\r\n550 b\r\n503 5.5.1 no valid recipients\r\n")
    assert [(v, r.code) for v, r in got][-1] == ("BDAT_LAST", 503)
    assert c.final_replies_due() == 1 and c.recipient_replies_due() == 0 and not c.pending
    assert c.state is State.MAIL  # nothing was delivered: the transaction is still open (RSET clears it)


def test_bdat_last_gets_per_recipient_replies_and_a_refused_chunk_one() -> None:
    c = greeted_client()
    envelope(c, 2, "BDAT_LAST")
    got = c.receive(b"250 ok\r\n250 a\r\n250 b\r\n250 a saved\r\n550 b failed\r\n")
    assert [(v, r.code) for v, r in got][-2:] == [("BDAT_LAST", 250), ("BDAT_LAST", 550)]
    assert c.state is State.READY  # delivered to someone: the transaction is over
    c.send("MAIL", commands.mail_from("a@x.test"))
    c.send("RCPT", commands.rcpt_to("u@example.test"))
    c.send("BDAT", b"BDAT 2\r\nhi")
    c.send("BDAT_LAST", b"BDAT 0 LAST\r\n")
    got = c.receive(b"250 ok\r\n250 ok\r\n552 too big\r\n554 transaction failed\r\n")
    assert [(v, r.code) for v, r in got][-1] == ("BDAT_LAST", 554) and not c.pending


def test_421_per_recipient_closes() -> None:
    c = greeted_client()
    envelope(c, 2)
    c.receive(b"250 ok\r\n250 a\r\n250 b\r\n354 go\r\n")
    c.send("DATA_END", commands.encode_data(b"hi"))
    got = c.receive(b"250 a\r\n421 4.3.2 shutting down\r\n")
    assert [r.code for _, r in got] == [250, 421] and c.state is State.CLOSED


def test_smtp_client_is_unchanged_one_reply_to_the_dot() -> None:
    c = ClientProtocol()
    c.receive(b"220 x\r\n")
    c.send("EHLO", commands.ehlo("x"))
    c.receive(b"250 x\r\n")
    c.send("MAIL", commands.mail_from("a@x.test"))
    c.send("RCPT", commands.rcpt_to("u0@example.test"))
    c.send("RCPT", commands.rcpt_to("u1@example.test"))
    c.send("DATA", commands.DATA)
    c.receive(b"250 ok\r\n250 a\r\n250 b\r\n354 go\r\n")
    c.send("DATA_END", commands.encode_data(b"hi"))
    assert [v for v, _ in c.receive(b"250 queued\r\n")] == ["DATA_END"] and c.state is State.READY


def fed_in_pieces(c: LMTPClientProtocol, wire: bytes, cuts: list[int]) -> list[tuple[str, int]]:
    """Feed ``wire`` to ``c`` split after each of ``cuts`` octets (the rest at the end); the (verb, code) pairs."""
    got = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        got += [(v, r.code) for v, r in c.receive(wire[pos : pos + cut])]
        pos += cut
    return got


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([250, 251, 450, 452, 550, 554]), min_size=1, max_size=6),
    st.lists(st.sampled_from([250, 450, 550, 552]), min_size=1, max_size=6),
    st.lists(st.integers(1, 40), max_size=8),
    st.lists(st.integers(1, 40), max_size=8),
)
def test_any_split_of_the_server_bytes_pairs_the_same_replies(
    rcpt_codes: list[int], final_codes: list[int], cuts: list[int], final_cuts: list[int]
) -> None:
    """Whatever the RCPT outcomes and however the server's bytes are split, each accepted RCPT gets its final reply."""
    accepted = sum(code < 400 for code in rcpt_codes)
    finals = (final_codes * 6)[: max(accepted, 1)]
    data_code = 354 if accepted else 554
    c = greeted_client()
    envelope(c, len(rcpt_codes))
    head = b"250 mail\r\n" + b"".join(b"%d rcpt\r\n" % code for code in rcpt_codes) + b"%d data\r\n" % data_code
    got = fed_in_pieces(c, head, cuts)
    assert got == [("MAIL", 250), *(("RCPT", code) for code in rcpt_codes), ("DATA", data_code)]
    if not accepted:
        assert c.state is State.MAIL  # no recipient: DATA refused, nothing more is due
        return
    assert c.final_replies_due() == accepted
    c.send("DATA_END", commands.encode_data(b"x"))
    c.send("NOOP", commands.NOOP)
    tail = b"".join(b"%d final\r\n" % code for code in finals) + b"250 noop\r\n"
    assert fed_in_pieces(c, tail, final_cuts) == [*(("DATA_END", code) for code in finals), ("NOOP", 250)]
    assert c.state is State.READY and not c.pending


#: What the client sends next, in order of preference, when the state allows it.
SCRIPT = (("LHLO", b"LHLO c\r\n"), ("MAIL", b""), ("RCPT", b""), ("DATA", b""), ("DATA_END", b""), ("QUIT", b""))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([220, 250, 354, 421, 450, 503, 550]), max_size=30), st.integers(0, 3))
def test_any_reply_codes_keep_the_lmtp_client_consistent(codes: list[int], extra_rcpts: int) -> None:
    """Whatever code answers each command, replies pair with sent verbs in order and only protocol errors escape."""
    c = LMTPClientProtocol()
    sent: list[str] = ["CONNECT", "UNSOLICITED"]  # an unsolicited 421 is returned as such
    rcpts = 0
    try:
        for code in codes:
            got = c.receive(b"%d x\r\n" % code)
            for verb, reply in got:
                assert verb in sent and reply.code == code
            assert len(c.pending) <= len(sent)
            for verb, line in SCRIPT:
                if verb == "RCPT" and rcpts > extra_rcpts and c.can_send("DATA"):
                    continue
                if c.can_send(verb) and not c.pending:
                    c.send(verb, line)
                    sent.append(verb)
                    rcpts = rcpts + 1 if verb == "RCPT" else 0 if verb == "MAIL" else rcpts
                    break
    except SMTPProtocolError:
        assert not c.pending or c.state is not State.CLOSED


# --- the server role -------------------------------------------------------


def serve(conn: ServerConnection, data: bytes) -> list[bytes]:
    conn.receive_data(data)
    out = b"".join(conn.out).split(b"\r\n")[:-1]
    conn.out.clear()
    return out


def lmtp_server(**config: object) -> LMTPServerConnection:
    return LMTPServerConnection(ServerConfig(local_domains=frozenset({"example.test"}), **config))  # type: ignore[arg-type]


def test_server_speaks_lhlo_only_in_lmtp() -> None:
    lmtp = lmtp_server()
    assert serve(lmtp, b"EHLO x\r\n")[0].startswith(b"500 ") and lmtp.greeted is None
    assert serve(lmtp, b"HELO x\r\n")[0].startswith(b"500 ")
    lines = serve(lmtp, b"LHLO client.test\r\n")
    assert lines[0].startswith(b"250-") and b"250-PIPELINING" in lines and lmtp.greeted == "LHLO"
    smtp = ServerConnection(ServerConfig())
    assert serve(smtp, b"LHLO x\r\n")[0].startswith(b"500 ") and smtp.greeted is None


def test_server_replies_once_per_accepted_recipient_after_data_and_bdat() -> None:
    conn = lmtp_server()
    serve(conn, b"LHLO c.test\r\n")
    envelope = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<u1@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"
    envelope += b"RCPT TO:<u2@example.test>\r\n"
    lines = serve(conn, envelope + b"DATA\r\n")
    assert [ln[:3] for ln in lines] == [b"250", b"250", b"550", b"250", b"354"]
    finals = serve(conn, b"Subject: t\r\n\r\nhi\r\n.\r\n")
    assert [ln[:3] for ln in finals] == [b"250", b"250"]
    assert b"<u1@example.test>" in finals[0] and b"<u2@example.test>" in finals[1]
    lines = serve(conn, envelope + b"BDAT 4\r\nhi\r\nBDAT 0 LAST\r\n")
    assert [ln[:3] for ln in lines] == [b"250", b"250", b"550", b"250", b"250", b"250", b"250"]
    assert conn.stats.recipients_delivered == 4 and conn.stats.messages_accepted == 2


def test_server_refuses_every_recipient_of_an_oversized_message() -> None:
    conn = lmtp_server(max_size=10)
    serve(conn, b"LHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<u1@example.test>\r\nRCPT TO:<u2@example.test>\r\n")
    serve(conn, b"DATA\r\n")
    finals = serve(conn, b"x" * 40 + b"\r\n.\r\n")
    assert [ln[:3] for ln in finals] == [b"552", b"552"]
    assert conn.stats.recipients_failed == 2 and conn.stats.messages_rejected_perm == 1
    assert conn.stats.messages_accepted == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.sampled_from(["DATA", "BDAT"]),
    st.integers(0, 60),
    st.lists(st.integers(1, 30), max_size=6),
)
def test_server_final_replies_are_one_per_accepted_recipient(
    local: list[bool], via: str, size: int, cuts: list[int]
) -> None:
    """Any mix of accepted and refused recipients, DATA or BDAT, any split of the input: one final reply each."""
    conn = lmtp_server(max_size=40)
    serve(conn, b"LHLO c.test\r\nMAIL FROM:<a@x.test>\r\n")
    rcpts = b"".join(
        b"RCPT TO:<u%d@%s>\r\n" % (i, b"example.test" if ok else b"far.test") for i, ok in enumerate(local)
    )
    accepted = sum(local)
    body = b"x" * size + b"\r\n"
    wire = rcpts + (b"DATA\r\n" + body + b".\r\n" if via == "DATA" else b"BDAT %d LAST\r\n" % len(body) + body)
    lines: list[bytes] = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        lines += serve(conn, wire[pos : pos + cut])
        pos += cut
    if not accepted:  # DATA (554) or BDAT (503) without a recipient: refused, nothing is delivered
        assert lines[len(local)][:1] == b"5" and conn.stats.recipients_delivered == 0, lines
        return
    finals = lines[len(local) + (via == "DATA") :]
    assert len(finals) == accepted, lines
    expected = b"552" if size + 2 > 40 else b"250"
    assert all(line[:3] == expected for line in finals)
    stats = conn.stats
    assert stats.recipients_delivered + stats.recipients_failed == accepted
    assert stats.messages_accepted == (expected == b"250")
