"""Section 5: RSET, NOOP, QUIT (R-01..R-03)."""

from __future__ import annotations

import secrets

import trio

from smtpbench.conform.checks._util import (
    check_code,
    delivered_count,
    find_delivered,
    open_transaction,
    passed,
    send_body,
    start_data,
    test_message,
)
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe
from smtpbench.protocol.commands import encode_data

AREA = "session"

#: RFC 5321 4.1.1.10 wants the close right after the 221; we allow this long.
CLOSE_AFTER_QUIT = 5.0


async def rset(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    await open_transaction(session)
    findings.append(check_code(probe, await session.cmd("RSET"), 250, reason="RSET must be accepted"))
    findings.append(check_code(probe, await session.cmd("RCPT TO:<{rcpt}>"), 503, reason="RSET must clear MAIL"))
    ex = await session.cmd("DATA")
    findings.append(check_code(probe, ex, 503, 554, reason="RSET must clear the recipients"))
    if ex.code == 354:
        await session.close(polite=False)
        return worst(findings)
    await session.close()
    # RSET before EHLO is S-01's behaviour: not graded again here.
    session = await probe.connect()
    for _ in range(2):
        findings.append(check_code(probe, await session.cmd("RSET"), 250, reason="RSET twice in a row"))
    await start_data(session)
    end = await send_body(session, encode_data(test_message(probe, "R-01").encode()))
    findings.append(check_code(probe, end, 250, reason="message for the RSET-after-message case"))
    findings.append(check_code(probe, await session.cmd("RSET"), 250, reason="RSET right after a message"))
    if session.closed:
        findings.append(Finding(Verdict.FAIL, "the connection was closed during RSET tests", session.transcript()[-6:]))
    await session.close()
    return worst(findings)


async def noop(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    findings.append(check_code(probe, await session.cmd("NOOP"), 250, reason="NOOP must get 250"))
    await open_transaction(session, rcpt=False)
    ex = await session.cmd("NOOP hello world")
    findings.append(
        check_code(probe, ex, 250, reason="the NOOP argument SHOULD be ignored", verdict=Verdict.WARN)
        if ex.code is not None
        else check_code(probe, ex, 250, reason="NOOP must get a reply")
    )
    if ex.code is not None and ex.code != 250:
        findings[-1].rule = sentence("noop-argument")
    findings.append(
        check_code(
            probe, await session.cmd("RCPT TO:<{rcpt}>"), 250, 251, reason="NOOP must not disturb the transaction"
        )
    )
    await session.close()
    return worst(findings)


async def quit_(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    ex = await session.cmd("QUIT")
    findings.append(check_code(probe, ex, 221, reason="QUIT must get 221"))
    if ex.code == 221:
        # quit() already waited (bounded by CLOSE_AFTER_QUIT and the reply timeout) for the close.
        wait = min(CLOSE_AFTER_QUIT, probe.options.timeout)
        if session.closed or await session.wait_closed(0.05):
            findings.append(passed("221, then the server closed the connection", ex))
        else:
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"the server kept the connection open {wait:g}s after 221",
                    [*ex.lines(), f"!: still open after {wait:g}s"],
                )
            )
    await session.close()
    if not probe.options.rcpt:
        findings.append(Finding(Verdict.INFO, "abandoned-message part not run (needs --rcpt)"))
        return worst(findings)
    before = delivered_count(probe)
    tag = f"R-03-abandoned-{secrets.token_hex(4)}"
    session = await probe.connect()
    await start_data(session)
    await session.send(f"Subject: {tag}\r\nFrom: <{probe.options.mail_from}>\r\n\r\npartial bo".encode())
    await session.close(polite=False)
    if probe.delivered() is None:
        findings.append(Finding(Verdict.INFO, "abandoned message: delivery not verified (no delivery oracle)"))
    else:
        await trio.sleep(0.3)
        if find_delivered(probe, tag.encode(), before):
            findings.append(
                Finding(Verdict.FAIL, "a message abandoned in the middle of DATA was delivered", session.transcript())
            )
    return worst(findings)


CHECKS = (
    Check("R-01", "RSET", AREA, Level.MUST, "4.1.1.5", needs=frozenset({"rcpt"}), script=rset),
    Check("R-02", "NOOP", AREA, Level.MUST, "4.1.1.9", script=noop),
    Check("R-03", "QUIT", AREA, Level.MUST, "4.1.1.10, 4.1.1.5, 3.8", script=quit_),
)
