"""STARTTLS, implicit TLS and AUTH against the sink, with stdlib smtplib and raw sockets."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl

import pytest

from smtpbench.sink.config import SinkConfig
from tests.sinkutil import RawClient, SinkThread, TLSPair, tls_pair

USER, PASSWORD = "bob", "s3cret"


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


@pytest.fixture(scope="module")
def sink(tls: TLSPair):  # type: ignore[no-untyped-def]
    config = SinkConfig(ssl_context=tls.server_context, auth_users={USER: PASSWORD}, store_messages=True)
    with SinkThread(config) as server:
        yield server


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_smtplib_starttls_auth_and_relay(sink, tls: TLSPair) -> None:  # type: ignore[no-untyped-def]
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=tls.client_context)
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert "PLAIN" in s.esmtp_features["auth"]
        # Relay to a foreign domain is allowed only after AUTH (SEC-01 / U-06 positive control).
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@x.example", ["r@smtpbench-relay.invalid"], b"x\r\n")
        s.login(USER, PASSWORD)
        s.sendmail("a@x.example", ["r@smtpbench-relay.invalid"], b"Subject: t\r\n\r\nbody\r\n")
    msg = sink.messages[-1]
    assert msg.tls and msg.auth_user == USER
    assert b"with ESMTPSA" in msg.content


def test_auth_refused_in_cleartext(sink) -> None:  # type: ignore[no-untyped-def]
    with RawClient(sink.port) as c:
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))
        assert r.code in (530, 538, 504)


def starttls(c: RawClient, ctx: ssl.SSLContext) -> None:
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")


def test_auth_exchange_errors(sink, tls: TLSPair) -> None:  # type: ignore[no-untyped-def]
    with RawClient(sink.port) as c:
        c.ehlo()
        assert c.cmd("STARTTLS now").code == 501
        assert c.cmd("STARTTLS").code == 220
        starttls(c, tls.client_context)
        assert c.cmd("MAIL FROM:<a@x.example>").code == 503  # state discarded by TLS
        r = c.ehlo()
        assert "STARTTLS" not in {line.split()[0] for line in r.lines}
        assert c.cmd("STARTTLS").code in (503, 554)
        assert c.cmd("AUTH X-NOPE").code == 504
        assert c.cmd("AUTH PLAIN !!!notbase64").code == 501
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334 and r.lines == ("VXNlcm5hbWU6",)
        assert c.cmd("*").code == 501
        r = c.cmd("AUTH PLAIN")
        assert r.code == 334 and r.raw == b"334 \r\n"
        assert c.cmd(plain(USER, "wrong")).code == 535
        for _ in range(3):
            assert c.cmd("AUTH PLAIN " + plain(USER, "wrong")).code == 535
        assert c.cmd("AUTH LOGIN " + base64.b64encode(USER.encode()).decode()).code == 334
        r = c.cmd(base64.b64encode(PASSWORD.encode()).decode())
        assert r.code == 235 and r.enhanced == "2.7.0"
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)).code == 503
    with RawClient(sink.port) as c:
        c.ehlo()
        c.cmd("STARTTLS")
        starttls(c, tls.client_context)
        c.ehlo()
        c.cmd("MAIL FROM:<a@x.example>")
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)).code == 503


def test_starttls_discards_pipelined_plaintext(sink, tls: TLSPair) -> None:  # type: ignore[no-untyped-def]
    for injected in (b"NOOP", b"RSET", b"MAIL FROM:<x@y.example>"):
        with RawClient(sink.port) as c:
            c.ehlo()
            c.send(b"STARTTLS\r\n" + injected + b"\r\n")
            assert [r.code for r in c.replies(1)] == [220]
            starttls(c, tls.client_context)
            c.parser = type(c.parser)()
            r = c.ehlo()
            assert r.code == 250 and len(r.lines) > 1, injected  # first TLS reply answers our EHLO


def test_implicit_tls(tls: TLSPair) -> None:
    config = SinkConfig(ssl_context=tls.server_context, implicit_tls=True)
    with SinkThread(config) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with tls.client_context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.recv(1000).startswith(b"220 ")
            sock.sendall(b"EHLO x.example\r\n")
            reply = b""
            while b"\r\n250 " not in reply:
                reply += sock.recv(1000)
            assert b"STARTTLS" not in reply
        assert server.stats.tls_handshakes == 1
