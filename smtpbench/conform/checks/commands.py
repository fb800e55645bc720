"""Section 3: command errors and robustness (X-01..X-06)."""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, client_rule, passed, setup
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe
from smtpbench.conform.steps import limit_closure, server_words

AREA = "commands"

UNKNOWN_LINES = ("FOOBAR", "XSMTPBENCH", "", " ")


async def unknown_commands(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for line in UNKNOWN_LINES:
        # At most two unknown commands per connection: limits such as Exim's smtp_max_unknown_commands
        # (3) are X-06's subject, not this check's.
        session = await probe.renew(session, errors=1)
        ex = await session.cmd(line, verb="UNKNOWN")
        if ex.code is None:
            closure = limit_closure(session, ex)
            findings.append(
                closure
                or Finding(
                    Verdict.FAIL,
                    f"{ex.command}: {ex.outcome} (every command gets one reply; "
                    "closing because a command was not understood is forbidden)",
                    ex.lines(),
                    rule=sentence("exactly-one-reply"),
                )
            )
            continue
        findings.append(check_code(probe, ex, 500, reason="unrecognised command", c502=Verdict.WARN))
    session = await probe.renew(session, errors=0)
    findings.append(
        check_code(
            probe,
            await session.cmd("NOOP"),
            250,
            reason="the session must survive unknown commands",
        )
    )
    await session.close()
    return worst(findings)


async def argument_syntax(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for line, codes in (("MAIL FROM:foo@", (501, 553)), ("MAIL FROM:<a@b", (501, 553)), ("MAIL TO:<a@b>", (501, 500))):
        session = await probe.renew(session, errors=1)
        ex = await session.cmd(line)
        findings.append(
            limit_closure(session, ex) or check_code(probe, ex, *codes, reason="syntax error in the argument")
        )
        if ex.code is not None and ex.code < 400:
            await session.cmd("RSET")
    # The transaction part on its own connection: one error only, so that no limit can interfere.
    await session.close()
    session = await probe.connect()
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
    ):
        # NOOP with an argument is R-02's; X-03 does not grade it again.
        findings.append(check_code(probe, await session.cmd(line), code, reason=reason))
        if session.closed:
            return worst(findings)
    # DATA x and RSET x spent the connection's error budget: QUIT x, a third possible error, gets its own.
    session = await probe.renew(session, errors=1)
    ex = await session.cmd("QUIT x")
    if ex.code == 221:
        findings.append(passed("QUIT x: 221 (argument ignored)", ex))
    else:
        findings.append(check_code(probe, ex, 501, reason="QUIT takes no argument"))
    await session.close()
    return worst(findings)


#: The 512-octet probe rides on VRFY (a base command whose argument is free text), compared with a short VRFY:
#: NOOP with an argument is R-02's behaviour, and some servers refuse any NOOP argument.
PROBE_VERB = b"VRFY "


async def line_length(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    short = await session.cmd(b"VRFY postmaster")
    limit_line = PROBE_VERB + b"x" * (512 - len(PROBE_VERB) - 2)
    ex = await session.cmd(limit_line)
    if ex.code is None:
        findings.append(Finding(Verdict.FAIL, f"512-octet VRFY: {ex.outcome}", ex.lines()))
    elif ex.code == 500 and short.code != 500:
        findings.append(
            Finding(
                Verdict.FAIL,
                f"a 512-octet command line got 500 (a short VRFY got {short.outcome}): refused as too long",
                short.lines() + ex.lines(),
            )
        )
    else:
        findings.append(passed(f"512-octet VRFY: {ex.code} (short VRFY: {short.outcome})", short, ex))
    for size in (4096, 65536):
        # Each overlong line on its own connection, followed by NOOP: one error per connection at most.
        await session.close()
        session = await probe.connect()
        ex = await session.cmd(PROBE_VERB + b"x" * size)
        extra = await session.extra(ex)
        if ex.code is None:
            findings.append(Finding(Verdict.WARN, f"VRFY + {size} octets: {ex.outcome}", ex.lines()))
            continue
        if extra:
            # The client broke the 512-octet limit first; answering the pieces of an illegal line is a
            # SHOULD-level matter (4.5.3.1.9: "may be reported"), not the exactly-one-reply MUST.
            findings.append(
                Finding(
                    Verdict.WARN,
                    f"VRFY + {size} octets got {len(ex.replies)} replies: the rest of "
                    "the overlong line was read as further commands",
                    ex.lines(),
                    rule=sentence("limits-exceeded"),
                )
            )
            # More pieces of the line may still be answered: the session is out of step, so no QUIT on it.
            await session.close(polite=False)
            continue
        # 4.5.3.1.9: exceeding a limit "may be reported" (500 Line too long): what must hold is one reply
        # and a session still in step.
        if session.closed or await session.wait_closed(0.05):
            # Closing on the first bad command of a connection (3.8 allows it only after "an appropriate number").
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"the server closed the connection after its {ex.code} to the first overlong line",
                    [*ex.lines(), "!: connection closed by server"],
                    rule=sentence("no-close-before-quit"),
                )
            )
            continue
        noop = await session.cmd("NOOP")
        more = await session.extra(noop)
        if noop.code != 250 or more:
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"after the {size}-octet line NOOP got {noop.outcome}: out of sync",
                    noop.lines(),
                    rule=sentence("exactly-one-reply"),
                )
            )
        else:
            findings.append(
                passed(f"{size}-octet line: one reply ({ex.code}); the NOOP after it got one 250", ex, noop)
            )
    await session.close()
    return worst(findings)


async def invalid_characters(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    if "SMTPUTF8" not in session.extensions:
        ex = await session.cmd("MAIL FROM:<jörg@example.org>")
        findings.append(client_rule(ex, "non-ASCII sender without SMTPUTF8", "utf8-needs-parameter"))
        if not session.closed:
            await session.cmd("RSET")
    msg = "'_' is not allowed in a domain (widely tolerated)"
    if not session.closed:
        ex = await session.cmd("MAIL FROM:<a@bad_name.example>")
        findings.append(check_code(probe, ex, 501, 553, reason=msg, verdict=Verdict.WARN))
    await session.close()
    # The EHLO-argument probe on its own un-greeted connection: a second EHLO is E-03's subject.
    session = await probe.connect("greeting")
    ex = await session.cmd("EHLO bad_name.example")
    findings.append(check_code(probe, ex, 501, reason=msg, verdict=Verdict.WARN))
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
        words = " | ".join(f"{r.code} {' '.join(r.lines)}" for r in last.replies) or "no reply"
        findings.append(
            Finding(Verdict.POLICY, f'closed after {sent} unknown commands, {note} (server: "{words}")', last.lines())
        )
    else:
        findings.append(passed(f"{ERROR_STORM} unknown commands answered, session kept open", last))
    await session.close()
    session = await probe.connect("greeting")
    ex = await session.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", verb="HTTP", replies=3)
    await session.extra(ex)
    if ex.codes and ex.codes[0] == 221 and session.closed:
        # 221 and a close is a deliberate disconnect (Postfix: smtpd_forbidden_commands), not acceptance.
        findings.append(
            Finding(Verdict.POLICY, f'an HTTP request ended the session ("{server_words(ex)}")', ex.lines())
        )
    elif any(200 <= c < 300 for c in ex.codes):
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
