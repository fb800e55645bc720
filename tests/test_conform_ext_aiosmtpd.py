"""The extension checks against a real third-party server: aiosmtpd (Controller on 127.0.0.1).

The verdicts are pinned, so a change in a check's judgement shows up here.
Where aiosmtpd deviates from the RFCs the pinned verdict is the deviation,
with the reason checked too (each is a real aiosmtpd 1.4 behaviour):

* T-03: a second STARTTLS inside TLS gets 220 (RFC 3207 4.2 wants 5yz).
* U-04: AUTH inside a mail transaction succeeds (RFC 4954 4 wants 503).
* U-05: ``AUTH=`` on MAIL is refused (555) unless authenticated (RFC 4954 5 wants it accepted).
* Z-02: a 21-digit SIZE gets 552 rather than the 501 of a syntax error.
* B-01: two BODY parameters are accepted (info: RFC 6152 binds the client, which must send one).
* B-03: non-ASCII addresses are accepted without the SMTPUTF8 parameter (info: RFC 6531 3.4 binds the client).
* SEC-01: the default handler accepts every recipient (aiosmtpd is a library, not an MTA).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from smtpbench.conform.checks import select
from smtpbench.conform.model import CheckResult, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.runner import run_suite
from tests.peers import free_port
from tests.sinkutil import TLSPair, tls_pair

USER, PASSWORD = "carol", "aio-Pa55"
SIZE_LIMIT = 100_000

PINNED: dict[str, tuple[Verdict, str]] = {
    "P-01": (Verdict.SKIP, "PIPELINING is not advertised"),
    "P-02": (Verdict.SKIP, "PIPELINING is not advertised"),
    "P-03": (Verdict.SKIP, "PIPELINING is not advertised"),
    "T-01": (Verdict.PASS, "certificate verified"),
    "T-02": (Verdict.PASS, "501"),
    "T-03": (Verdict.FAIL, "second STARTTLS inside TLS got 220"),
    "T-04": (Verdict.PASS, "discarded"),
    "T-05": (Verdict.PASS, "accepted without TLS"),
    "T-06": (Verdict.PASS, "not applicable"),
    "U-01": (Verdict.PASS, "cleartext AUTH PLAIN got 538"),
    "U-02": (Verdict.PASS, "exchange errors answered as required"),
    "U-03": (Verdict.PASS, "535"),
    "U-04": (Verdict.FAIL, "AUTH during a mail transaction"),
    "U-05": (Verdict.FAIL, "got 555"),
    "U-06": (Verdict.PASS, "not applicable"),
    "Z-01": (Verdict.PASS, f"SIZE={SIZE_LIMIT + 1} got 552"),
    "Z-02": (Verdict.WARN, "got 552, expected 501"),
    "Z-03": (Verdict.PASS, "552 after the end of data"),
    "B-01": (Verdict.INFO, "two BODY parameters accepted (250)"),
    "B-02": (Verdict.PASS, "SMTPUTF8=YES got 501"),
    "B-03": (Verdict.INFO, "without the SMTPUTF8 parameter accepted (250)"),
    "B-04": (Verdict.PASS, "555"),
    "K-01": (Verdict.SKIP, "CHUNKING is not advertised"),
    "K-02": (Verdict.SKIP, "CHUNKING is not advertised"),
    "K-03": (Verdict.SKIP, "CHUNKING is not advertised"),
    "N-01": (Verdict.SKIP, "DSN is not advertised"),
    "ES-01": (Verdict.SKIP, "ENHANCEDSTATUSCODES is not advertised"),
    "LG-01": (Verdict.PASS, "not implemented"),
    "SEC-01": (Verdict.WARN, "suspect open relay"),
    "TO-01": (Verdict.SKIP, "--slow"),
    "TO-02": (Verdict.SKIP, "hook"),
}
#: With --starttls: AUTH is offered only inside TLS (auth_require_tls).
STARTTLS_RUN = {cid for cid in PINNED if cid.startswith("U-")}


class Handler:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content or b""))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (
        getattr(auth_data, "login", None) == USER.encode() and getattr(auth_data, "password", None) == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def aiosmtpd_results() -> Iterator[dict[str, CheckResult]]:
    tls: TLSPair = tls_pair()
    handler = Handler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls.server_context,
        authenticator=_authenticator,
        auth_require_tls=True,
        data_size_limit=SIZE_LIMIT,
    )
    controller.start()
    try:
        results: dict[str, CheckResult] = {}
        for mode, ids in (("none", set(PINNED) - STARTTLS_RUN), ("starttls", STARTTLS_RUN)):
            options = ConformOptions(
                port=port,
                rcpt="user@example.org",
                timeout=2.0,
                check_timeout=20.0,
                ca_file=tls.ca_file,
                user=USER,
                password=PASSWORD,
                tls=mode,
            )
            for r in run_suite(options, select(tuple(sorted(ids))), oracle=lambda: list(handler.messages)):
                results[r.id] = r
        yield results
    finally:
        controller.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("check_id", sorted(PINNED))
def test_verdict_against_aiosmtpd(aiosmtpd_results: dict[str, CheckResult], check_id: str) -> None:
    r = aiosmtpd_results[check_id]
    verdict, words = PINNED[check_id]
    assert r.verdict is verdict, f"{r.verdict.value}: {r.reason}\n" + "\n".join(r.evidence)
    assert words in r.reason
