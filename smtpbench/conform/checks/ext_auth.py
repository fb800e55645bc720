"""Section 12: AUTH (U-01..U-06, RFC 4954).

Credentials come from the run options (``--user`` and the password from
``$SMTPBENCH_PASSWORD`` or ``--password-file``).  Every write that carries a
SASL payload is a secret: reports and transcripts show ``AUTH PLAIN
<redacted>``, never the payload.  U-03 tries wrong passwords for a user name
that does not exist, so that the probe can never lock out a real account.
"""

from __future__ import annotations

import secrets
import time

from smtpbench.conform.checks._util import check_code, evidence, passed
from smtpbench.conform.checks.ext_common import (
    BASE64,
    SUBMISSION_PORTS,
    authenticate,
    cancel_auth,
    handshake,
    mechanisms,
    plain_response,
    plaintext_session,
    rset,
    tls_context,
)
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe, Session

AREA = "auth"
NEEDS = frozenset({"ext:AUTH"})
CLEARTEXT_MECHS = frozenset({"PLAIN", "LOGIN"})
#: Replies that refuse a cleartext password exchange (RFC 4954 4, 6; RFC 8314).
CLEARTEXT_REFUSALS = frozenset({538, 530, 504})
#: Failed attempts a server SHOULD allow before dropping the connection (RFC 4954 9).
MIN_FAILURES = 3
#: Attempts made to find where rate limiting sets in (INFO only), and the time allowed for them.
MAX_ATTEMPTS = 10
ATTEMPTS_BUDGET = 20.0


def _creds(probe: Probe) -> tuple[str, str]:
    o = probe.options
    assert o.user is not None and o.password is not None  # guaranteed by the "creds" need
    return o.user, o.password


def _check_challenge(ex: Exchange, exact_empty: bool = False) -> Finding | None:
    """A finding when a 334 challenge carries anything but base64 (or, for PLAIN, is not exactly ``334 ``)."""
    if ex.reply is None or ex.reply.code != 334:
        return None
    text = ex.reply.lines[0]
    if not BASE64.fullmatch(text):
        return Finding(Verdict.FAIL, f"334 challenge is not base64: {text!r}", ex.lines())
    if exact_empty and text:
        return Finding(
            Verdict.FAIL, f"AUTH PLAIN without initial response must get an empty '334 ', got {text!r}", ex.lines()
        )
    if exact_empty and ex.reply.raw != b"334 \r\n":
        return Finding(Verdict.WARN, "the empty challenge is not exactly '334 ' (a space, then CRLF)", ex.lines())
    return None


async def cleartext(probe: Probe) -> Finding:
    if probe.options.tls == "implicit":
        return Finding(Verdict.SKIP, "the session is TLS from the first octet (--tls): nothing is sent in cleartext")
    findings: list[Finding] = []
    session = await plaintext_session(probe)
    before = mechanisms(session.extensions)
    ehlo_plain = session.exchanges[-1]
    exposed = sorted(before & CLEARTEXT_MECHS)
    if exposed:
        findings.append(Finding(Verdict.WARN, f"{'/'.join(exposed)} advertised without TLS", ehlo_plain.lines()))
    after: set[str] | None = None
    if "STARTTLS" in session.extensions:
        tls = await session.cmd("STARTTLS")
        if tls.code == 220 and await handshake(session, tls_context(probe)) is None:
            await session.ehlo()
            after = mechanisms(session.extensions)
        await session.close()
        session = await plaintext_session(probe)
    user, password = _creds(probe)
    ex = await session.cmd(f"AUTH PLAIN {plain_response(user, password)}", secret=True)
    await cancel_auth(session, ex)
    await session.close()
    if ex.code == 235:
        findings.append(Finding(Verdict.WARN, "a cleartext AUTH PLAIN succeeded (235) without TLS", ex.lines()))
    elif ex.code in CLEARTEXT_REFUSALS:
        findings.append(passed(f"cleartext AUTH PLAIN refused with {ex.code}", ex))
    else:
        findings.append(
            Finding(Verdict.INFO, f"cleartext AUTH PLAIN got {ex.outcome} (expected 538, 530 or 504)", ex.lines())
        )
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        tail = f"; after TLS: AUTH {' '.join(sorted(after))}" if after is not None else ""
        shown = " ".join(sorted(before)) or "none"
        return Finding(
            Verdict.PASS, f"before TLS: AUTH {shown}{tail}; cleartext AUTH PLAIN got {ex.code}", result.evidence
        )
    return result


async def exchange_errors(probe: Probe) -> Finding:
    session = await probe.connect()
    mechs = mechanisms(session.extensions)
    findings: list[Finding] = []
    unknown = await session.cmd("AUTH X-NOPE")
    if unknown.code in (334, 235):
        findings.append(Finding(Verdict.FAIL, f"an unknown mechanism got {unknown.code}", unknown.lines()))
        await cancel_auth(session, unknown)
    else:
        findings.append(check_code(probe, unknown, 504, reason="unknown mechanism", verdict=Verdict.WARN))
    if "PLAIN" in mechs:
        bad = await session.cmd("AUTH PLAIN !!!notbase64")
        findings.append(check_code(probe, bad, 501, reason="undecodable base64 MUST get 501"))
        await cancel_auth(session, bad)
    for mech in [m for m in ("LOGIN", "PLAIN") if m in mechs][:1]:
        start = await session.cmd(f"AUTH {mech}")
        if start.code != 334:
            findings.append(
                Finding(Verdict.FAIL, f"AUTH {mech} without initial response got {start.outcome}", start.lines())
            )
            continue
        if (bad_challenge := _check_challenge(start, exact_empty=mech == "PLAIN")) is not None:
            findings.append(bad_challenge)
        cancel = await session.cmd("*", verb="AUTH_RESPONSE")
        findings.append(check_code(probe, cancel, 501, reason="a '*' cancellation MUST get 501"))
    if "PLAIN" in mechs and "LOGIN" in mechs:
        start = await session.cmd("AUTH PLAIN")
        if start.code != 334:
            findings.append(
                Finding(Verdict.FAIL, f"AUTH PLAIN without initial response got {start.outcome}", start.lines())
            )
        else:
            if (bad_challenge := _check_challenge(start, exact_empty=True)) is not None:
                findings.append(bad_challenge)
            await cancel_auth(session, start)
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        tried = "X-NOPE, bad base64, '*' cancellation" + (", empty PLAIN challenge" if "PLAIN" in mechs else "")
        return Finding(
            Verdict.PASS,
            f"exchange errors answered as required ({tried})",
            [line for s in probe.sessions for ex in s.exchanges for line in ex.lines()][-16:],
        )
    return result


async def _failed_attempt(session: Session, mechs: set[str], user: str) -> Exchange:
    return await authenticate(session, user, f"wrong-{secrets.token_hex(8)}", mechs)


async def bad_credentials(probe: Probe) -> Finding:
    session = await probe.connect()
    mechs = mechanisms(session.extensions)
    if not mechs & CLEARTEXT_MECHS:
        await session.close()
        return Finding(Verdict.SKIP, f"needs PLAIN or LOGIN (offered: {' '.join(sorted(mechs)) or 'none'})")
    user = f"smtpbench-nobody-{secrets.token_hex(4)}"
    findings: list[Finding] = []
    attempts: list[Exchange] = []
    started = time.monotonic()
    limit_note = ""
    for n in range(1, MAX_ATTEMPTS + 1):
        ex = await _failed_attempt(session, mechs, user)
        attempts.append(ex)
        await cancel_auth(session, ex)
        if n <= MIN_FAILURES:
            if session.closed and (ex.code is None or ex.code == 421):
                findings.append(
                    Finding(
                        Verdict.WARN,
                        f"the server disconnected after {sum(a.code == 535 for a in attempts)} failed AUTH "
                        f"(SHOULD allow at least {MIN_FAILURES})",
                        evidence(*attempts),
                    )
                )
                break
            findings.append(
                check_code(probe, ex, 535, reason="invalid credentials SHOULD get 535", verdict=Verdict.WARN)
            )
        elif ex.code != 535 or session.closed:
            limit_note = f"; attempt {n} got {ex.outcome}" + (" and the connection closed" if session.closed else "")
            break
        if session.closed or time.monotonic() - started > ATTEMPTS_BUDGET:
            break
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        if not limit_note:
            limit_note = f"; no rate limiting seen within {len(attempts)} attempts"
        return Finding(
            Verdict.PASS,
            f"535 to each of the first {MIN_FAILURES} wrong passwords{limit_note}",
            evidence(*attempts[:MIN_FAILURES]),
        )
    return result


async def sequence_rules(probe: Probe) -> Finding:
    user, password = _creds(probe)
    session = await probe.connect()
    mechs = mechanisms(session.extensions)
    first = await authenticate(session, user, password, mechs)
    if first.code != 235:
        await cancel_auth(session, first)
        await session.close()
        return Finding(
            Verdict.ERROR, f"could not authenticate with the given credentials: {first.outcome}", first.lines()
        )
    findings: list[Finding] = []
    second = await session.cmd(f"AUTH PLAIN {plain_response(user, password)}", secret=True)
    await cancel_auth(session, second)
    findings.append(check_code(probe, second, 503, reason="AUTH after a successful AUTH"))
    await session.close()
    session = await probe.connect()
    mail = await session.cmd("MAIL FROM:<{sender}>")
    if mail.code == 250:
        inside = await session.cmd(f"AUTH PLAIN {plain_response(user, password)}", secret=True)
        await cancel_auth(session, inside)
        findings.append(check_code(probe, inside, 503, reason="AUTH during a mail transaction"))
    else:
        findings.append(
            Finding(
                Verdict.INFO, f"MAIL before AUTH got {mail.outcome}: AUTH inside a transaction not tried", mail.lines()
            )
        )
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            "235, then 503 to a second AUTH; 503 to AUTH inside a transaction",
            evidence(first, *[ex for s in probe.sessions for ex in s.exchanges if ex.code == 503]),
        )
    return result


async def auth_parameter(probe: Probe) -> Finding:
    session = await probe.connect()
    base = await session.cmd("MAIL FROM:<{sender}>")
    if base.code is None:
        return Finding(Verdict.ERROR, f"MAIL got {base.outcome}", base.lines())
    await rset(session)
    findings: list[Finding] = []
    tried = [base]
    for value in ("<>", "a+2Bb@x"):
        ex = await session.cmd(f"MAIL FROM:<{{sender}}> AUTH={value}")
        tried.append(ex)
        await rset(session)
        if ex.code in (555, 501) and base.code not in (555, 501):
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"AUTH={value} got {ex.code}: the parameter must be accepted (without it: {base.code})",
                    evidence(base, ex),
                )
            )
        elif ex.code != base.code:
            findings.append(
                Finding(Verdict.FAIL, f"AUTH={value} got {ex.outcome}, without it {base.code}", evidence(base, ex))
            )
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS, f"MAIL with AUTH=<> and AUTH=a+2Bb@x: same reply as without ({base.code})", evidence(*tried)
        )
    return result


#: Commands that must never get 530 on an AUTH-required server (RFC 4954 6).
AUTH_EXEMPT = ("EHLO {helo}", "HELO {helo}", "NOOP", "RSET")


async def auth_required_policy(probe: Probe) -> Finding:
    session = await probe.connect()
    mail = await session.cmd("MAIL FROM:<{sender}>")
    if mail.code != 530:
        await rset(session)
        await session.close()
        return passed(
            f"no AUTH requirement in force (MAIL without AUTH got {mail.outcome}); policy not applicable", mail
        )
    findings: list[Finding] = []
    for line in AUTH_EXEMPT:
        ex = await session.cmd(line)
        if ex.code == 530:
            findings.append(Finding(Verdict.WARN, f"{ex.command} got 530: only mail commands need AUTH", ex.lines()))
    probe_auth = await session.cmd(f"AUTH PLAIN {plain_response('smtpbench-nobody', 'wrong')}", secret=True)
    await cancel_auth(session, probe_auth)
    if probe_auth.code == 530:
        findings.append(Finding(Verdict.WARN, "AUTH itself got 530", probe_auth.lines()))
    await session.close()
    o = probe.options
    if o.user and o.password:
        session = await probe.connect()
        done = await authenticate(session, o.user, o.password, mechanisms(session.extensions))
        if done.code == 235:
            relay = [await session.cmd("MAIL FROM:<{sender}>")]
            if relay[0].code == 250:
                relay.append(await session.cmd("RCPT TO:<{foreign}>"))
            # Never DATA to a foreign recipient: the positive control stops at RCPT.
            await rset(session)
            if relay[-1].code not in (250, 251):
                findings.append(
                    Finding(
                        Verdict.WARN,
                        f"after AUTH, relaying was refused: {relay[-1].command} got {relay[-1].outcome}",
                        evidence(*relay),
                    )
                )
        else:
            findings.append(Finding(Verdict.ERROR, f"could not authenticate: {done.outcome}", done.lines()))
        await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        where = f" (port {o.port})" if o.port not in SUBMISSION_PORTS else ""
        return Finding(Verdict.PASS, f"AUTH required{where}: 530 to MAIL only", mail.lines())
    return result


CHECKS = (
    Check(
        "U-01",
        "AUTH: cleartext mechanisms",
        AREA,
        Level.SHOULD,
        "RFC 4954 4, 6; RFC 8314",
        needs=NEEDS | {"creds"},
        script=cleartext,
        start="greeting",
    ),
    Check("U-02", "AUTH: exchange errors", AREA, Level.MUST, "RFC 4954 4", needs=NEEDS, script=exchange_errors),
    Check("U-03", "AUTH: bad credentials", AREA, Level.SHOULD, "RFC 4954 4, 9", needs=NEEDS, script=bad_credentials),
    Check("U-04", "AUTH: 503 rules", AREA, Level.MUST, "RFC 4954 4, 6", needs=NEEDS | {"creds"}, script=sequence_rules),
    Check("U-05", "AUTH: the AUTH= MAIL parameter", AREA, Level.MUST, "RFC 4954 5", needs=NEEDS, script=auth_parameter),
    Check(
        "U-06",
        "Authentication-required policy (submission)",
        AREA,
        Level.SHOULD,
        "RFC 4954 6",
        needs=NEEDS,
        script=auth_required_policy,
    ),
)
