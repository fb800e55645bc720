"""``smtpbench probe`` against aiosmtpd (a third-party server) with STARTTLS (trustme certificates) and AUTH."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from smtpbench.probe import model
from tests.peers import aiosmtpd_server
from tests.sinkutil import TLSPair, tls_pair
from tests.test_probe_sink import final, probe
from tests.test_secrets import SECRET, USER, assert_absent

RCPT = "user@example.org"


class Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.startswith("temp-"):
            return "421 4.3.2 service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or b"")))
        return "250 2.0.0 Message accepted for delivery"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = auth_data.login == USER.encode() and auth_data.password == SECRET.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


@pytest.fixture(scope="module")
def server(tls: TLSPair) -> Iterator[tuple[str, Handler]]:
    extra = {"tls_context": tls.server_context, "authenticator": _authenticator, "auth_require_tls": True}
    with aiosmtpd_server(Handler(), **extra) as (controller, handler):
        yield f"127.0.0.1:{controller.port}", handler


ENV = {"SMTPBENCH_PASSWORD": SECRET}


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_auth_message_accepted(server, tls: TLSPair, tmp_path: Path, mechanism: str) -> None:  # type: ignore[no-untyped-def]
    target, handler = server
    path = tmp_path / "p.json"
    code, out, err = probe(
        target, "--from", "probe@example.org", "--to", RCPT, "--starttls", "--ca-file", tls.ca_file,
        "--auth-user", USER, "--auth-mechanism", mechanism, "--body", "hello aiosmtpd", "--json", str(path), env=ENV,
    )  # fmt: skip
    assert code == model.EXIT_ACCEPTED, out + err
    assert handler.messages[-1][:2] == ("probe@example.org", [RCPT]) and b"hello aiosmtpd" in handler.messages[-1][2]
    # AUTH is offered only inside TLS (auth_require_tls): the EHLO explanations show both lists
    before_tls, after_tls = out.split("== TLS ", 1)
    assert "# AUTH " not in before_tls and "# AUTH LOGIN PLAIN: RFC 4954" in after_tls
    assert "== verified: yes" in out and "# 235: Authentication Succeeded; enhanced 2.7.0" in out
    assert final(out).startswith("ACCEPTED at data: 250 2.0.0 Message accepted for delivery")
    doc = json.loads(path.read_text())
    assert doc["tls"]["verified"] and doc["options"]["auth_user"] == USER and doc["outcome"]["exit_code"] == 0
    assert_absent({"stdout": out, "stderr": err, "json": path.read_text()})


def test_wrong_password_is_auth_refused(server, tls: TLSPair) -> None:  # type: ignore[no-untyped-def]
    target, _ = server
    code, out, err = probe(
        target, "--to", RCPT, "--starttls", "--ca-file", tls.ca_file, "--auth-user", USER,
        env={"SMTPBENCH_PASSWORD": "not-the-" + SECRET},
    )  # fmt: skip
    assert code == model.EXIT_AUTH, out
    assert "<** 535" in out and final(out).startswith("REFUSED at auth: 535")
    assert "not-the-" not in out + err


def test_auth_without_tls_not_offered(server) -> None:  # type: ignore[no-untyped-def]
    target, _ = server
    code, out, _ = probe(target, "--to", RCPT, "--auth-user", USER, env=ENV)
    assert code == model.EXIT_AUTH, out
    assert "does not offer AUTH (many servers offer it only after STARTTLS)" in out


def test_421_to_rcpt(server) -> None:  # type: ignore[no-untyped-def]
    target, _ = server
    code, out, _ = probe(target, "--to", "temp-x@example.org", "--pipelining", "off")
    assert code == model.EXIT_RECIPIENT, out
    assert final(out).startswith("REFUSED at rcpt: 421 4.3.2 service shutting down")
    assert "enhanced 4.3.2: Persistent Transient Failure" in out
