"""Extension checks against small scripted servers, for what the sink does not play.

The sink never enforces the submission policies (TLS required, AUTH
required), so T-06 and U-06 are proven here against a line-based fake that
does, once compliant and once with the classic mistake.  Each fake runs in a
thread on 127.0.0.1 with every socket operation bounded.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import pytest

from smtpbench.conform.checks import select
from smtpbench.conform.model import CheckResult, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.runner import run_suite
from tests.sinkutil import TLSPair, tls_pair

USER, PASSWORD = "bob", "hunter2-x"
GOOD_PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()


@dataclass
class Conn:
    """State of one scripted session."""

    tls: bool = False
    authed: bool = False
    helo: bool = False
    mail: bool = False
    notes: dict[str, str] = field(default_factory=dict)


#: line (without CRLF), session state -> reply bytes; "STARTTLS" replies starting with 220 upgrade the socket.
Responder = Callable[[str, Conn], bytes]


class ScriptedServer:
    """A threaded one-line-at-a-time SMTP fake; ``with ScriptedServer(respond, tls) as port: ...``."""

    def __init__(self, respond: Responder, tls: TLSPair | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.sock.getsockname()[1])

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, raw: socket.socket) -> None:
        conn: socket.socket | ssl.SSLSocket = raw
        conn.settimeout(5)
        state = Conn()
        buf = b""
        try:
            conn.sendall(b"220 fake.example ESMTP\r\n")
            while not self.stop.is_set():
                while b"\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buf += data
                line, buf = buf.split(b"\r\n", 1)
                text = line.decode("utf-8", "replace")
                reply = self.respond(text, state)
                conn.sendall(reply)
                if text.upper() == "STARTTLS" and reply.startswith(b"220") and self.tls is not None:
                    buf = b""
                    conn = self.tls.server_context.wrap_socket(conn, server_side=True)
                    state = Conn(tls=True)
                if reply.startswith(b"221"):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()


def _ehlo(state: Conn) -> bytes:
    state.helo = True
    lines = ["fake.example", "PIPELINING", "AUTH PLAIN LOGIN" if state.tls else "SIZE 1000000"]
    if not state.tls:
        lines.append("STARTTLS")
    return ("".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n").encode()


def tls_required(noop_ok: bool) -> Responder:
    """A submission server that requires STARTTLS first; with ``noop_ok`` false it also refuses NOOP (the fault)."""

    def respond(line: str, state: Conn) -> bytes:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            return _ehlo(state)
        if verb == "QUIT":
            return b"221 2.0.0 bye\r\n"
        if verb == "STARTTLS":
            return b"220 2.0.0 go ahead\r\n"
        if verb == "NOOP" and (noop_ok or state.tls):
            return b"250 2.0.0 ok\r\n"
        if not state.tls:
            return b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        return b"250 2.0.0 ok\r\n"

    return respond


def auth_required(noop_ok: bool) -> Responder:
    """A submission server that requires AUTH before MAIL; with ``noop_ok`` false NOOP gets 530 too (the fault)."""

    def respond(line: str, state: Conn) -> bytes:
        words = line.split(" ")
        verb = words[0].upper()
        if verb == "EHLO":
            state.helo = True
            return b"250-fake.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"
        if verb == "HELO":
            return b"250 fake.example\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 bye\r\n"
        if verb == "RSET":
            state.mail = False
            return b"250 2.0.0 ok\r\n"
        if verb == "NOOP":
            return b"250 2.0.0 ok\r\n" if noop_ok else b"530 5.7.0 Authentication required\r\n"
        if verb == "AUTH":
            if state.authed:
                return b"503 5.5.1 already authenticated\r\n"
            if len(words) == 3 and words[1].upper() == "PLAIN" and words[2] == GOOD_PLAIN:
                state.authed = True
                return b"235 2.7.0 ok\r\n"
            return b"535 5.7.8 bad credentials\r\n"
        if not state.authed:
            return b"530 5.7.0 Authentication required\r\n"
        if verb == "MAIL":
            state.mail = True
            return b"250 2.1.0 ok\r\n"
        if verb == "RCPT":
            return b"250 2.1.5 ok\r\n" if state.mail else b"503 5.5.1 need MAIL\r\n"
        return b"502 5.5.2 not here\r\n"

    return respond


def _run(port: int, ids: tuple[str, ...], tls: TLSPair | None = None, **kw: object) -> dict[str, CheckResult]:
    options = ConformOptions(port=port, rcpt="user@fake.example", timeout=2.0, check_timeout=20.0, **kw)  # type: ignore[arg-type]
    if tls is not None:
        options.ca_file = tls.ca_file
    return {r.id: r for r in run_suite(options, select(ids))}


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


@pytest.mark.parametrize(("noop_ok", "verdict"), [(True, Verdict.PASS), (False, Verdict.WARN)])
def test_tls_required_policy(tls: TLSPair, noop_ok: bool, verdict: Verdict) -> None:
    with ScriptedServer(tls_required(noop_ok), tls) as port:
        r = _run(port, ("T-06",), tls)["T-06"]
    assert r.verdict is verdict, f"{r.reason}\n" + "\n".join(r.evidence)
    if verdict is Verdict.PASS:
        assert "TLS required" in r.reason
    else:
        assert "NOOP" in r.reason


def test_tls_required_is_a_public_mx_failure(tls: TLSPair) -> None:
    # The same server, judged as a port-25-style MX by T-05: requiring TLS fails there.
    with ScriptedServer(tls_required(True), tls) as port:
        r = _run(port, ("T-05",), tls)["T-05"]
    assert r.verdict is Verdict.FAIL
    assert "530" in r.reason


@pytest.mark.parametrize(("noop_ok", "verdict"), [(True, Verdict.PASS), (False, Verdict.WARN)])
def test_auth_required_policy(noop_ok: bool, verdict: Verdict) -> None:
    with ScriptedServer(auth_required(noop_ok)) as port:
        r = _run(port, ("U-06",), user=USER, password=PASSWORD)["U-06"]
    assert r.verdict is verdict, f"{r.reason}\n" + "\n".join(r.evidence)
    transcript = "\n".join(r.transcript)
    assert PASSWORD not in transcript and GOOD_PLAIN not in transcript
    if verdict is Verdict.PASS:
        # The positive control: after AUTH the foreign RCPT is accepted, and no DATA follows it.
        assert "RCPT TO:<relay-test@smtpbench-relay.invalid>" in transcript
        assert "C: DATA" not in transcript


def test_auth_required_server_is_not_an_open_relay() -> None:
    with ScriptedServer(auth_required(True)) as port:
        r = _run(port, ("SEC-01",))["SEC-01"]
    # MAIL itself needs AUTH (530) for every vector: nothing is relayed unauthenticated.
    assert r.verdict is Verdict.PASS, r.reason
    assert "16 foreign recipients refused" in r.reason
