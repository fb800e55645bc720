"""Section 10: PIPELINING (P-01..P-03, RFC 2920).

Each group goes out in one write, exactly as a pipelining client would send
it; the checks then count and order the replies.  The replies to a group are
recorded under the pseudo-verb ``PIPELINED`` so that reply hygiene (G-01) does
not judge the 354 to DATA against the table of MAIL.
"""

from __future__ import annotations

from smtpbench.conform.checks._util import evidence, open_transaction, setup
from smtpbench.conform.checks.ext_common import abandon_data
from smtpbench.conform.model import Check, Finding, Level, Verdict
from smtpbench.conform.probe import Probe

AREA = "pipelining"
NEEDS = frozenset({"ext:PIPELINING"})
GROUP = "PIPELINED"


def _message(tag: str) -> bytes:
    return f"Subject: smtpbench {tag}\r\n\r\nsmtpbench pipelining probe {tag}\r\n.\r\n".encode()


async def ordered_replies(probe: Probe) -> Finding:
    session = await probe.connect()
    unknown = f"nouser-xyz-smtpbench@{probe.options.domain}"
    group = probe.fill(f"MAIL FROM:<{{sender}}>\r\nRCPT TO:<{{rcpt}}>\r\nRCPT TO:<{unknown}>\r\nDATA\r\n")
    ex = await session.send(group.encode(), verb=GROUP, replies=4)
    codes = ex.codes
    if 354 in codes and (len(codes) < 4 or codes.index(354) != 3):
        await abandon_data(session)
        return Finding(
            Verdict.FAIL, f"354 to DATA came before the replies to the commands before it ({ex.outcome})", ex.lines()
        )
    if len(codes) < 4:
        return Finding(Verdict.FAIL, f"4 commands in one write got {len(codes)} replies ({ex.outcome})", ex.lines())
    accepted = [c for c in codes[1:3] if c in (250, 251)]
    findings: list[Finding] = []
    if codes[3] == 354:
        end = await session.send(_message("P-01"), verb="DATA_END", replies=1)
        if not accepted:
            findings.append(
                Finding(Verdict.FAIL, f"DATA got 354 although no RCPT was accepted ({ex.outcome})", evidence(ex, end))
            )
    elif accepted and codes[0] == 250 and codes[3] == 503:
        findings.append(Finding(Verdict.WARN, f"DATA got 503 although a RCPT was accepted ({ex.outcome})", ex.lines()))
    await session.close()
    if findings:
        return findings[0]
    return Finding(Verdict.PASS, f"4 replies in order: {ex.outcome}", ex.lines())


#: P-02's group: MAIL, RCPT and RSET may appear anywhere in a pipelined group, NOOP only last (RFC 2920 3.1).
#: Recipients rather than repeated RSETs: servers count RSET and NOOP against non-mail limits (Exim: 10).
RCPTS = 30


async def no_input_lost(probe: Probe) -> Finding:
    session = await probe.connect()
    group = probe.fill("MAIL FROM:<{sender}>\r\n" + "RCPT TO:<{rcpt}>\r\n" * RCPTS + "RSET\r\nNOOP\r\n").encode()
    want = RCPTS + 3
    ex = await session.send(group, verb=GROUP, replies=want)
    extra = await session.extra(ex)
    await session.close()
    codes = ex.codes
    if len(codes) < want:
        limit = [r for r in ex.replies if r.code == 421 or "too many" in " ".join(r.lines).lower()]
        if limit:
            return Finding(
                Verdict.POLICY,
                f"{want} pipelined commands: the server stopped at a limit after {len(codes)} replies "
                f'("{limit[0].code} {" ".join(limit[0].lines)}")',
                ex.lines(),
            )
        return Finding(
            Verdict.FAIL, f"{want} commands in one write got only {len(codes)} replies: input was lost", ex.lines()
        )
    if extra:
        return Finding(Verdict.FAIL, f"{want} commands got {len(codes)} replies", ex.lines())
    bad = sorted({c for c in codes if c >= 400})
    if bad:
        return Finding(Verdict.WARN, f"{want} pipelined commands: refusals among the replies ({bad})", ex.lines())
    return Finding(
        Verdict.PASS, f"MAIL, {RCPTS} x RCPT, RSET and NOOP in one write: {want} replies in order", ex.lines()
    )


async def back_to_back(probe: Probe) -> Finding:
    session = await probe.connect()
    await open_transaction(session)
    await setup(session, "DATA", 354)
    second = probe.fill("MAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").encode()
    ex = await session.send(_message("P-03a") + second, verb=GROUP, replies=4)
    codes = ex.codes
    if len(codes) < 4:
        if 354 in codes:
            await abandon_data(session)
        return Finding(
            Verdict.FAIL,
            f"end of data + MAIL/RCPT/DATA in one write got {len(codes)} of 4 replies ({ex.outcome}): "
            "input after the end of data was lost",
            ex.lines(),
        )
    if codes[0] >= 400:
        await abandon_data(session)
        return Finding(Verdict.ERROR, f"the first message was refused ({codes[0]})", ex.lines())
    if codes[3] != 354 or any(c >= 300 for c in codes[:3]):
        if 354 in codes:
            await abandon_data(session)
        return Finding(
            Verdict.FAIL, f"replies out of order or refused: {ex.outcome} (expected 250, 250, 250, 354)", ex.lines()
        )
    end = await session.send(_message("P-03b"), verb="DATA_END", replies=1)
    await session.close()
    if end.code != 250:
        return Finding(Verdict.FAIL, f"the second message got {end.outcome}", evidence(ex, end))
    return Finding(
        Verdict.PASS, f"second transaction answered after the first: {ex.outcome}, then {end.code}", evidence(ex, end)
    )


CHECKS = (
    Check(
        "P-01",
        "Pipelining: ordered replies",
        AREA,
        Level.MUST,
        "RFC 2920 3.1, 3.2; 4.2",
        needs=NEEDS | {"rcpt"},
        script=ordered_replies,
    ),
    Check("P-02", "Pipelining: no input lost", AREA, Level.MUST, "RFC 2920 3.2", needs=NEEDS, script=no_input_lost),
    Check(
        "P-03",
        "Pipelining: back-to-back transactions",
        AREA,
        Level.MUST,
        "RFC 2920 3.1",
        needs=NEEDS | {"rcpt"},
        script=back_to_back,
    ),
)
