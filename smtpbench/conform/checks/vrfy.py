"""Section 6: VRFY, EXPN, HELP (V-01..V-03)."""

from __future__ import annotations

import re
import secrets

from smtpbench.conform.checks._util import check_code, passed
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe

AREA = "vrfy"

_MAILBOX = re.compile(r"<[^<>@\s]+@[^<>\s]+>")


async def vrfy(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    ex = await session.cmd("VRFY postmaster")
    findings.append(
        check_code(probe, ex, 250, 251, 252, 550, 551, 553, reason="VRFY is a required command", c502=Verdict.WARN)
    )
    ex = await session.cmd("VRFY")
    findings.append(check_code(probe, ex, 501, reason="VRFY needs an argument", c502=Verdict.WARN))
    ex = await session.cmd(f"VRFY zz-{secrets.token_hex(6)}@{probe.options.domain}")
    if ex.code == 250:
        findings.append(Finding(Verdict.FAIL, "a random address was 'verified' (250)", ex.lines()))
    else:
        findings.append(
            check_code(probe, ex, 252, 550, 551, 553, reason="a random address must not be verified", c502=Verdict.WARN)
        )
    await session.close()
    return worst(findings)


async def expn(probe: Probe) -> Finding:
    session = await probe.connect()
    advertised = "EXPN" in session.extensions
    ex = await session.cmd("EXPN postmaster")
    await session.close()
    if not advertised:
        return check_code(probe, ex, 502, 500, reason="EXPN is not advertised, so it must not be implemented")
    finding = check_code(probe, ex, 250, 252, 550, 500, 502, 504, reason="EXPN is advertised")
    if ex.code == 250 and ex.reply is not None:
        bad = [line for line in ex.reply.lines if not _MAILBOX.search(line)]
        if bad:
            return Finding(Verdict.FAIL, f"EXPN list entry without <local@domain>: {bad[0]!r}", ex.lines())
    return finding


async def help_(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for line in ("HELP", "HELP MAIL"):
        ex = await session.cmd(line)
        if ex.code == 250:
            findings.append(Finding(Verdict.FAIL, f"{line}: 250 is not a reply HELP may get (211/214)", ex.lines()))
        else:
            findings.append(check_code(probe, ex, 211, 214, 504, reason="HELP SHOULD be supported", c502=Verdict.WARN))
    await session.close()
    found = worst(findings)
    return found if found.verdict is not Verdict.PASS else passed(found.reason, *session.exchanges[-3:-1])


CHECKS = (
    Check("V-01", "VRFY", AREA, Level.MUST, "4.5.1, 3.5.3, 7.3", script=vrfy),
    Check("V-02", "EXPN", AREA, Level.MUST, "3.5.2, 4.1.1.7", script=expn),
    Check("V-03", "HELP", AREA, Level.SHOULD, "4.1.1.8, 4.3.2", script=help_),
)
