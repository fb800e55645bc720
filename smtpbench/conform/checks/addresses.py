"""Section 7: addresses (A-01..A-04)."""

from __future__ import annotations

import re

from smtpbench.conform.checks._util import passed, setup
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Cmd, Finding, Level, Verdict, expect, worst
from smtpbench.conform.probe import Exchange, Probe, Session
from smtpbench.conform.steps import server_words

AREA = "addresses"

#: "Never 500 or 501": a syntax refusal is the failure; a policy refusal passes.
NOT_SYNTAX_ERROR = frozenset(range(200, 600)) - {500, 501}


async def _syntax_ok(probe: Probe, session: Session, line: str, what: str, level: Verdict | None = None) -> Finding:
    ex = await session.cmd(line)
    if ex.code is None:
        return Finding(probe.check.failing_verdict, f"{ex.command}: {ex.outcome}", ex.lines())
    if ex.code in (500, 501):
        return Finding(
            level or probe.check.failing_verdict, f"{what} refused as a syntax error ({ex.code})", ex.lines()
        )
    return passed(f"{what}: {ex.code}", ex)


async def path_forms(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    await setup(session, "MAIL FROM:<{sender}>", 250)
    findings.append(await _syntax_ok(probe, session, "RCPT TO:<@relay.example,@b.example:{rcpt}>", "source route"))
    quoted = await _syntax_ok(probe, session, 'RCPT TO:<"first last"@{domain}>', "quoted local part")
    quoted.rule = sentence("quoted-local-part") if quoted.verdict is not Verdict.PASS else None
    findings.append(quoted)
    await setup(session, "RSET", 250)
    mail = await _syntax_ok(probe, session, "MAIL FROM:<smtpbench@[192.0.2.1]>", "address-literal sender")
    findings.append(_literal_policy(mail, session.exchanges[-1]))
    if session.exchanges[-1].code == 250:
        ip = probe.peer_ip()
        literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
        rcpt = await _syntax_ok(probe, session, f"RCPT TO:<postmaster@{literal}>", "address literal")
        findings.append(_literal_policy(rcpt, session.exchanges[-1]))
    for line in ("MAIL FROM: <{sender}>", "MAIL FROM:{sender}"):
        await setup(session, "RSET", 250)
        ex = await session.cmd(line)
        style = "lenient" if ex.code == 250 else "strict" if ex.code in (501, 553) else f"got {ex.outcome}"
        findings.append(Finding(Verdict.PASS, f"{ex.command}: {style}", ex.lines()))
    await session.close()
    found = worst(findings)
    if found.verdict is Verdict.PASS:
        found.reason = "; ".join(f.reason for f in findings)
    return found


#: Reply text that says a literal was refused by configuration even when the code is 501 (Exim:
#: "domain literals not allowed", its allow_domain_literals option).
BY_CONFIGURATION = re.compile(r"literal|not allowed|not permitted|prohibit", re.I)


def _literal_policy(finding: Finding, ex: Exchange) -> Finding:
    """A domain literal refused with anything but a syntax error is the site's configuration: ``policy``."""
    said = " ".join(ex.reply.lines) if ex.reply is not None else ""
    by_config = ex.code in (500, 501) and BY_CONFIGURATION.search(said) is not None
    if (finding.verdict is Verdict.PASS or by_config) and ex.code is not None and ex.code >= 400:
        return Finding(
            Verdict.POLICY, f'{ex.command}: domain literal refused by configuration ("{server_words(ex)}")', ex.lines()
        )
    return finding


def long_domain(total: int) -> str:
    """A syntactically valid domain of exactly ``total`` octets (labels of at most 63)."""
    full, rem = divmod(total, 64)
    if rem:
        return ("a" * 63 + ".") * full + "b" * rem
    return ("a" * 63 + ".") * (full - 1) + "a" * 62 + ".b"


async def object_sizes(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    await setup(session, "MAIL FROM:<{sender}>", 250)
    local64 = "l" * 64
    findings.append(
        await _syntax_ok(probe, session, f"RCPT TO:<{local64}@{probe.options.domain}>", "a 64-octet local part")
    )
    # 256 octets including the angle brackets: 64 + "@" + 189.
    findings.append(await _syntax_ok(probe, session, f"RCPT TO:<{local64}@{long_domain(189)}>", "a 256-octet path"))
    # A 255-octet domain fits no path (256 with brackets and a local part), so it goes in EHLO.
    findings.append(await _syntax_ok(probe, session, f"EHLO {long_domain(255)}", "a 255-octet EHLO domain"))
    await session.close()
    return worst(findings)


CHECKS = (
    Check(
        "A-01",
        "Null reverse-path",
        AREA,
        Level.MUST,
        "4.1.2, 4.5.5",
        steps=(Cmd("MAIL FROM:<>", expect(250, reason="the null reverse-path must be accepted")),),
    ),
    Check(
        "A-02",
        "Postmaster",
        AREA,
        Level.MUST,
        "4.5.1, 4.1.1.3",
        steps=(
            Cmd("MAIL FROM:<{sender}>"),
            Cmd("RCPT TO:<postmaster@{domain}>", expect(250, 251, reason="postmaster must be accepted")),
            Cmd("RCPT TO:<Postmaster>", expect(250, 251, reason="<Postmaster> (case-insensitive) must be accepted")),
            Cmd("RCPT TO:<POSTMASTER>", expect(250, 251, reason="<POSTMASTER> must be accepted")),
            Cmd("RSET"),
        ),
    ),
    Check("A-03", "Path and mailbox forms", AREA, Level.MUST, "4.1.2, 4.1.3, 4.1.1.3, C, F.2, 3.3", script=path_forms),
    Check("A-04", "Minimum object sizes", AREA, Level.MUST, "4.5.3.1.1-4.5.3.1.3", script=object_sizes),
)
