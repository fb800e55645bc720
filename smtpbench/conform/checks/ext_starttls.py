"""Section 11: STARTTLS (T-01..T-06, RFC 3207).

These checks always start in plaintext (even with ``--starttls``, which only
decides how the *other* checks' sessions begin) and do the handshake
themselves, so that a failed handshake is a finding, not an aborted check.
TLS is opportunistic, as between MTAs: the certificate is verified only with
``--ca-file``; its problems are reported once, by T-07.
"""

from __future__ import annotations

from smtpbench.conform.checks._util import check_code, evidence, passed
from smtpbench.conform.checks.ext_common import (
    SUBMISSION_PORTS,
    abandon_data,
    handshake,
    plain_response,
    plaintext_session,
    rset,
    starttls_session,
    tls_context,
    tls_version,
)
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe, Session
from smtpbench.protocol.state import parse_ehlo

AREA = "starttls"
#: No ``ext:STARTTLS`` need: each check looks at the plaintext EHLO itself (see ``starttls_session``).
NEEDS: frozenset[str] = frozenset()

#: Injected after STARTTLS in the same write (CVE-2011-0411 probe variants).
INJECTED = ("NOOP", "RSET", "MAIL FROM:<x@y>")


async def _start(session: Session, probe: Probe) -> tuple[Exchange, str | None]:
    """STARTTLS then the handshake; returns the STARTTLS exchange and why TLS failed (``None`` when it worked)."""
    ex = await session.cmd("STARTTLS")
    if ex.code != 220:
        return ex, f"STARTTLS got {ex.outcome}"
    failure = await handshake(session, tls_context(probe))
    return ex, (f"TLS handshake failed: {failure}" if failure else None)


async def handshake_check(probe: Probe) -> Finding:
    session = await starttls_session(probe)
    if isinstance(session, Finding):
        return session
    ex, failure = await _start(session, probe)
    if failure is not None:
        if ex.code == 220 and not probe.options.insecure:
            return await _unverified(probe, failure, ex)
        return Finding(Verdict.FAIL, failure, ex.lines())
    version = tls_version(session)
    ehlo = await session.ehlo()
    await session.close()
    if ehlo.code != 250:
        return Finding(
            Verdict.FAIL, f"{version} established, but EHLO inside TLS got {ehlo.outcome}", evidence(ex, ehlo)
        )
    if probe.options.ca_file and not probe.options.insecure:
        verified = "certificate verified"
    else:
        verified = "certificate not verified (opportunistic; see T-07)"
    return passed(f"220, then a {version} handshake; {verified}", ex, ehlo)


async def _unverified(probe: Probe, failure: str, first: Exchange) -> Finding:
    # The handshake failed with the system trust store: tell a bad certificate from a broken TLS stack.
    session = await plaintext_session(probe)
    ex = await session.cmd("STARTTLS")
    if ex.code != 220:
        return Finding(Verdict.FAIL, failure, first.lines())
    again = await handshake(session, tls_context(probe, verify=False))
    if again is not None:
        return Finding(Verdict.FAIL, f"TLS handshake failed even without verification: {again}", ex.lines())
    version = tls_version(session)
    await session.close()
    return Finding(
        Verdict.PASS,
        f"{version} handshake completes; the certificate does not validate against --ca-file (see T-07)",
        first.lines(),
    )


async def parameters_refused(probe: Probe) -> Finding:
    session = await starttls_session(probe)
    if isinstance(session, Finding):
        return session
    ex = await session.cmd("STARTTLS now")
    if ex.code == 220:
        # The server now expects a ClientHello: nothing more can be said on this connection.
        await abandon_data(session)
        return Finding(
            Verdict.FAIL, "STARTTLS with a parameter got 220 (parameters must be refused with 501)", ex.lines()
        )
    await session.close()
    return check_code(probe, ex, 501, reason="STARTTLS takes no parameters")


async def state_after_tls(probe: Probe) -> Finding:
    session = await starttls_session(probe)
    if isinstance(session, Finding):
        return session
    ex, failure = await _start(session, probe)
    if failure is not None:
        # No TLS session to look into: T-01 owns the handshake failure.
        return Finding(Verdict.INFO, f"not tested: {failure} (see T-01)", ex.lines())
    findings: list[Finding] = []
    mail = await session.cmd("MAIL FROM:<{sender}>")
    if mail.code is not None and mail.code < 400:
        await rset(session)
        if await _mail_without_ehlo(probe):
            # The server takes MAIL before EHLO on any session (S-01's behaviour): a 250 here shows no kept state.
            findings.append(passed("MAIL after TLS got 250, as on any session without EHLO (see S-01)", mail))
        else:
            findings.append(
                check_code(probe, mail, 503, reason="pre-TLS EHLO must be forgotten: MAIL needs a new EHLO")
            )
    else:
        findings.append(check_code(probe, mail, 503, reason="pre-TLS EHLO must be forgotten: MAIL needs a new EHLO"))
    ehlo = await session.cmd("EHLO {helo}")
    if ehlo.code != 250:
        findings.append(Finding(Verdict.FAIL, f"EHLO inside TLS got {ehlo.outcome}", ehlo.lines()))
    else:
        assert ehlo.reply is not None
        if "STARTTLS" in parse_ehlo(ehlo.reply):
            findings.append(Finding(Verdict.FAIL, "STARTTLS is advertised again inside TLS", ehlo.lines()))
        again = await session.cmd("STARTTLS")
        if again.code == 220:
            await abandon_data(session)
            findings.append(Finding(Verdict.FAIL, "a second STARTTLS inside TLS got 220", again.lines()))
        elif again.code is None or again.code < 500:
            findings.append(
                Finding(Verdict.FAIL, f"a second STARTTLS got {again.outcome}, expected 5yz (503/554)", again.lines())
            )
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            "state discarded after TLS: MAIL 503, EHLO without STARTTLS, second STARTTLS 5yz",
            evidence(mail, ehlo),
        )
    return result


async def _mail_without_ehlo(probe: Probe) -> bool:
    """True when a fresh plaintext session that never said EHLO gets a 2yz to MAIL."""
    session = await probe.connect("greeting")
    ex = await session.cmd("MAIL FROM:<{sender}>")
    await session.close()
    return ex.code is not None and 200 <= ex.code < 300


async def injection(probe: Probe) -> Finding:
    first = await starttls_session(probe)
    if isinstance(first, Finding):
        return first
    await first.close()
    findings: list[Finding] = []
    for injected in INJECTED:
        findings.append(await _inject(probe, injected))
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS, "plaintext pipelined after STARTTLS (NOOP, RSET, MAIL) was discarded", result.evidence
        )
    return result


async def _inject(probe: Probe, injected: str) -> Finding:
    session = await plaintext_session(probe)
    data = f"STARTTLS\r\n{injected}\r\n".encode()
    ex = await session.send(data, verb="STARTTLS", replies=1)
    if ex.code is not None and ex.code >= 400:
        # The server refused STARTTLS because input followed it in the same write: that is the defence.
        await session.close(polite=False)
        return passed(f"STARTTLS with pipelined {injected} refused ({ex.code}): nothing carried into TLS", ex)
    if ex.code != 220:
        await session.close(polite=False)
        return Finding(Verdict.INFO, f"STARTTLS (+{injected}) got {ex.outcome}: not tested", ex.lines())
    failure = await handshake(session, tls_context(probe))
    if failure is not None:
        return Finding(Verdict.INFO, f"not tested: TLS handshake failed: {failure} (see T-01)", ex.lines())
    ehlo = await session.cmd("EHLO {helo}", verb="TLS_FIRST")
    await session.extra(ehlo)
    await session.close(polite=False)
    replies = ehlo.replies
    if len(replies) > 1 or (replies and replies[0].code != 250):
        return Finding(
            Verdict.FAIL,
            f"vulnerable to STARTTLS command injection (CVE-2011-0411): the injected {injected} was answered "
            f"inside TLS ({ehlo.outcome} to one EHLO)",
            evidence(ex, ehlo),
        )
    if not replies:
        return Finding(
            Verdict.FAIL, f"no reply to EHLO inside TLS after injected {injected}: {ehlo.outcome}", evidence(ex, ehlo)
        )
    return passed(f"injected {injected}: first TLS reply answers EHLO", ex, ehlo)


async def no_tls_required(probe: Probe) -> Finding:
    session = await starttls_session(probe)
    if isinstance(session, Finding):
        return session
    mail = await session.cmd("MAIL FROM:<{sender}>")
    exchanges = [mail]
    if mail.code == 250:
        exchanges.append(await session.cmd("RCPT TO:<{rcpt}>"))
    await rset(session)
    await session.close()
    refused = [ex for ex in exchanges if ex.code != 250]
    if not refused:
        return passed("MAIL and RCPT accepted without TLS", *exchanges)
    bad = refused[0]
    if bad.code == 530:
        if probe.options.port in SUBMISSION_PORTS:
            return Finding(
                Verdict.INFO,
                f"TLS required on port {probe.options.port} (allowed for submission)",
                evidence(*exchanges),
            )
        return Finding(
            Verdict.FAIL, f"{bad.command} got 530 without TLS: a public MX must not require TLS", evidence(*exchanges)
        )
    return Finding(
        Verdict.ERROR, f"{bad.command} got {bad.outcome}: cannot tell whether TLS is required", evidence(*exchanges)
    )


#: Commands a TLS-required server must still accept before STARTTLS (RFC 3207 4).
STILL_ALLOWED = ("NOOP", "EHLO {helo}")


async def tls_required_policy(probe: Probe) -> Finding:
    session = await starttls_session(probe)
    if isinstance(session, Finding):
        return session
    mail = await session.cmd("MAIL FROM:<{sender}>")
    if mail.code == 454:
        await session.close()
        return Finding(
            Verdict.INFO, "454 before TLS: TLS is temporarily unavailable (recorded, not graded)", mail.lines()
        )
    if mail.code != 530:
        await rset(session)
        await session.close()
        return passed(
            f"no TLS requirement in force (MAIL before STARTTLS got {mail.outcome}); policy not applicable", mail
        )
    findings: list[Finding] = []
    rcpt = await session.cmd("RCPT TO:<{rcpt}>")
    vrfy = await session.cmd("VRFY postmaster")
    auth = await session.cmd(f"AUTH PLAIN {plain_response('smtpbench', 'not-a-password')}", secret=True)
    for ex in (rcpt, vrfy, auth):
        findings.append(
            check_code(probe, ex, 530, reason="a TLS-required server answers 530 before STARTTLS", verdict=Verdict.WARN)
        )
    for line in STILL_ALLOWED:
        ex = await session.cmd(line)
        findings.append(check_code(probe, ex, 250, reason="must still work before STARTTLS", verdict=Verdict.WARN))
    tls = await session.cmd("STARTTLS")
    findings.append(check_code(probe, tls, 220, reason="STARTTLS must be offered", verdict=Verdict.WARN))
    if tls.code == 220:
        failure = await handshake(session, tls_context(probe, verify=False))
        if failure is None:
            quit_ex = await session.quit()
            findings.append(check_code(probe, quit_ex, 221, verdict=Verdict.WARN))
    else:
        quit_ex = await session.quit()
        findings.append(check_code(probe, quit_ex, 221, verdict=Verdict.WARN))
    await session.close(polite=False)
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            "TLS required: 530 to MAIL/RCPT/VRFY/AUTH; NOOP, EHLO, STARTTLS, QUIT work",
            evidence(mail, rcpt, vrfy, auth),
        )
    return result


CHECKS = (
    Check(
        "T-01",
        "STARTTLS handshake",
        AREA,
        Level.MUST,
        "RFC 3207 4",
        needs=NEEDS,
        script=handshake_check,
        start="greeting",
    ),
    Check(
        "T-02",
        "STARTTLS parameters are refused",
        AREA,
        Level.MUST,
        "RFC 3207 4",
        needs=NEEDS,
        script=parameters_refused,
        start="greeting",
    ),
    Check(
        "T-03",
        "State after TLS",
        AREA,
        Level.MUST,
        "RFC 3207 4.2",
        needs=NEEDS,
        script=state_after_tls,
        start="greeting",
    ),
    Check(
        "T-04",
        "STARTTLS command injection (CVE-2011-0411)",
        AREA,
        Level.MUST,
        "RFC 3207 4.2; CVE-2011-0411",
        needs=NEEDS,
        script=injection,
        start="greeting",
    ),
    Check(
        "T-05",
        "A public MX must not require TLS",
        AREA,
        Level.MUST,
        "RFC 3207 4",
        needs=NEEDS | {"rcpt"},
        script=no_tls_required,
        start="greeting",
    ),
    Check(
        "T-06",
        "TLS-required policy (submission)",
        AREA,
        Level.SHOULD,
        "RFC 3207 4",
        needs=NEEDS,
        script=tls_required_policy,
        start="greeting",
    ),
)
