"""Section 9: recipient limits (L-01, L-02)."""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, open_transaction, passed, send_body, setup, test_message
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe
from smtpbench.protocol.commands import encode_data

AREA = "recipients"
REQUIRED_RECIPIENTS = 100
#: L-02 gives up looking for a limit after this many recipients.
PROBE_RECIPIENTS = 1000


async def hundred_recipients(probe: Probe) -> Finding:
    session = await probe.connect()
    await setup(session, "MAIL FROM:<{sender}>", 250)
    # The one known recipient, repeated: a server must accept 100 RCPTs whatever they name.
    for i in range(REQUIRED_RECIPIENTS):
        ex = await session.cmd("RCPT TO:<{rcpt}>")
        if ex.code not in (250, 251):
            await session.close()
            return Finding(Verdict.FAIL, f"RCPT number {i + 1} got {ex.outcome}; 100 must be accepted", ex.lines())
    data = await session.cmd("DATA")
    findings = [check_code(probe, data, 354, reason="DATA after 100 recipients")]
    if data.code == 354:
        end = await send_body(session, encode_data(test_message(probe, "L-01").encode()))
        findings.append(check_code(probe, end, 250, reason="a message to 100 recipients"))
    await session.close()
    found = worst(findings)
    return found if found.verdict is not Verdict.PASS else passed("100 RCPTs accepted, then 354 and 250", data)


async def too_many_recipients(probe: Probe) -> Finding:
    session = await probe.connect()
    await open_transaction(session)
    accepted = 1
    refusal = None
    for _ in range(PROBE_RECIPIENTS - 1):
        ex = await session.cmd("RCPT TO:<{rcpt}>")
        if ex.code in (250, 251):
            accepted += 1
            continue
        refusal = ex
        break
    if refusal is None:
        await session.close()
        return Finding(Verdict.PASS, f"no recipient limit up to {PROBE_RECIPIENTS}")
    findings: list[Finding] = []
    code = refusal.code
    if code is None:
        await session.close()
        return Finding(Verdict.FAIL, f"RCPT {accepted + 1}: {refusal.outcome}", refusal.lines())
    policy = code >= 500
    kind = "implementation limit" if code == 452 else "site policy" if policy else f"unexpected {code}"
    if code != 452 and not policy:
        findings.append(
            Finding(Verdict.FAIL, f"too many recipients got {code}: expected 452 (or a 5yz policy)", refusal.lines())
        )
    data = await session.cmd("DATA")
    if data.code == 503 and policy:
        findings.append(Finding(Verdict.PASS, f"limit at {accepted} ({kind} {code}); DATA 503", data.lines()))
    elif data.code != 354:
        findings.append(
            Finding(
                Verdict.FAIL,
                f"after {accepted} accepted recipients and a {code}, DATA got "
                f"{data.outcome}: the accepted recipients were dropped",
                refusal.lines() + data.lines(),
            )
        )
    else:
        end = await send_body(session, encode_data(test_message(probe, "L-02").encode()))
        findings.append(check_code(probe, end, 250, reason="the accepted recipients must get the message"))
        if findings[-1].verdict is Verdict.PASS:
            findings[-1] = Finding(
                Verdict.PASS,
                f"limit at {accepted} recipients ({kind} {code}); the accepted ones kept: 354, 250",
                refusal.lines() + data.lines(),
            )
    await session.close()
    return worst(findings)


CHECKS = (
    Check(
        "L-01", "100 recipients", AREA, Level.MUST, "4.5.3.1.8", needs=frozenset({"rcpt"}), script=hundred_recipients
    ),
    Check(
        "L-02",
        "Too many recipients",
        AREA,
        Level.MUST,
        "4.5.3.1.8, 4.5.3.1.10",
        needs=frozenset({"rcpt", "sink"}),
        script=too_many_recipients,
    ),
)
