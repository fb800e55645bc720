"""Section 17: legacy commands (LG-01: SEND, SOML, SAML, TURN, ETRN; RFC 5321 F.1, F.6; RFC 821; RFC 1985)."""

from __future__ import annotations

from smtpbench.conform.checks._util import evidence
from smtpbench.conform.checks.ext_common import rset
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Exchange, Probe
from smtpbench.conform.steps import server_words

AREA = "legacy"
#: Replies meaning "not implemented" / "not recognised".
NOT_IMPLEMENTED = frozenset({502, 500})
#: RFC 1985 replies to ETRN with a node name.
ETRN_REPLIES = frozenset({250, 251, 252, 253, 458, 459})


def _unadvertised(ex: Exchange, verb: str) -> Finding:
    if ex.code in NOT_IMPLEMENTED:
        return Finding(Verdict.PASS, f"{verb}: {ex.code}", ex.lines())
    if ex.code is not None and ex.code < 400:
        return Finding(
            Verdict.WARN, f"{ex.command} got {ex.code} although {verb} is not advertised in EHLO", ex.lines()
        )
    if ex.code is not None:
        # A refusal by site policy ("550 Administrative prohibition") is not a protocol fault.
        return Finding(Verdict.POLICY, f'{ex.command}: refused by the site ("{server_words(ex)}")', ex.lines())
    return Finding(
        Verdict.WARN, f"{ex.command} got {ex.outcome}; an unadvertised command gets 502 (or 500)", ex.lines()
    )


async def legacy_commands(probe: Probe) -> Finding:
    session = await probe.connect()
    ext = session.extensions or probe.extensions
    findings: list[Finding] = []
    shown: list[Exchange] = []
    for verb in ("SEND", "SOML", "SAML"):
        session = await probe.renew(session, errors=1)
        ex = await session.cmd(f"{verb} FROM:<{{sender}}>")
        shown.append(ex)
        if ex.code is not None and ex.code < 400:
            await rset(session)
        if verb not in ext:
            findings.append(_unadvertised(ex, verb))
    # A fresh session per group, so that a server's limit on unknown commands does not decide the verdict.
    await session.close()
    session = await probe.connect()
    with_node = await session.cmd("ETRN example.org")
    bare = await session.cmd("ETRN")
    shown += [with_node, bare]
    if "ETRN" in ext:
        if with_node.code not in ETRN_REPLIES:
            findings.append(
                Finding(
                    Verdict.WARN,
                    f"ETRN example.org got {with_node.outcome} (RFC 1985: 250-253, 458, 459)",
                    with_node.lines(),
                )
            )
        if bare.code not in (500, 501):
            findings.append(
                Finding(Verdict.WARN, f"ETRN without a node got {bare.outcome}, expected 500/501", bare.lines())
            )
    else:
        findings += [_unadvertised(with_node, "ETRN"), _unadvertised(bare, "ETRN")]
    await session.close()
    # TURN alone: a server that obeys it reverses the roles, and the session is over.
    session = await probe.connect()
    turn = await session.cmd("TURN")
    shown.append(turn)
    if turn.code == 250:
        await session.close(polite=False)
        findings.append(
            Finding(
                Verdict.WARN,
                "TURN got 250 without authentication: the server would hand its queue "
                "to an unauthenticated client (security finding)",
                turn.lines(),
            )
        )
    elif "TURN" not in ext:
        findings.append(_unadvertised(turn, "TURN"))
    await session.close()
    result = worst(findings)
    if result.verdict is Verdict.PASS:
        codes = ", ".join(f"{ex.command.split(' ')[0]} {ex.outcome}" for ex in shown)
        return Finding(Verdict.PASS, f"legacy commands refused as not implemented ({codes})", evidence(*shown))
    return result


CHECKS = (
    Check(
        "LG-01",
        "Legacy commands: SEND, SOML, SAML, TURN, ETRN",
        AREA,
        Level.MUST,
        "F.1, F.6; RFC 821 4.3; RFC 1985",
        script=legacy_commands,
    ),
)
