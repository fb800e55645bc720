"""Section 6: VRFY, EXPN, HELP (V-01..V-03)."""

from __future__ import annotations

import re
import secrets

from smtpbench.conform.checks._util import check_code, passed
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe
from smtpbench.conform.steps import limit_closure, server_words

AREA = "vrfy"

_MAILBOX = re.compile(r"<[^<>@\s]+@[^<>\s]+>")


#: Replies that mean "VRFY/EXPN disabled by the site" (3.5.3, 7.3): a policy, not a protocol fault.
DISABLED = frozenset({252, 502, 550})


def _disabled(verb: str, ex: Exchange) -> Finding:
    # 7.3 asks a site that disables VRFY/EXPN for 252; 502 and 550 are common too.  All three are the
    # site's decision, counted as policy (issue 7), with the server's words.
    note = "" if ex.code == 252 or verb == "HELP" else "; RFC 5321 7.3 prefers 252 for a disabled command"
    return Finding(Verdict.POLICY, f'{verb} disabled by the site ("{server_words(ex)}"){note}', ex.lines())


async def vrfy(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    ex = await session.cmd("VRFY postmaster")
    if ex.code == 500:
        # VRFY is one of the commands 4.5.1 requires: "command unrecognized" is not a way to disable it.
        findings.append(
            Finding(Verdict.FAIL, "VRFY is not recognised (500)", ex.lines(), rule=sentence("minimum-commands"))
        )
    elif ex.code in DISABLED - {252}:
        findings.append(_disabled("VRFY", ex))
    else:
        findings.append(check_code(probe, ex, 250, 251, 252, 550, 551, 553, reason="VRFY is a required command"))
    ex = await session.cmd("VRFY")
    if ex.code == 502:
        findings.append(_disabled("VRFY", ex))
    else:
        findings.append(check_code(probe, ex, 501, 500, reason="VRFY needs an argument", verdict=Verdict.WARN))
    session = await probe.renew(session, errors=1)
    ex = await session.cmd(f"VRFY zz-{secrets.token_hex(6)}@{probe.options.domain}")
    if ex.code == 250:
        findings.append(Finding(Verdict.FAIL, "a random address was 'verified' (250)", ex.lines()))
    elif ex.code == 502:
        findings.append(_disabled("VRFY", ex))
    else:
        findings.append(
            limit_closure(session, ex)
            or check_code(
                probe, ex, 252, 550, 551, 553, reason="a random address must not be verified", verdict=Verdict.WARN
            )
        )
    await session.close()
    found = worst(findings)
    if found.verdict is Verdict.POLICY:
        found.reason = "; ".join(dict.fromkeys(f.reason for f in findings if f.verdict is Verdict.POLICY))
    return found


async def expn(probe: Probe) -> Finding:
    # EXPN is a base command (4.5.1 lists it among those a server implements): a 252, 502 or 550 means
    # the site disabled it, which is policy, not "an unadvertised command implemented".
    session = await probe.connect()
    advertised = "EXPN" in session.extensions
    ex = await session.cmd("EXPN postmaster")
    await session.close()
    if ex.code in (500, 502) and not advertised:
        return passed(f"EXPN not implemented ({ex.code})", ex)
    if ex.code in DISABLED or (ex.code is not None and ex.code in (504, 551, 553) and not advertised):
        return _disabled("EXPN", ex)
    if ex.code == 250 and not advertised:
        return Finding(Verdict.WARN, "EXPN answers 250 but is not advertised in EHLO", ex.lines())
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
            # A right-class code that 4.3.2 does not list for HELP: a SHOULD matter (4.3.1), owned here, not by G-01.
            findings.append(
                Finding(
                    Verdict.WARN,
                    f"{line}: 250 is not a reply HELP may get (211/214)",
                    ex.lines(),
                    rule=sentence("listed-codes"),
                )
            )
        elif ex.code == 502:
            findings.append(_disabled("HELP", ex))
        else:
            findings.append(check_code(probe, ex, 211, 214, 504, reason="HELP SHOULD be supported"))
    await session.close()
    found = worst(findings)
    return found if found.verdict is not Verdict.PASS else passed(found.reason, *session.exchanges[-3:-1])


CHECKS = (
    Check("V-01", "VRFY", AREA, Level.MUST, "4.5.1, 3.5.3, 7.3", script=vrfy),
    Check("V-02", "EXPN", AREA, Level.MUST, "3.5.2, 4.1.1.7", script=expn),
    Check("V-03", "HELP", AREA, Level.SHOULD, "4.1.1.8, 4.3.2", script=help_),
)
