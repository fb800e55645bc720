"""The client state machine: transitions as a table, pipelining, 421."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.protocol import tables
from smtpbench.protocol.errors import LocalProtocolError, SMTPProtocolError
from smtpbench.protocol.state import TRANSITIONS, ClientProtocol, State


def ready() -> ClientProtocol:
    c = ClientProtocol()
    c.receive(b"220 mx ESMTP\r\n")
    c.send("EHLO", b"EHLO x\r\n")
    c.receive(b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    return c


def test_greeting_ehlo_extensions() -> None:
    c = ready()
    assert c.state is State.READY
    assert c.extensions == {"PIPELINING": "", "8BITMIME": ""}


def test_refused_greeting_allows_only_quit() -> None:
    c = ClientProtocol()
    c.receive(b"554 no service\r\n")
    assert c.state is State.REFUSED
    assert not c.can_send("MAIL")
    assert c.can_send("QUIT")


def test_local_protocol_error() -> None:
    c = ready()
    with pytest.raises(LocalProtocolError):
        c.send("DATA", b"DATA\r\n")  # no MAIL/RCPT yet
    with pytest.raises(LocalProtocolError):
        c.send("DATA_END", b".\r\n")


def test_pipelined_group_with_refused_mail_resyncs() -> None:
    c = ready()
    for verb in ("MAIL", "RCPT", "DATA"):
        c.send(verb, b"")
    out = c.receive(b"550 5.7.1 no\r\n503 5.5.1 seq\r\n503 5.5.1 seq\r\n")
    assert [v for v, _ in out] == ["MAIL", "RCPT", "DATA"]
    assert c.state is State.READY
    assert c.can_send("MAIL") and not c.can_send("RCPT")


@pytest.mark.parametrize("mail", [b"250 ok", b"550 no"])
def test_354_without_an_accepted_recipient_still_expects_content(mail: bytes) -> None:
    """RFC 2920 3.1: DATA may be accepted although no RCPT was; the server then reads content, so the
    client is in DATA (it can only end the message: the lone dot), not in a state where RSET or MAIL
    would be read as message text."""
    c = ready()
    for verb in ("MAIL", "RCPT", "DATA"):
        c.send(verb, b"")
    c.receive(mail + b"\r\n550 no such user\r\n354 go\r\n")
    assert c.state is State.DATA
    assert c.can_send("DATA_END") and not c.can_send("RSET") and not c.can_send("MAIL")
    c.send("DATA_END", b".\r\n")
    c.receive(b"554 no valid recipients\r\n")
    assert c.state is State.READY


@pytest.mark.parametrize(("verbs", "replies"), [(("MAIL", "RCPT", "DATA"), b"250 ok\r\n354 go\r\n250 ok\r\n")])
def test_an_intermediate_reply_to_a_command_without_one_is_out_of_step(verbs: tuple[str, ...], replies: bytes) -> None:
    """A server that sends the RCPT replies after the DATA reply (sink fault P-01): the 354 pairs with RCPT.
    Taking it as an accepted recipient left the session sending commands into message content (a timeout);
    it is a protocol error at once."""
    c = ready()
    for verb in verbs:
        c.send(verb, b"")
    with pytest.raises(SMTPProtocolError, match="354 in reply to RCPT"):
        c.receive(replies)


@pytest.mark.parametrize(("verb", "code"), [("MAIL", 334), ("RSET", 354), ("EHLO", 354), ("DATA", 334)])
def test_3yz_answers_only_data_and_auth(verb: str, code: int) -> None:
    c = ready()
    if verb == "DATA":
        for v in ("MAIL", "RCPT"):
            c.send(v, b"")
        c.receive(b"250 ok\r\n250 ok\r\n")
    c.send(verb, b"")
    with pytest.raises(SMTPProtocolError, match=f"{code} in reply to {verb}"):
        c.receive(f"{code} what\r\n".encode())


def test_full_transaction_and_quit() -> None:
    c = ready()
    for verb in ("MAIL", "RCPT", "RCPT", "DATA"):
        c.send(verb, b"")
    c.receive(b"250 ok\r\n550 no such user\r\n250 ok\r\n354 go\r\n")
    assert c.state is State.DATA
    c.send("DATA_END", b".\r\n")
    c.receive(b"250 queued\r\n")
    assert c.state is State.READY
    c.send("QUIT", b"QUIT\r\n")
    c.receive(b"221 bye\r\n")
    assert c.state is State.CLOSED


def test_421_closes_and_unsolicited() -> None:
    c = ready()
    c.send("MAIL", b"")
    c.receive(b"421 4.3.2 shutting down\r\n")
    assert c.state is State.CLOSED
    c2 = ready()
    out = c2.receive(b"421 bye\r\n")
    assert out[0][0] == "UNSOLICITED" and c2.state is State.CLOSED
    with pytest.raises(SMTPProtocolError):
        ready().receive(b"250 surprise\r\n")


def test_starttls_restarts_session() -> None:
    c = ready()
    c.send("STARTTLS", b"")
    c.receive(b"220 go ahead\r\n")
    assert c.state is State.TLS
    c.tls_established()
    assert c.state is State.GREETED and c.extensions == {}
    assert not c.can_send("MAIL")


def test_every_transition_names_known_states() -> None:
    for (state, verb), (ok, bad) in TRANSITIONS.items():
        assert isinstance(state, State) and isinstance(ok, State) and isinstance(bad, State)
        assert verb.isupper()


def test_tables_single_source() -> None:
    assert tables.is_expected("RCPT", 250) and tables.is_expected("RCPT", 452)
    assert not tables.is_expected("HELP", 250)  # aiosmtpd's deviation is unexpected
    assert tables.is_expected("MAIL", 421)  # any-command code
    assert 354 in tables.allowed_codes("DATA", strict=True)
    assert tables.LIMITS["command_line_octets"] == 512


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([250, 451, 550]),
    st.lists(st.sampled_from([250, 251, 450, 503, 550]), min_size=1, max_size=4),
    st.sampled_from([354, 451, 503, 554]),
)
def test_after_a_pipelined_envelope_the_client_is_in_data_exactly_when_data_got_354(
    mail: int, rcpts: list[int], data: int
) -> None:
    """Whatever the envelope's replies, a 354 means the server reads content: the client must end it with the
    data (or a lone dot), and without a 354 it must not send any."""
    c = ready()
    for verb in ("MAIL", *["RCPT"] * len(rcpts), "DATA"):
        c.send(verb, b"")
    c.receive(b"".join(f"{code} x\r\n".encode() for code in (mail, *rcpts, data)))
    assert (c.state is State.DATA) == (data == 354)
    assert c.can_send("DATA_END") == (data == 354)
    assert c.can_send("RSET") == (data != 354)


@given(st.lists(st.sampled_from([b"220 a\r\n", b"250 b\r\n", b"354 c\r\n", b"421 d\r\n", b"550 e\r\n", b"x\r\n"])))
def test_random_server_bytes_never_crash(chunks: list[bytes]) -> None:
    """Whatever a server sends, the state machine returns replies or raises a protocol error."""
    c = ClientProtocol()
    try:
        for chunk in chunks:
            for _verb, reply in c.receive(chunk):
                assert 200 <= reply.code < 600
            if c.can_send("NOOP"):
                c.send("NOOP", b"NOOP\r\n")
    except SMTPProtocolError:
        pass
