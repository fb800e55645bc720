"""Section 15: CHUNKING (K-01..K-03, RFC 3030).

A BDAT command and its chunk always go out in one write, as a client does.
"""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, evidence, open_transaction, setup
from smtpbench.conform.checks.ext_common import abandon_data, rset
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import CheckAborted, Exchange, Probe, Session

AREA = "chunking"
NEEDS = frozenset({"ext:CHUNKING"})


async def _bdat(session: Session, chunk: bytes, last: bool = False) -> Exchange:
    head = f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode()
    return await session.send(head + chunk, verb="BDAT", replies=1)


async def basic_bdat(probe: Probe) -> Finding:
    session = await probe.connect()
    await open_transaction(session)
    first = await _bdat(session, b"hello")
    last = await _bdat(session, b"", last=True)
    findings = [
        check_code(probe, first, 250, reason="each BDAT chunk MUST get 250"),
        check_code(probe, last, 250, reason="BDAT 0 LAST is allowed and MUST get 250"),
    ]
    if last.code is not None and last.code >= 400:
        await rset(session)
    await open_transaction(session)
    data = await session.cmd("DATA")
    shown = [first, last, data]
    if data.code == 354:
        end = await session.send(
            b"Subject: smtpbench K-01\r\n\r\nDATA still works\r\n.\r\n", verb="DATA_END", replies=1
        )
        shown.append(end)
        findings.append(check_code(probe, end, 250, reason="plain DATA must still work next to BDAT"))
    else:
        findings.append(check_code(probe, data, 354, reason="a server offering BDAT MUST still support DATA"))
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(Verdict.PASS, "BDAT 5: 250, BDAT 0 LAST: 250; DATA still works", evidence(*shown))
    return result


async def bdat_sequencing(probe: Probe) -> Finding:
    session = await probe.connect()
    findings: list[Finding] = []
    shown: list[Exchange] = []
    # 1. BDAT after BDAT LAST.
    await open_transaction(session)
    done = await _bdat(session, b"Subject: smtpbench K-02\r\n\r\nabc\r\n", last=True)
    if done.code != 250:
        findings.append(Finding(Verdict.ERROR, f"BDAT LAST got {done.outcome}", done.lines()))
    else:
        after = await _bdat(session, b"x", last=True)
        shown.append(after)
        findings.append(check_code(probe, after, 503, reason="BDAT after BDAT LAST"))
    await rset(session)
    # 2. DATA after a BDAT chunk in the same transaction (each case provokes a 503: the connection budget).
    session = await probe.renew(session, errors=1)
    await open_transaction(session)
    await _expect_chunk(session, b"abc")
    data = await session.cmd("DATA")
    shown.append(data)
    if data.code == 354:
        await abandon_data(session)
        return Finding(Verdict.FAIL, "DATA after BDAT in the same transaction got 354 (MUST be 503)", data.lines())
    findings.append(check_code(probe, data, 503, reason="DATA after BDAT in one transaction"))
    await rset(session)
    # 3. DATA after MAIL ... BODY=BINARYMIME (only where BINARYMIME is offered).
    ext = session.extensions or probe.extensions
    if "BINARYMIME" in ext:
        session = await probe.renew(session, errors=1)
        await setup(session, "MAIL FROM:<{sender}> BODY=BINARYMIME")
        await setup(session, "RCPT TO:<{rcpt}>")
        binary = await session.cmd("DATA")
        shown.append(binary)
        if binary.code == 354:
            await abandon_data(session)
            return Finding(Verdict.FAIL, "DATA after BODY=BINARYMIME got 354 (MUST be 503)", binary.lines())
        findings.append(check_code(probe, binary, 503, reason="DATA with BODY=BINARYMIME"))
        await rset(session)
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        cases = "3 cases" if "BINARYMIME" in ext else "2 cases (BINARYMIME not offered)"
        return Finding(Verdict.PASS, f"503 in each of {cases}", evidence(*shown))
    return result


async def _expect_chunk(session: Session, chunk: bytes) -> None:
    ex = await _bdat(session, chunk)
    if ex.code != 250:
        raise CheckAborted(f"setup step BDAT {len(chunk)} got {ex.outcome}")


async def rejected_chunk(probe: Probe) -> Finding:
    session = await probe.connect()
    await setup(session, "MAIL FROM:<{sender}>")
    ex = await session.send(b"BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n", verb="BDAT", replies=1)
    extra = await session.extra(ex)
    probe_noop = await session.cmd("NOOP") if not session.closed else None
    await rset(session)
    await session.close()
    codes = ex.codes
    if extra:
        return Finding(
            Verdict.FAIL, f"the refused BDAT's chunk was executed as commands: replies {ex.outcome}", ex.lines()
        )
    if not codes:
        return Finding(Verdict.FAIL, f"BDAT without RCPT: {ex.outcome}", ex.lines())
    if codes[0] < 400:
        return Finding(Verdict.FAIL, f"BDAT without any recipient got {codes[0]}", ex.lines())
    if probe_noop is None or probe_noop.code != 250:
        return Finding(
            Verdict.FAIL,
            "after the refused BDAT the session is out of sync: NOOP got "
            f"{probe_noop.outcome if probe_noop else 'connection closed'}",
            ex.lines(),
        )
    if codes[0] != 503:
        return Finding(
            Verdict.PASS, f"one refusal ({codes[0]}; 503 is usual), chunk discarded", evidence(ex, probe_noop)
        )
    return Finding(Verdict.PASS, "one 503, the chunk was discarded; NOOP then 250", evidence(ex, probe_noop))


CHECKS = (
    Check("K-01", "CHUNKING: basic BDAT", AREA, Level.MUST, "RFC 3030 2", needs=NEEDS | {"rcpt"}, script=basic_bdat),
    Check(
        "K-02",
        "CHUNKING: BDAT sequencing",
        AREA,
        Level.MUST,
        "RFC 3030 2, 3",
        needs=NEEDS | {"rcpt"},
        script=bdat_sequencing,
    ),
    Check(
        "K-03",
        "CHUNKING: a refused BDAT consumes its chunk",
        AREA,
        Level.MUST,
        "RFC 3030 2",
        needs=NEEDS,
        script=rejected_chunk,
    ),
)
