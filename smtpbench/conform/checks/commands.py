"""Section 3: command errors and robustness (X-01..X-06)."""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, passed, setup
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe

AREA = "commands"

UNKNOWN_LINES = ("FOOBAR", "XSMTPBENCH", "", " ")


async def unknown_commands(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for line in UNKNOWN_LINES:
        ex = await session.cmd(line, verb="UNKNOWN")
        if ex.code is None:
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"{ex.command}: {ex.outcome} (every command gets one reply; "
                    "closing because a command was not understood is forbidden)",
                    ex.lines(),
                )
            )
            break
        findings.append(check_code(probe, ex, 500, reason="unrecognised command", c502=Verdict.WARN))
    if not session.closed:
        findings.append(
            check_code(
                probe,
                await session.cmd("NOOP"),
                250,
                verdict=Verdict.FAIL,
                reason="the session must survive unknown commands",
            )
        )
    await session.close()
    return worst(findings)


async def argument_syntax(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for line, codes in (("MAIL FROM:foo@", (501, 553)), ("MAIL FROM:<a@b", (501, 553)), ("MAIL TO:<a@b>", (501,))):
        findings.append(check_code(probe, await session.cmd(line), *codes, reason="syntax error in the argument"))
        if session.closed:
            return worst(findings)
    await setup(session, "RSET", 250)
    await setup(session, "MAIL FROM:<{sender}>", 250)
    findings.append(
        check_code(probe, await session.cmd("MAIL FROM:bad"), 501, 503, reason="a bad MAIL inside a transaction")
    )
    findings.append(
        check_code(
            probe, await session.cmd("RCPT TO:<{rcpt}>"), 250, 251, reason="the transaction must survive a syntax error"
        )
    )
    await session.close()
    return worst(findings)


async def argumentless_commands(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    await setup(session, "MAIL FROM:<{sender}>", 250)
    await setup(session, "RCPT TO:<{rcpt}>", 250, 251)
    ex = await session.cmd("DATA x")
    findings.append(check_code(probe, ex, 501, reason="DATA takes no argument"))
    if ex.code == 354:
        await session.close(polite=False)
        return worst(findings)
    for line, code, reason in (
        ("RSET x", 501, "RSET takes no argument"),
        ("RSET  ", 250, "trailing spaces SHOULD be tolerated"),
        ("NOOP \t", 250, "trailing whitespace SHOULD be tolerated"),
    ):
        findings.append(check_code(probe, await session.cmd(line), code, reason=reason))
        if session.closed:
            return worst(findings)
    ex = await session.cmd("QUIT x")
    if ex.code == 221:
        findings.append(passed("QUIT x: 221 (argument ignored)", ex))
    else:
        findings.append(check_code(probe, ex, 501, reason="QUIT takes no argument"))
    await session.close()
    return worst(findings)


async def line_length(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    limit_line = b"NOOP " + b"x" * (512 - len(b"NOOP ") - 2)
    ex = await session.cmd(limit_line)
    findings.append(
        check_code(probe, ex, 250, reason="a 512-octet command line must be accepted", verdict=Verdict.FAIL)
    )
    for size in (4096, 65536):
        if session.closed:
            break
        ex = await session.cmd(b"NOOP " + b"x" * size)
        extra = await session.extra(ex)
        if ex.code is None:
            findings.append(Finding(Verdict.WARN, f"NOOP + {size} octets: {ex.outcome}", ex.lines()))
        elif extra:
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"NOOP + {size} octets got {len(ex.replies)} replies: the rest of "
                    "the line was read as further commands",
                    ex.lines(),
                )
            )
        else:
            findings.append(
                check_code(probe, ex, 500, 250, reason="an overlong line SHOULD get 500", verdict=Verdict.WARN)
            )
    if not session.closed:
        ex = await session.cmd("NOOP")
        extra = await session.extra(ex)
        if ex.code != 250 or extra:
            findings.append(
                Finding(Verdict.FAIL, f"after the long lines NOOP got {ex.outcome}: out of sync", ex.lines())
            )
        else:
            findings.append(passed("the final NOOP got exactly one 250", ex))
    await session.close()
    return worst(findings)


async def invalid_characters(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    if "SMTPUTF8" not in session.extensions:
        ex = await session.cmd("MAIL FROM:<jörg@example.org>")
        findings.append(
            check_code(
                probe, ex, 500, 501, 553, reason="non-ASCII without SMTPUTF8 SHOULD be refused", verdict=Verdict.WARN
            )
        )
        if session.closed:
            return worst(findings)
        await session.cmd("RSET")
    ex = await session.cmd("EHLO bad_name.example")
    findings.append(
        check_code(probe, ex, 501, reason="'_' is not allowed in a domain (widely tolerated)", verdict=Verdict.WARN)
    )
    if not session.closed:
        await setup(session, "EHLO {helo}", 250)
        ex = await session.cmd("MAIL FROM:<a@bad_name.example>")
        findings.append(
            check_code(
                probe, ex, 501, 553, reason="'_' is not allowed in a domain (widely tolerated)", verdict=Verdict.WARN
            )
        )
    await session.close()
    return worst(findings)


ERROR_STORM = 20


async def error_storm(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    sent = 0
    said_421 = False
    last = None
    for i in range(ERROR_STORM):
        last = await session.cmd(f"XSMTPBENCH{i}", verb="UNKNOWN")
        sent += 1
        await session.extra(last, wait=0)  # a 421 may ride along with the reply
        said_421 = said_421 or 421 in last.codes
        if session.closed or said_421:
            break
    assert last is not None
    note = "with a 421" if said_421 else "without a 421"
    if (session.closed or said_421) and sent == 1:
        findings.append(
            Finding(Verdict.FAIL, f"the server gave up after the first unknown command ({note})", last.lines())
        )
    elif session.closed or said_421:
        findings.append(Finding(Verdict.INFO, f"closed after {sent} unknown commands, {note}", last.lines()))
    else:
        findings.append(passed(f"{ERROR_STORM} unknown commands answered, session kept open", last))
    await session.close()
    session = await probe.connect("greeting")
    ex = await session.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", verb="HTTP", replies=3)
    await session.extra(ex)
    if any(200 <= c < 300 for c in ex.codes):
        findings.append(Finding(Verdict.WARN, f"an HTTP request got a positive reply ({ex.outcome})", ex.lines()))
    else:
        findings.append(Finding(Verdict.PASS, f"HTTP request: {ex.outcome}", ex.lines()))
    await session.close()
    return worst(findings)


CHECKS = (
    Check(
        "X-01", "Unknown, private and empty commands", AREA, Level.SHOULD, "4.2.4, 4.1.5, 3.8", script=unknown_commands
    ),
    Check(
        "X-02",
        "Argument syntax errors; state preserved",
        AREA,
        Level.MUST,
        "4.1.4, 4.3.2",
        needs=frozenset({"rcpt"}),
        script=argument_syntax,
    ),
    Check("X-03", "Argument-less commands", AREA, Level.SHOULD, "4.1.1, 4.3.2", script=argumentless_commands),
    Check("X-04", "Command-line length", AREA, Level.MUST, "4.5.3.1.4, 4.3.2, 4.5.3.1.9", script=line_length),
    Check("X-05", "Invalid characters", AREA, Level.MUST, "2.4, 4.1.2", script=invalid_characters),
    Check("X-06", "Error storms and cross-protocol input", AREA, Level.MUST, "3.8, 7.8", script=error_storm),
)
