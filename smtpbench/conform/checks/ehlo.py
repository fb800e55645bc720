"""Section 2: EHLO and HELO (E-01..E-05)."""

from __future__ import annotations

import re

from smtpbench.conform.checks._util import (
    check_code,
    is_domain_or_literal,
    open_transaction,
    passed,
    send_body,
    test_message,
)
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import CheckAborted, Probe
from smtpbench.conform.steps import limit_closure, server_words
from smtpbench.protocol.commands import encode_data

AREA = "ehlo"

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_PARAM = re.compile(r"[\x21-\x7e]+")
EHLO_REFUSALS = (501, 500, 502, 550)


async def response_syntax(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect("greeting")
    ex = await session.cmd("EHLO client.example")
    if ex.code != 250:
        findings.append(check_code(probe, ex, 250, reason="EHLO must be accepted"))
    else:
        assert ex.reply is not None
        lines = ex.reply.lines
        name = lines[0].split(" ", 1)[0]
        if not is_domain_or_literal(name):
            findings.append(Finding(Verdict.FAIL, f"EHLO reply does not start with a domain: {name!r}", ex.lines()))
        for line in lines[1:]:
            keyword, _, params = line.partition(" ")
            if not _KEYWORD.fullmatch(keyword) or any(not _PARAM.fullmatch(p) for p in params.split(" ") if params):
                findings.append(Finding(Verdict.FAIL, f"malformed EHLO keyword line {line!r}", ex.lines()))
                break
        if not findings:
            findings.append(passed(f"EHLO: 250 with {len(lines) - 1} keyword lines, all well-formed", ex))
    await session.close()
    session = await probe.connect("greeting")
    ex = await session.cmd("HELO client.example")
    if ex.code == 250 and ex.reply is not None and len(ex.reply.lines) > 1:
        findings.append(Finding(Verdict.FAIL, "HELO got an EHLO-style multi-line reply", ex.lines()))
    else:
        findings.append(check_code(probe, ex, 250, reason="HELO must get a single-line 250"))
    await session.close()
    return worst(findings)


async def argument_forms(probe: Probe) -> Finding:
    # Each EHLO argument on its own un-greeted connection: a second EHLO on one connection is E-03's
    # subject (some servers answer any second EHLO with 503), and MAIL before EHLO is S-01's.
    findings: list[Finding] = []
    for line in ("EHLO", "HELO", "EHLO [192.0.2.1]", "EHLO [IPv6:2001:db8::1]"):
        session = await probe.connect("greeting")
        ex = await session.cmd(line)
        await session.close()
        if " " not in line:
            findings.append(check_code(probe, ex, *EHLO_REFUSALS, reason=f"{line} without a domain must be refused"))
        elif ex.code in (500, 501):
            findings.append(
                Finding(
                    Verdict.FAIL, f"{line}: {ex.code}, a valid address literal refused as a syntax error", ex.lines()
                )
            )
        elif ex.code is not None and ex.code >= 400:
            words = server_words(ex)
            findings.append(
                Finding(Verdict.POLICY, f'{line}: address literal refused by configuration ("{words}")', ex.lines())
            )
        else:
            findings.append(check_code(probe, ex, 250, reason="an address literal is a valid EHLO argument"))
    return worst(findings)


async def case_insensitivity(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect("greeting")
    must = "commands are case-insensitive"
    for line, code in (("ehlo {helo}", 250), ("mail from:<{sender}>", 250), ("rCpT tO:<{rcpt}>", 250)):
        ex = await session.cmd(line)
        findings.append(check_code(probe, ex, code, reason=must))
        if ex.code != code:
            await session.close()
            return worst(findings)
    ex = await session.cmd("data")
    findings.append(check_code(probe, ex, 354, reason=must))
    if ex.code == 354:
        end = await send_body(session, encode_data(test_message(probe, "E-05").encode()))
        findings.append(check_code(probe, end, 250, reason="the message must be accepted"))
    await session.close()
    return worst(findings)


#: Probes for advertised keywords: harmless forms that an implementation must recognise.
ADVERTISED_PROBES = {
    "EXPN": "EXPN postmaster",
    "HELP": "HELP",
    "ETRN": "ETRN {helo}",
    "CHUNKING": "BDAT 0 LAST",
    "AUTH": "AUTH",
    "STARTTLS": "STARTTLS",
}
#: Unknown-command probes per session, below common error thresholds (Exim closes after 3).
PER_SESSION = 2
#: Commands E-04 itself probes when not advertised.  EXPN and VRFY are base commands (V-01, V-02), HELP is
#: V-03's, and SEND, SOML, SAML, TURN and ETRN are LG-01's: those checks own them, E-04 cites them.
UNADVERTISED = ("ATRN",)
OWNED_ELSEWHERE = "EXPN: see V-02; HELP: see V-03; SEND, SOML, SAML, TURN, ETRN: see LG-01"


async def repeated_ehlo(probe: Probe) -> Finding:
    session = await probe.connect()
    await open_transaction(session)
    again = await session.cmd("EHLO {helo}")
    if again.code is not None and again.code >= 400:
        # 4.1.4's MUST is conditional ("if ... the EHLO command is processed successfully"): a server may
        # refuse a second EHLO, and then the open transaction rightly stays.
        await session.close()
        return Finding(
            Verdict.INFO, f"a repeated EHLO is refused ({server_words(again)}); the transaction stays", again.lines()
        )
    findings = [check_code(probe, again, 250, reason="a repeated EHLO is allowed")]
    rcpt = await session.cmd("RCPT TO:<{rcpt}>")
    findings.append(check_code(probe, rcpt, 503, reason="EHLO must have reset the transaction"))
    data = await session.cmd("DATA")
    findings.append(check_code(probe, data, 503, 554, reason="EHLO must have reset the transaction"))
    # Never send content after an unwanted 354: drop the connection instead.
    await session.close(polite=data.code != 354)
    return worst(findings)


async def advertisement(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect("greeting")
    if (await session.ehlo()).code != 250:
        raise CheckAborted("EHLO was refused")
    advertised = set(session.extensions)
    verb_of_keyword = {"CHUNKING": "BDAT"}
    for keyword, line in ADVERTISED_PROBES.items():
        if keyword not in advertised or keyword == "STARTTLS":
            continue
        session = await probe.renew(session, errors=1, start="ehlo")
        ex = await session.cmd(line)
        if ex.code in (500, 502):
            note = f"# EHLO advertised: {' '.join(sorted(advertised))}"
            findings.append(
                Finding(Verdict.FAIL, f"{keyword} is advertised but {ex.command} got {ex.code}", [note, *ex.lines()])
            )
        else:
            findings.append(passed(f"advertised {keyword}: {ex.command} -> {ex.outcome}", ex))
        if ex.code is not None and 200 <= ex.code < 400 and keyword in ("AUTH",):
            await session.close(polite=False)
            session = await probe.connect()
    sent = 0
    for verb in UNADVERTISED:
        keyword = next((k for k, v in verb_of_keyword.items() if v == verb), verb)
        if keyword in advertised:
            continue
        if session.closed or (sent and sent % PER_SESSION == 0):
            # Fresh sessions keep us under error-count limits, which are not what E-04 is about.
            await session.close()
            session = await probe.connect("ehlo")
        sent += 1
        ex = await session.cmd(verb)
        code = ex.code
        if code is None:
            findings.append(
                limit_closure(session, ex)
                or Finding(
                    Verdict.FAIL, f"unadvertised {verb}: {ex.outcome}", ex.lines(), rule=sentence("exactly-one-reply")
                )
            )
        elif 200 <= code < 300:
            # Only the other direction (advertised, then 502) is a MUST NOT (4.2.4).
            findings.append(
                Finding(Verdict.WARN, f"{verb} is implemented ({code}) but not advertised in EHLO", ex.lines())
            )
        elif code in (500, 502):
            findings.append(passed(f"unadvertised {verb}: {code} ({OWNED_ELSEWHERE})", ex))
        else:
            findings.append(Finding(Verdict.INFO, f"unadvertised {verb} got {code} (500/502 expected)", ex.lines()))
    if "STARTTLS" in advertised and probe.options.tls == "none" and not session.closed:
        ex = await session.cmd("STARTTLS")
        if ex.code in (500, 502):
            findings.append(Finding(Verdict.FAIL, f"STARTTLS is advertised but got {ex.code}", ex.lines()))
        # After a 220 the server expects a TLS handshake we will not do: just drop the connection.
        await session.close(polite=ex.code != 220)
    await session.close()
    return worst(findings)


CHECKS = (
    Check(
        "E-01",
        "EHLO and HELO response syntax",
        AREA,
        Level.MUST,
        "4.1.1.1, 3.2, F.3",
        script=response_syntax,
        start="greeting",
    ),
    Check(
        "E-02",
        "EHLO argument forms",
        AREA,
        Level.MUST,
        "4.1.1.1, 4.1.3, 4.1.4",
        script=argument_forms,
        start="greeting",
    ),
    Check(
        "E-03",
        "Repeated EHLO resets the transaction",
        AREA,
        Level.MUST,
        "4.1.4",
        needs=frozenset({"rcpt"}),
        script=repeated_ehlo,
    ),
    Check(
        "E-04",
        "Advertisement consistency",
        AREA,
        Level.MUST,
        "4.2.4, 4.1.1.1, 3.5.2, F.6",
        script=advertisement,
        start="greeting",
    ),
    Check(
        "E-05",
        "Case insensitivity",
        AREA,
        Level.MUST,
        "2.4, 4.1.1.1",
        needs=frozenset({"rcpt"}),
        script=case_insensitivity,
        start="greeting",
    ),
)
