"""The compliant sink over raw loopback sockets: sequencing, codes, pipelining, DATA, BDAT."""

from __future__ import annotations

import re

import pytest

from smtpbench.protocol.commands import encode_data
from tests.sinkutil import RawClient, SinkThread

ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3} ")


@pytest.fixture(scope="module")
def sink():  # type: ignore[no-untyped-def]
    with SinkThread(store_messages=True, idle_timeout=5.0) as server:
        yield server


def client(sink) -> RawClient:  # type: ignore[no-untyped-def]
    return RawClient(sink.port)


def test_greeting_and_ehlo(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        assert c.greeting is not None and c.greeting.code == 220
        assert c.greeting.lines[0].startswith("sink.smtpbench.test ")
        r = c.ehlo()
        assert r.code == 250 and not r.defects
        keywords = {line.split()[0] for line in r.lines[1:]}
        assert {
            "PIPELINING",
            "SIZE",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
            "HELP",
        } <= keywords
        assert "STARTTLS" not in keywords and "AUTH" not in keywords  # no cert, no users configured
        assert "SIZE 10485760" in r.lines
    with client(sink) as c:
        r = c.cmd("HELO client.example")
        assert r.code == 250 and len(r.lines) == 1


def test_sequencing_codes(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        assert c.cmd("MAIL FROM:<a@x.example>").code == 503  # before EHLO
        assert c.cmd("NOOP").code == 250  # allowed before EHLO (S-01)
        assert c.cmd("EHLO").code == 501
        assert c.cmd("RCPT TO:<u@example.test>").code == 503
        c.ehlo()
        assert c.cmd("DATA").code in (503, 554)
        assert c.cmd("MAIL FROM:<a@x.example>").code == 250
        assert c.cmd("MAIL FROM:<b@x.example>").code == 503  # nested
        assert c.cmd("MAIL FROM:bad").code in (501, 503)
        assert c.cmd("RCPT TO:<u@example.test>").code == 250  # transaction survived
        assert c.cmd("DATA x").code == 501
        assert c.cmd("RSET x").code == 501
        assert c.cmd("RSET  ").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 503  # RSET cleared it
        assert c.cmd("NOOP \t").code == 250
        assert c.cmd("VRFY").code == 501
        assert c.cmd("VRFY zz-random@example.test").code == 252
        assert c.cmd("EXPN postmaster").code == 502
        assert c.cmd("HELP").code == 214
        for legacy in ("SEND FROM:<a@x>", "SOML FROM:<a@x>", "SAML FROM:<a@x>", "TURN", "ETRN example.org"):
            assert c.cmd(legacy).code == 502
        assert c.cmd("FOOBAR").code == 500
        assert c.cmd("").code == 500
        assert c.cmd("QUIT x").code == 501
        r = c.cmd("QUIT")
        assert r.code == 221 and r.raw.endswith(b"\r\n")
        assert c.wait_closed()


def test_enhanced_codes_on_every_reply(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        for line in ("NOOP", "RSET", "MAIL FROM:<>", "RCPT TO:<postmaster>", "RCPT TO:<x@foreign.invalid>", "VRFY x"):
            r = c.cmd(line)
            assert ENHANCED.match(r.lines[0]), (line, r)
            assert r.enhanced is not None and r.enhanced[0] == str(r.code)[0]


def test_case_insensitive_and_lenient_paths(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        assert c.cmd("ehlo x.example").code == 250
        assert c.cmd("mail from: <a@x.example>").code == 250
        assert c.cmd("rCpT tO:<@relay.example,@b.example:user@example.test>").code == 250
        assert c.cmd('RCPT TO:<"first last"@example.test>').code == 250
        assert c.cmd("RCPT TO:<postmaster@[127.0.0.1]>").code == 250
        for pm in ("<Postmaster>", "<POSTMASTER>", "<postmaster@sink.smtpbench.test>"):
            assert c.cmd(f"RCPT TO:{pm}").code == 250
        assert c.cmd("RCPT TO:<" + "l" * 64 + "@" + ".".join(["d" * 63] * 3) + ".test>").code in (250, 550)


def test_parameters(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        limit = 10485760
        cases = [
            (f"MAIL FROM:<a@x.example> SIZE={limit}", 250),
            (f"MAIL FROM:<a@x.example> SIZE={limit + 1}", 552),
            ("MAIL FROM:<a@x.example> SIZE=abc", 501),
            ("MAIL FROM:<a@x.example> SIZE=" + "1" * 21, 501),
            ("MAIL FROM:<a@x.example> SIZE", 501),
            ("MAIL FROM:<a@x.example> BODY=BOGUS", 501),
            ("MAIL FROM:<a@x.example> BODY=7BIT BODY=8BITMIME", 501),
            ("MAIL FROM:<a@x.example> SMTPUTF8=YES", 501),
            ("MAIL FROM:<a@x.example> FOO=BAR", 555),
            ("MAIL FROM:<a@x.example> AUTH=<>", 250),
            ("MAIL FROM:<a@x.example> AUTH=a+2Bb@x", 250),
            ("MAIL FROM:<a@x.example> RET=HDRS ENVID=abc+2B1", 250),
            ("MAIL FROM:<a@x.example> RET=ALL", 501),
            ("MAIL FROM:<a@x.example> RET=FULL RET=HDRS", 501),
            ("MAIL FROM:<a@bad_name.example>", 501),
            ("MAIL FROM:<jörg@example.org>", 550),
            ("MAIL FROM:<jörg@example.org> SMTPUTF8", 250),
        ]
        for line, code in cases:
            assert c.cmd(line).code == code, line
            c.cmd("RSET")
        assert c.cmd("MAIL FROM:<a@x.example>").code == 250
        rcpt_cases = [
            ("RCPT TO:<u@example.test> FOO=BAR", 555),
            ("RCPT TO:<u@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt+40d", 250),
            ("RCPT TO:<u@example.test> NOTIFY=NEVER,SUCCESS", 501),
            ("RCPT TO:<u@example.test> NOTIFY=NEVER NOTIFY=NEVER", 501),
            ("RCPT TO:<u@example.test> ORCPT=rfc822", 501),
            ("RCPT TO:<jörg@example.test>", 553),
        ]
        for line, code in rcpt_cases:
            assert c.cmd(line).code == code, line
        assert c.cmd("EHLO bad_name.example").code == 501
        assert c.cmd("EHLO [192.0.2.1]").code == 250
        assert c.cmd("EHLO [IPv6:2001:db8::1]").code == 250


def test_relay_denied_unless_local(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<>")
        foreign = [
            "<relay-test@smtpbench-relay.invalid>",
            "<to%smtpbench-relay.invalid@[127.0.0.1]>",
            '<"to@smtpbench-relay.invalid">',
            "<to@smtpbench-relay.invalid@[127.0.0.1]>",
            "<@[127.0.0.1]:to@smtpbench-relay.invalid>",
            "<smtpbench-relay.invalid!to>",
            "<smtpbench-relay.invalid!to@sink.smtpbench.test>",
        ]
        for path in foreign:
            r = c.cmd(f"RCPT TO:{path}")
            assert r.code == 550 and r.enhanced == "5.7.1", path
        assert c.cmd("RCPT TO:<anyone@example.test>").code == 250


def test_pipelined_group_replies_in_order_in_one_write(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        group = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<x@foreign.invalid>\r\nDATA\r\n"
        c.send(group)
        # All four replies must arrive together: one write when the input drained.
        data = c.sock.recv(65536)
        assert data.count(b"\r\n") == 4
        codes = [r.code for r in c.parser.feed(data)]
        assert codes == [250, 250, 550, 354]
        c.send(encode_data(b"hello\r\n") + b"MAIL FROM:<b@x.example>\r\nRCPT TO:<v@example.test>\r\nDATA\r\n")
        assert [r.code for r in c.replies(4)] == [250, 250, 250, 354]
        c.send(encode_data(b"second\r\n") + b"QUIT\r\n")
        assert [r.code for r in c.replies(2)] == [250, 221]


def test_fifty_noops_in_one_write(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        assert c.codes(b"NOOP\r\n" * 50, 50) == [250] * 50


def test_command_line_length(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        exact = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
        assert len(exact) == 512
        assert c.codes(exact, 1) == [250]
        assert c.codes(b"NOOP " + b"x" * (512 - 6) + b"\r\n", 1) == [500]
        assert c.codes(b"NOOP " + b"x" * 4096 + b"\r\n", 1) == [500]
        assert c.codes(b"NOOP " + b"x" * 65536 + b"\r\n", 1) == [500]
        assert c.codes(b"NOOP\r\n", 2, timeout=0.3) == [250]  # exactly one: still in sync


def test_bare_cr_lf_do_not_end_commands(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        assert len(c.codes(b"NOOP\nNOOP\r\n", 2, timeout=0.3)) == 1
        assert len(c.codes(b"NOOP\rNOOP\r\n", 2, timeout=0.3)) == 1


SMUGGLING_ENDS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\n.\r",
    b"\r.\n",
    b"\r.\r",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("end", SMUGGLING_ENDS, ids=[repr(e) for e in SMUGGLING_ENDS])
def test_smuggling_variants_do_not_end_data(sink, end: bytes) -> None:  # type: ignore[no-untyped-def]
    before = len(sink.messages)
    with client(sink) as c:
        c.ehlo()
        assert c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3) == [250, 250, 354]
        body = (
            b"hello"
            + end
            + b"MAIL FROM:<smuggled@victim.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"
            + b"Subject: SMUGGLED\r\n\r\nx\r\n.\r\n"
        )
        assert c.codes(body, 5, timeout=0.3) == [250]
    assert len(sink.messages) == before + 1
    assert b"SMUGGLED" in sink.messages[-1].content


def test_dot_stuffing_and_trace_header(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo("client.example")
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
        body = b"Subject: dots\r\n\r\n..\r\n..x\r\n...\r\nx.\r\n.\r\n"
        assert c.codes(body, 1) == [250]
    content = sink.messages[-1].content
    header, _, rest = content.partition(b"\r\n\t")
    assert header == b"Received: from client.example ([127.0.0.1])"
    assert content.endswith(b"Subject: dots\r\n\r\n.\r\n.x\r\n..\r\nx.\r\n")


def test_eight_bit_and_long_lines_preserved(sink) -> None:  # type: ignore[no-untyped-def]
    high = bytes(range(0x80, 0x100)) + b"\r\n"
    with client(sink) as c:
        c.ehlo()
        c.codes(b"MAIL FROM:<a@x.example> BODY=8BITMIME\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
        assert c.codes(high + b"a" * 998 + b"\r\n.\r\n", 1) == [250]
        assert sink.messages[-1].content.endswith(high + b"a" * 998 + b"\r\n")
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
        assert c.codes(b"a" * 100_000 + b"\r\n.\r\n", 1) == [250]
        assert c.cmd("NOOP").code == 250


def test_oversize_data_552_after_the_dot() -> None:
    with SinkThread(max_size=1000) as server, RawClient(server.port) as c:
        c.ehlo()
        c.codes(b"MAIL FROM:<a@x.example> SIZE=10\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
        c.send(b"x" * 998 + b"\r\n" + b"y\r\n")
        assert c.replies(1, timeout=0.3) == []  # nothing before the dot
        assert c.codes(b".\r\n", 1) == [552]
        assert c.cmd("NOOP").code == 250
        assert server.messages == []


def test_recipient_limit() -> None:
    with SinkThread() as server, RawClient(server.port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@x.example>")
        rcpts = b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(101))
        codes = c.codes(rcpts, 101)
        assert codes == [250] * 100 + [452]
        assert c.codes(b"DATA\r\n", 1) == [354]
        assert c.codes(b"hi\r\n.\r\n", 1) == [250]
        assert len(server.messages[-1].rcpt_to) == 100


def test_bdat(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\n", 2)
        assert c.codes(b"BDAT 5\r\nhello", 1) == [250]
        assert c.codes(b"BDAT 8 LAST\r\n\r\n.world", 1) == [250]
        assert sink.messages[-1].content.endswith(b"hello\r\n.world")
        assert sink.messages[-1].via == "BDAT"
        assert c.codes(b"BDAT 1 LAST\r\nx", 1) == [503]  # after LAST: no transaction
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 3\r\nabc", 3)
        assert c.cmd("DATA").code == 503
        c.cmd("RSET")
        c.codes(b"MAIL FROM:<a@x.example> BODY=BINARYMIME\r\nRCPT TO:<u@example.test>\r\n", 2)
        assert c.cmd("DATA").code == 503
        c.cmd("RSET")
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\n", 2)
        assert c.codes(b"BDAT 0 LAST\r\n", 1) == [250]


def test_rejected_bdat_consumes_its_chunk(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        assert c.codes(b"BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n", 3, timeout=0.3) == [503]


def test_repeated_ehlo_resets_transaction(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        c.codes(b"MAIL FROM:<a@x>\r\n", 1)
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.ehlo("x").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 503
        assert c.cmd("DATA").code in (503, 554)


def test_error_storm_closes_with_421(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        codes = c.codes(b"FOO\r\n" * 20, 20, timeout=1)
        assert codes[:10] == [500] * 10 and codes[10] == 421
        assert c.wait_closed()
    with client(sink) as c:
        assert all(code >= 500 for code in c.codes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3))


def test_idle_timeout_sends_421() -> None:
    with SinkThread(idle_timeout=0.3) as server, RawClient(server.port) as c:
        c.ehlo()
        r = c.replies(1, timeout=2)
        assert r and r[0].code == 421
        assert c.wait_closed()
        assert server.stats.idle_timeouts == 1


def test_abrupt_close_mid_data_delivers_nothing(sink) -> None:  # type: ignore[no-untyped-def]
    before = len(sink.messages)
    c = client(sink)
    c.ehlo()
    c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
    c.send(b"Subject: partial\r\n\r\nhalf a mess")
    c.close()
    with client(sink) as probe:  # the sink still serves, and stored nothing
        assert probe.cmd("NOOP").code == 250
    assert len(sink.messages) == before


def test_echoed_client_text_keeps_replies_clean(sink) -> None:  # type: ignore[no-untyped-def]
    with client(sink) as c:
        c.ehlo()
        for line in (b"MAIL FROM:<a@x.example> F\x01\x7f\xc3\xb6=1", b"MAIL FROM:<a@x.example> B\x02=1 B\x02=2"):
            c.send(line + b"\r\n")
            r = c.replies(1)[0]
            assert r.code in (501, 555) and not r.defects
