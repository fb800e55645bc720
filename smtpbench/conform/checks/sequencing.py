"""Section 4: command sequencing (S-01..S-04)."""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, open_transaction, passed
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Cmd, Expect, Finding, Level, Verdict, expect, worst
from smtpbench.conform.probe import Probe

AREA = "sequencing"

#: "A normal reply": anything but the 503 that would mean "send EHLO first".
NOT_503 = frozenset(range(200, 600)) - {503}


def _normal(reason: str) -> Expect:
    return Expect(NOT_503, reason, otherwise=Verdict.WARN)


async def data_without_recipient(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    ex = await session.cmd("DATA")
    findings.append(check_code(probe, ex, 503, 554, reason="DATA with no transaction", c354=Verdict.WARN))
    if ex.code == 354:
        # Never send content after a wrong 354: drop the connection instead of risking a delivery.
        await session.close(polite=False)
        return worst(findings)
    await open_transaction(session, rcpt=False)
    rcpt = await session.cmd(f"RCPT TO:<zz-smtpbench-nouser@{probe.options.foreign_rcpt.rsplit('@', 1)[-1]}>")
    if rcpt.code is not None and rcpt.code < 400:
        findings.append(
            Finding(
                Verdict.INFO, "the probe recipient was accepted; the rejected-RCPT case was not tried", rcpt.lines()
            )
        )
    else:
        ex = await session.cmd("DATA")
        findings.append(check_code(probe, ex, 503, 554, reason="DATA after every RCPT was refused", c354=Verdict.WARN))
        if ex.code == 354:
            await session.close(polite=False)
            return worst(findings)
    await session.close()
    return worst(findings)


async def nested_mail(probe: Probe) -> Finding:
    session = await probe.connect()
    await open_transaction(session, rcpt=False)
    ex = await session.cmd("MAIL FROM:<b-{sender}>")
    if ex.code == 250:
        return Finding(Verdict.WARN, "a second MAIL got 250: the transaction was silently restarted", ex.lines())
    finding = check_code(probe, ex, 503, reason="nested MAIL")
    await session.close()
    return finding if finding.verdict is not Verdict.PASS else passed("nested MAIL: 503", ex)


CHECKS = (
    Check(
        "S-01",
        "Behaviour before EHLO",
        AREA,
        Level.MUST,
        "4.1.4, 4.1.1.1",
        start="greeting",
        steps=(
            Cmd("NOOP", _normal("NOOP SHOULD work before EHLO")),
            Cmd("RSET", _normal("RSET SHOULD work before EHLO")),
            Cmd("HELP", _normal("HELP SHOULD work before EHLO")),
            Cmd("VRFY postmaster", _normal("VRFY SHOULD work before EHLO")),
            Cmd("EXPN smtpbench-list", _normal("EXPN SHOULD work before EHLO")),
            # MAIL before EHLO: the rule binds the client (4.1.4), so a 250 is recorded (info), not failed.
            Cmd(
                "MAIL FROM:<{sender}>",
                Expect(
                    frozenset({503}),
                    "the server accepts MAIL before EHLO/HELO; the client MUST send EHLO first",
                    otherwise=Verdict.INFO,
                    rule=sentence("client-helo-first"),
                ),
            ),
        ),
    ),
    Check(
        "S-02",
        "RCPT without MAIL",
        AREA,
        Level.MUST,
        "3.3",
        steps=(Cmd("RCPT TO:<{rcpt}>", expect(503, reason="RCPT needs MAIL first")),),
    ),
    Check("S-03", "DATA without a valid recipient", AREA, Level.MAY, "3.3", script=data_without_recipient),
    Check("S-04", "Nested MAIL", AREA, Level.SHOULD, "4.1.4, 4.1.1.2", script=nested_mail),
)
