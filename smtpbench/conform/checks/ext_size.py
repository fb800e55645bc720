"""Section 13: SIZE (Z-01..Z-03, RFC 1870)."""

from __future__ import annotations

import re

from smtpbench.conform.checks._util import check_code, evidence, setup
from smtpbench.conform.checks.ext_common import abandon_data, rset
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe, Session

AREA = "size"
NEEDS = frozenset({"ext:SIZE"})
#: Z-03 sends limit+1 octets; above this limit the check is skipped rather than push that much data.
MAX_OVERSIZE = 32 * 1024 * 1024
#: Bytes per write while streaming the over-size body.
CHUNK = 256 * 1024
#: Declared size in Z-03: small, so that only the actual data crosses the limit.
SMALL_DECLARED = 1000


def advertised_limit(extensions: dict[str, str]) -> int | None:
    """The fixed maximum of ``SIZE <n>``; ``None`` without a number, or for 0 (no fixed maximum)."""
    value = extensions.get("SIZE", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return None


async def _mail_size(session: Session, value: str) -> Exchange:
    ex = await session.cmd(f"MAIL FROM:<{{sender}}> SIZE={value}" if value else "MAIL FROM:<{sender}> SIZE")
    if ex.code is not None and ex.code < 400:
        await rset(session)
    return ex


async def declared_size(probe: Probe) -> Finding:
    session = await probe.connect()
    keyword = session.extensions.get("SIZE", probe.extensions.get("SIZE", ""))
    ehlo = next((ex for ex in session.exchanges if ex.verb == "EHLO"), None)
    if keyword and not re.fullmatch(r"\d+", keyword.strip()):
        await session.close()
        return Finding(
            Verdict.FAIL, f"SIZE keyword parameter {keyword!r} is not a decimal number", ehlo.lines() if ehlo else []
        )
    limit = advertised_limit(session.extensions or probe.extensions)
    if limit is None:
        await session.close()
        return Finding(
            Verdict.PASS, "SIZE advertised without a fixed maximum: nothing to exceed", ehlo.lines() if ehlo else []
        )
    at = await _mail_size(session, str(limit))
    over = await _mail_size(session, str(limit + 1))
    await session.close()
    findings = [check_code(probe, at, 250, reason=f"SIZE={limit} is within the advertised limit")]
    if over.code == 452:
        findings.append(
            Finding(
                Verdict.INFO,
                f"SIZE={limit + 1} got 452: a temporary storage condition, not the "
                "permanent refusal the limit calls for",
                over.lines(),
            )
        )
    elif over.code is not None and over.code < 400:
        findings.append(
            Finding(Verdict.FAIL, f"SIZE={limit + 1} (over the advertised {limit}) got {over.code}", over.lines())
        )
    else:
        findings.append(check_code(probe, over, 552, reason="over the fixed maximum", verdict=Verdict.WARN))
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            f"SIZE {limit}: SIZE={limit} got {at.code}, SIZE={limit + 1} got {over.code}",
            evidence(at, over),
        )
    return result


#: Malformed SIZE values (``size-value ::= 1*20DIGIT``); ``""`` means the bare keyword.
MALFORMED = ("abc", "1" + "0" * 20, "")


async def malformed_size(probe: Probe) -> Finding:
    session = await probe.connect()
    tried = []
    for value in MALFORMED:
        # Each malformed value provokes an error: stay within the connection budget (README "Verdicts").
        session = await probe.renew(session, errors=1)
        tried.append(await _mail_size(session, value))
    await session.close()
    # 555 is what 4.1.1.11 names for a parameter the server "cannot implement": as good as 501 here.
    findings = [check_code(probe, ex, 501, 555, reason="malformed SIZE value") for ex in tried]
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(Verdict.PASS, "501 to SIZE=abc, a 21-digit SIZE and a bare SIZE", evidence(*tried))
    return result


def oversize_body(octets: int) -> bytes:
    """A message of exactly ``octets`` octets (headers included), in CRLF lines that never start with a dot."""
    head = b"Subject: smtpbench Z-03 over-size message\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    remaining = octets - len(head)
    body = line * (remaining // len(line))
    rest = remaining - len(body)
    if rest >= 3:
        body += b"y" * (rest - 2) + b"\r\n"
    elif rest:
        # 1 or 2 octets cannot form a CRLF line of their own: lengthen the first line instead.
        body = b"x" * rest + body
    return head + body


async def oversize_data(probe: Probe) -> Finding:
    session = await probe.connect()
    limit = advertised_limit(session.extensions or probe.extensions)
    if limit is None:
        await session.close()
        return Finding(Verdict.SKIP, "SIZE advertised without a fixed maximum: no limit to exceed")
    if limit + 1 > MAX_OVERSIZE:
        await session.close()
        return Finding(Verdict.SKIP, f"the limit ({limit} octets) is above the {MAX_OVERSIZE} octets this check sends")
    await setup(session, f"MAIL FROM:<{{sender}}> SIZE={min(SMALL_DECLARED, limit)}")
    await setup(session, "RCPT TO:<{rcpt}>")
    await setup(session, "DATA", 354)
    body = oversize_body(limit + 1)
    early: list[Exchange] = []
    for start in range(0, len(body), CHUNK):
        ex = await session.send(body[start : start + CHUNK], verb="DATA_BODY")
        if session.closed:
            break
        # A reply while the data is still flowing means the server stopped reading it as data.
        if await session.extra(ex, wait=0.01):
            early.append(ex)
            break
    if early or session.closed:
        await abandon_data(session)
        what = "replied before the end of data" if early else "closed the connection during the data"
        return Finding(
            Verdict.WARN,
            f"over-size data ({limit + 1} octets, limit {limit}): the server {what}",
            evidence(*early) or session.transcript()[-6:],
        )
    last = session.exchanges[-1]
    extra = await session.extra(last)
    if extra:
        await abandon_data(session)
        return Finding(Verdict.WARN, f"over-size data: {extra[0].code} before the end of data", last.lines())
    end = await session.send(b".\r\n", verb="DATA_END", replies=1)
    after = await session.cmd("NOOP") if not session.closed else None
    await session.close()
    findings = [check_code(probe, end, 552, reason=f"{limit + 1} octets exceed the limit of {limit}")]
    if after is None or after.code != 250:
        findings.append(
            Finding(
                Verdict.WARN,
                "the session is not usable after the refusal: NOOP got "
                f"{after.outcome if after else 'connection closed'}",
                evidence(end),
            )
        )
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        assert after is not None
        return Finding(
            Verdict.PASS, f"{limit + 1} octets: 552 after the end of data, then NOOP 250", evidence(end, after)
        )
    return result


CHECKS = (
    Check(
        "Z-01",
        "SIZE: advertisement and declared size",
        AREA,
        Level.MUST,
        "RFC 1870 3, 4",
        needs=NEEDS,
        script=declared_size,
    ),
    Check("Z-02", "SIZE: malformed values", AREA, Level.SHOULD, "RFC 1870 3", needs=NEEDS, script=malformed_size),
    Check(
        "Z-03",
        "SIZE: data larger than the limit",
        AREA,
        Level.SHOULD,
        "4.5.3.1.9; RFC 1870",
        needs=NEEDS | {"rcpt"},
        script=oversize_data,
    ),
)
