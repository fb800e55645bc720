"""Section 16: DSN parameters (N-01, RFC 3461) and enhanced status codes (ES-01, RFC 2034/3463)."""

from __future__ import annotations

from smtpbench.conform.checks._util import evidence, setup
from smtpbench.conform.checks.ext_common import abandon_data, mail_then_rset, rset
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe
from smtpbench.protocol.replies import Reply, enhanced_code
from smtpbench.protocol.tables import RAW

AREA = "dsn"

#: The IANA registry: "subject.detail" -> basic codes it is associated with (empty: any / not given).
REGISTRY: dict[str, frozenset[int]] = {
    key.removeprefix("X."): frozenset(codes) for key, codes in RAW.get("enhanced_codes", {}).items()
}

#: Valid MAIL / RCPT DSN parameters (RFC 3461 4.3, 4.4, 4.1, 4.2).
VALID_MAIL = "RET=HDRS ENVID=abc+2B1"
VALID_RCPT = "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt+40d"
#: (parameters, level verdict when accepted) for invalid DSN parameters; MAIL ones are MUST, RCPT ones SHOULD.
INVALID_MAIL = ("RET=ALL", "RET=FULL RET=HDRS")
INVALID_RCPT = ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS NOTIFY=FAILURE", "ORCPT=rfc822-rcpt+40d")


async def dsn_parameters(probe: Probe) -> Finding:
    session = await probe.connect()
    findings: list[Finding] = []
    base = await mail_then_rset(session)
    valid = await mail_then_rset(session, VALID_MAIL)
    shown = [base, valid]
    if valid.code != base.code:
        findings.append(
            Finding(
                Verdict.FAIL,
                f"MAIL with {VALID_MAIL} got {valid.outcome}, without {base.outcome}",
                evidence(base, valid),
            )
        )
    for params in INVALID_MAIL:
        # Each invalid parameter provokes a 501: stay within the connection budget (README "Verdicts").
        session = await probe.renew(session, errors=1)
        ex = await mail_then_rset(session, params)
        shown.append(ex)
        if ex.code != 501:
            findings.append(Finding(Verdict.FAIL, f"MAIL with {params} got {ex.outcome}, expected 501", ex.lines()))
    session = await probe.renew(session, errors=1)
    await setup(session, "MAIL FROM:<{sender}>")
    rcpt_base = await session.cmd("RCPT TO:<{rcpt}>")
    rcpt_valid = await session.cmd(f"RCPT TO:<{{rcpt}}> {VALID_RCPT}")
    shown += [rcpt_base, rcpt_valid]
    if rcpt_valid.code != rcpt_base.code:
        findings.append(
            Finding(
                Verdict.WARN,
                f"RCPT with {VALID_RCPT} got {rcpt_valid.outcome}, without {rcpt_base.outcome}",
                evidence(rcpt_base, rcpt_valid),
            )
        )
    for params in INVALID_RCPT:
        renewed = await probe.renew(session, errors=1)
        if renewed is not session:
            session = renewed
            await setup(session, "MAIL FROM:<{sender}>")
        ex = await session.cmd(f"RCPT TO:<{{rcpt}}> {params}")
        shown.append(ex)
        if ex.code != 501:
            findings.append(Finding(Verdict.WARN, f"RCPT with {params} got {ex.outcome}, expected 501", ex.lines()))
    await rset(session)
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS, "valid DSN parameters change nothing; each invalid one gets 501", evidence(*shown)[-12:]
        )
    return result


def reply_problems(reply: Reply) -> list[tuple[Verdict, str]]:
    """What is wrong with one reply's enhanced status codes (RFC 2034 3, 4); empty when nothing is."""
    out: list[tuple[Verdict, str]] = []
    codes = [enhanced_code(line) for line in reply.lines]
    if reply.code // 100 == 3:
        if any(codes):
            out.append((Verdict.WARN, f"{reply.code} carries an enhanced code (3xx replies must not)"))
        return out
    first = codes[0]
    if first is None:
        out.append((Verdict.WARN, f"{reply.code} without an enhanced status code"))
        return out
    if int(first[0]) != reply.code // 100:
        out.append((Verdict.FAIL, f"{reply.code} with enhanced code {first}: the class must match"))
    if any(c != first for c in codes[1:]):
        out.append((Verdict.FAIL, f"multi-line {reply.code}: not every line carries {first}"))
    return out


def registry_notes(reply: Reply) -> list[str]:
    """INFO notes: an enhanced code missing from the IANA registry snapshot."""
    found = enhanced_code(reply.lines[0]) if reply.lines else None
    if found is None:
        return []
    _, subject, detail = found.split(".")
    if f"{int(subject)}.{int(detail)}" not in REGISTRY:
        return [f"{found} (to {reply.code}) is not in the IANA registry snapshot"]
    return []


async def enhanced_codes(probe: Probe) -> Finding:
    session = await probe.connect()
    for line in ("NOOP", "RSET", "VRFY postmaster", "XSMTPBENCH", "MAIL FROM:smtpbench-no-brackets"):
        await session.cmd(line)
    await rset(session)
    await session.cmd("MAIL FROM:<{sender}>")
    rcpt = await session.cmd("RCPT TO:<{rcpt}>")
    if rcpt.code in (250, 251):
        data = await session.cmd("DATA")
        if data.code == 354:
            await session.send(
                b"Subject: smtpbench ES-01\r\n\r\nenhanced status codes\r\n.\r\n", verb="DATA_END", replies=1
            )
        elif data.code is None:
            await abandon_data(session)
    await rset(session)
    if not session.closed:
        await session.cmd("QUIT")
    await session.close(polite=False)
    problems: list[tuple[Verdict, str, Exchange]] = []
    notes: list[str] = []
    judged = 0
    for ex in session.exchanges:
        if ex.verb in ("CONNECT", "EHLO", "HELO"):
            continue
        for reply in ex.replies:
            judged += 1
            problems += [(v, f"{ex.command}: {why}", ex) for v, why in reply_problems(reply)]
            notes += registry_notes(reply)
    if problems:
        top = max(v.rank for v, _, _ in problems)
        worst_ones = [(why, ex) for v, why, ex in problems if v.rank == top]
        verdict = next(v for v, _, _ in problems if v.rank == top)
        more = f" (+{len(worst_ones) - 1} more)" if len(worst_ones) > 1 else ""
        return Finding(verdict, f"{worst_ones[0][0]}{more}", [line for _, ex in worst_ones[:4] for line in ex.lines()])
    if notes:
        return Finding(
            Verdict.INFO,
            f"{judged} replies well-formed; " + "; ".join(dict.fromkeys(notes)),
            session.transcript()[-12:],
        )
    return Finding(
        Verdict.PASS,
        f"{judged} replies: each 2xx/4xx/5xx carries a matching enhanced code, 3xx none",
        session.transcript()[-12:],
    )


CHECKS = (
    Check(
        "N-01",
        "DSN parameters",
        AREA,
        Level.MUST,
        "RFC 3461 4.1, 4.5, 5.1",
        needs=frozenset({"ext:DSN"}),
        script=dsn_parameters,
    ),
    Check(
        "ES-01",
        "Enhanced status codes",
        AREA,
        Level.MUST,
        "RFC 2034 3, 4; IANA registry",
        needs=frozenset({"ext:ENHANCEDSTATUSCODES"}),
        script=enhanced_codes,
    ),
)
