"""Section 1: reply hygiene (G-01), the greeting (C-01, C-02), unsynchronised input (C-03)."""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, is_domain_or_literal, passed
from smtpbench.conform.hygiene import judge_hygiene
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe

AREA = "greeting"


async def reply_hygiene(probe: Probe) -> Finding:
    # A short session of our own, so that G-01 has material even when run alone.
    session = await probe.connect("greeting")
    for line in ("EHLO {helo}", "NOOP", "RSET", "HELP"):
        await session.cmd(line)
    await session.quit()
    await session.close()
    return judge_hygiene([*probe.history, *probe.sessions])


async def greeting(probe: Probe) -> Finding:
    session = await probe.connect("none")
    ex = await session.read_greeting()
    reply = ex.reply
    if reply is None:
        return Finding(probe.check.failing_verdict, f"no greeting: {ex.outcome}", ex.lines())
    if reply.code == 421:
        return Finding(Verdict.INFO, "421 greeting: server busy, result is temporary", ex.lines())
    if reply.code in (554, 521):
        return Finding(Verdict.INFO, f"{reply.code} greeting: the server refuses service (see C-02)", ex.lines())
    if reply.code != 220:
        return Finding(Verdict.FAIL, f"greeting code {reply.code}, expected 220 (or 554/421)", ex.lines())
    words = reply.lines[0].split(" ", 1)
    name = words[0]
    banner = words[1].strip() if len(words) > 1 else ""
    if not name or not is_domain_or_literal(name):
        return Finding(
            Verdict.FAIL, f"220 greeting does not start with a domain or address literal: {name!r}", ex.lines()
        )
    about = f"; banner text: {banner!r}" if banner else ""
    if "." not in name and not name.startswith("["):
        return Finding(Verdict.WARN, f"220 greeting names {name!r}, which is not fully qualified{about}", ex.lines())
    return passed(f"220 {name}{about}", ex)


async def refusal_greeting(probe: Probe) -> Finding:
    session = await probe.connect("none")
    greet = await session.read_greeting()
    if greet.code not in (554, 521):
        return Finding(Verdict.SKIP, f"applies only to a 554 greeting; the greeting was {greet.outcome}", greet.lines())
    findings = [
        check_code(
            probe,
            await session.cmd("EHLO {helo}"),
            503,
            reason="SHOULD answer 503 after a 554 greeting",
            verdict=Verdict.WARN,
        ),
    ]
    if not session.closed:
        findings.append(
            check_code(
                probe,
                await session.cmd("MAIL FROM:<>"),
                503,
                verdict=Verdict.WARN,
                reason="SHOULD answer 503 after a 554 greeting",
            )
        )
    if session.closed:
        findings.append(
            Finding(Verdict.FAIL, "the server closed before QUIT after a 554 greeting", session.exchanges[-1].lines())
        )
    else:
        findings.append(check_code(probe, await session.quit(), 221, verdict=Verdict.FAIL))
    return worst(findings)


async def unsynchronised_input(probe: Probe) -> Finding:
    findings: list[Finding] = []
    # Early talker: EHLO before the greeting has had time to arrive.
    session = await probe.connect("none")
    ex = await session.send(f"EHLO {probe.options.helo}\r\n".encode(), verb="EARLY", replies=2)
    codes = ex.codes
    if codes[:2] == [220, 250]:
        findings.append(passed("early EHLO: greeting then 250, in order", ex))
    elif codes and (codes[-1] in (421, 554) or codes[0] in (421, 554)):
        findings.append(Finding(Verdict.INFO, f"early EHLO deliberately rejected ({ex.outcome})", ex.lines()))
    else:
        findings.append(Finding(Verdict.INFO, f"early EHLO: unexpected handling ({ex.outcome})", ex.lines()))
    await session.close()
    if "PIPELINING" in probe.extensions:
        return worst(findings)
    session = await probe.connect("ehlo")
    o = probe.options
    rcpt = o.rcpt or f"postmaster@{o.domain}"
    group = f"MAIL FROM:<{o.mail_from}>\r\nRCPT TO:<{rcpt}>\r\n".encode()
    ex = await session.send(group, verb="PIPELINED", replies=2)
    if len(ex.codes) == 2 and ex.codes[0] == 250:
        findings.append(passed(f"unnegotiated pipelining: replies in order ({ex.outcome})", ex))
    else:
        findings.append(Finding(Verdict.INFO, f"unnegotiated pipelining: {ex.outcome}", ex.lines()))
    await session.close()
    return worst(findings)


CHECKS = (
    Check("G-01", "Reply hygiene", AREA, Level.MUST, "4.2, 4.2.1, 4.3.2, 2.3.8, 4.5.3.1.5, 3.8", script=reply_hygiene),
    Check("C-01", "Greeting", AREA, Level.MUST, "4.2, 4.3.1, 3.1, 3.8", script=greeting, start="none"),
    Check("C-02", "Refusal-greeting semantics", AREA, Level.MUST, "3.1", script=refusal_greeting, start="none"),
    Check("C-03", "Unsynchronised input", AREA, Level.INFO, "4.3.1", script=unsynchronised_input, start="none"),
)
