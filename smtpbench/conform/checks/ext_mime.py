"""Section 14: 8BITMIME, SMTPUTF8 and MAIL/RCPT parameters (B-01..B-04; RFC 6152, 6531, 5321 4.1.1.11)."""

from __future__ import annotations

import secrets

from smtpbench.conform.checks._util import await_delivered, check_code, client_rule, evidence, setup
from smtpbench.conform.checks.ext_common import abandon_data, mail_then_rset, rset
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe, Session

AREA = "mime"

#: Every octet with the high bit set, in order: the B-01 payload.
HIGH_OCTETS = bytes(range(0x80, 0x100))


async def eight_bit(probe: Probe) -> Finding:
    session = await probe.connect()
    findings: list[Finding] = []
    ok8 = await mail_then_rset(session, "BODY=8BITMIME")
    ok7 = await mail_then_rset(session, "BODY=7BIT")
    bogus = await mail_then_rset(session, "BODY=BOGUS")
    twice = await mail_then_rset(session, "BODY=7BIT BODY=8BITMIME")
    findings.append(check_code(probe, ok8, 250, reason="BODY=8BITMIME", verdict=Verdict.WARN))
    findings.append(check_code(probe, ok7, 250, reason="BODY=7BIT", verdict=Verdict.WARN))
    findings.append(check_code(probe, bogus, 501, 555, reason="unknown BODY value", verdict=Verdict.WARN))
    findings.append(client_rule(twice, "two BODY parameters", "duplicate-body"))
    findings.append(await _eight_bit_delivery(probe, session))
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            f"BODY: 250, 250, {bogus.code}, {twice.code}; {findings[-1].reason}",
            evidence(ok8, ok7, bogus, twice),
        )
    return result


async def _eight_bit_delivery(probe: Probe, session: Session) -> Finding:
    if not probe.options.rcpt:
        return Finding(Verdict.PASS, "8-bit delivery not tried (needs --rcpt)")
    token = secrets.token_hex(8)
    await setup(session, "MAIL FROM:<{sender}> BODY=8BITMIME")
    await setup(session, "RCPT TO:<{rcpt}>")
    data = await session.cmd("DATA")
    if data.code != 354:
        return Finding(Verdict.ERROR, f"DATA got {data.outcome}", data.lines())
    message = f"Subject: smtpbench B-01 {token}\r\nContent-Type: text/plain; charset=iso-8859-1\r\n".encode()
    message += b"Content-Transfer-Encoding: 8bit\r\n\r\n" + HIGH_OCTETS + b"\r\n.\r\n"
    end = await session.send(message, verb="DATA_END", replies=1)
    if end.code != 250:
        if end.code is None:
            await abandon_data(session)
        return Finding(Verdict.FAIL, f"the 8-bit message with BODY=8BITMIME got {end.outcome}", end.lines())
    mine = await await_delivered(probe, token.encode(), 0)
    if mine is None:
        return Finding(Verdict.PASS, "8-bit message accepted (no delivery oracle: storage not verified)")
    if not mine:
        return Finding(
            Verdict.INFO, "the accepted 8-bit message did not show up in the delivery oracle in time", end.lines()
        )
    if HIGH_OCTETS not in mine[-1]:
        return Finding(
            Verdict.FAIL, "octets 0x80-0xFF were not stored byte-identical (bits lost or recoded)", end.lines()
        )
    return Finding(Verdict.PASS, "octets 0x80-0xFF stored byte-identical")


async def utf8_syntax(probe: Probe) -> Finding:
    session = await probe.connect()
    ext = session.extensions or probe.extensions
    ehlo = next((ex for ex in session.exchanges if ex.verb == "EHLO"), None)
    shown = ehlo.lines() if ehlo else []
    findings: list[Finding] = []
    if ext.get("SMTPUTF8", "").strip():
        findings.append(Finding(Verdict.FAIL, f"SMTPUTF8 advertised with parameters: {ext['SMTPUTF8']!r}", shown))
    if "8BITMIME" not in ext:
        findings.append(Finding(Verdict.FAIL, "SMTPUTF8 advertised without 8BITMIME", shown))
    ex = await mail_then_rset(session, "SMTPUTF8=YES")
    await session.close()
    if ex.code is not None and ex.code < 400:
        findings.append(
            Finding(Verdict.FAIL, f"SMTPUTF8=YES (a value on a value-less parameter) got {ex.code}", ex.lines())
        )
    else:
        findings.append(check_code(probe, ex, 501, 555, reason="SMTPUTF8 takes no value"))
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS, "SMTPUTF8 without parameters, 8BITMIME advertised, SMTPUTF8=YES got 501", ex.lines()
        )
    return result


async def utf8_envelopes(probe: Probe) -> Finding:
    session = await probe.connect()
    findings: list[Finding] = []
    mail = await session.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8")
    findings.append(check_code(probe, mail, 250, reason="UTF-8 sender with the SMTPUTF8 parameter"))
    shown = [mail]
    if mail.code == 250:
        rcpt = await session.cmd("RCPT TO:<{rcpt}>")
        shown.append(rcpt)
        findings.append(check_code(probe, rcpt, 250, 251, reason="recipient in an SMTPUTF8 transaction"))
    await rset(session)
    await setup(session, "MAIL FROM:<{sender}>")
    rcpt8 = await session.cmd("RCPT TO:<jörg@{domain}>")
    await rset(session)
    mail8 = await session.cmd("MAIL FROM:<jörg@example.org>")
    await rset(session)
    await session.close()
    shown += [rcpt8, mail8]
    for ex, what in ((rcpt8, "RCPT"), (mail8, "MAIL")):
        findings.append(client_rule(ex, f"non-ASCII {what} without the SMTPUTF8 parameter", "utf8-needs-parameter"))
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            f"UTF-8 envelope accepted with SMTPUTF8; without it: RCPT {rcpt8.outcome}, MAIL {mail8.outcome}",
            evidence(*shown),
        )
    return result


async def unknown_parameters(probe: Probe) -> Finding:
    session = await probe.connect()
    ext = session.extensions or probe.extensions
    tried: list[Exchange] = [await mail_then_rset(session, "FOO=BAR")]
    await setup(session, "MAIL FROM:<{sender}>")
    tried.append(await session.cmd("RCPT TO:<{rcpt}> FOO=BAR"))
    if "DSN" not in ext:
        tried.append(await session.cmd("RCPT TO:<{rcpt}> NOTIFY=NEVER"))
    await rset(session)
    await session.close()
    findings: list[Finding] = []
    for ex in tried:
        if ex.code is not None and ex.code < 400:
            findings.append(
                Finding(
                    Verdict.FAIL, f"{ex.command} got {ex.code}: the unknown parameter was silently ignored", ex.lines()
                )
            )
        else:
            findings.append(check_code(probe, ex, 555, reason="unrecognised parameter", verdict=Verdict.WARN))
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(Verdict.PASS, f"555 to each of {len(tried)} unknown parameters", evidence(*tried))
    return result


CHECKS = (
    Check("B-01", "8BITMIME", AREA, Level.MUST, "RFC 6152 2, 3", needs=frozenset({"ext:8BITMIME"}), script=eight_bit),
    Check(
        "B-02",
        "SMTPUTF8 syntax",
        AREA,
        Level.MUST,
        "RFC 6531 3.1, 3.4",
        needs=frozenset({"ext:SMTPUTF8"}),
        script=utf8_syntax,
    ),
    Check(
        "B-03",
        "UTF-8 envelopes",
        AREA,
        Level.MUST,
        "RFC 6531 3.2, 3.5",
        needs=frozenset({"ext:SMTPUTF8", "rcpt"}),
        script=utf8_envelopes,
    ),
    Check(
        "B-04", "Unknown MAIL and RCPT parameters", AREA, Level.SHOULD, "4.1.1.11, 4.1.1.3", script=unknown_parameters
    ),
)
