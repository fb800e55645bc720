"""Section 18: open relay (SEC-01; RFC 5321 3.6.2, 7.9).

The 16 MAIL/RCPT combinations of nmap's ``smtp-open-relay`` script, sent
without authentication.  ``{ext}`` is the domain of ``--foreign-rcpt``.  Where
nmap's sender is ``user@[server IP]``, this check uses ``user@{local}`` (the
local mail domain, else the server's name): many servers refuse address-literal
senders by policy, which would leave the relay vector untested.  The
probe stops at RCPT and resets: it never sends DATA, so a misconfigured server
is found without ever relaying a message through it.
"""

from __future__ import annotations

from smtpbench.conform.checks._util import evidence
from smtpbench.conform.checks.ext_common import rset, server_name
from smtpbench.conform.model import Check, Finding, Level, Verdict
from smtpbench.conform.probe import Exchange, Probe, Session

AREA = "relay"
#: Local part used as the sender's in the vectors.
FROM_LOCAL = "smtpbench"
#: The refusals RFC 5321 asks for when declining to relay (550/554 5.7.1), or 530 (authentication required).
PREFERRED_REFUSALS = frozenset({550, 554, 530})

#: (MAIL path, RCPT path) templates: nmap scripts/smtp-open-relay.nse, in its order.
VECTORS: tuple[tuple[str, str], ...] = (
    ("", "{to}@{ext}"),
    ("{from}@{ext}", "{to}@{ext}"),
    ("{from}@{srv}", "{to}@{ext}"),
    ("{from}@{local}", "{to}@{ext}"),
    ("{from}@{local}", "{to}%{ext}@[{ip}]"),
    ("{from}@{local}", "{to}%{ext}@{srv}"),
    ("{from}@{local}", '"{to}@{ext}"'),
    ("{from}@{local}", '"{to}%{ext}"'),
    ("{from}@{local}", "{to}@{ext}@[{ip}]"),
    ("{from}@{local}", '"{to}@{ext}"@[{ip}]'),
    ("{from}@{local}", "{to}@{ext}@{srv}"),
    ("{from}@{local}", "@[{ip}]:{to}@{ext}"),
    ("{from}@{local}", "@{srv}:{to}@{ext}"),
    ("{from}@{local}", "{ext}!{to}"),
    ("{from}@{local}", "{ext}!{to}@[{ip}]"),
    ("{from}@{local}", "{ext}!{to}@{srv}"),
)


def expand(template: str, values: dict[str, str]) -> str:
    """Fill ``{from}``, ``{to}``, ``{ext}``, ``{srv}`` and ``{ip}`` in a vector template."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _local_domain(probe: Probe, session: Session) -> str:
    domain = probe.options.domain
    return domain if not domain.startswith("[") else (server_name(session) or probe.options.host)


def _values(probe: Probe, session: Session) -> dict[str, str]:
    to, _, ext = probe.options.foreign_rcpt.rpartition("@")
    ip = session.peer_ip()
    return {
        "from": FROM_LOCAL,
        "to": to or "relay-test",
        "ext": ext,
        "srv": server_name(session) or probe.options.host,
        "local": _local_domain(probe, session),
        "ip": f"IPv6:{ip}" if ":" in ip else ip,
    }


async def open_relay(probe: Probe) -> Finding:
    session = await probe.connect()
    values = _values(probe, session)
    accepted: list[Exchange] = []
    temporary: list[Exchange] = []
    untested: list[Exchange] = []
    other_refusals: set[int] = set()
    refused = 0
    for mail_t, rcpt_t in VECTORS:
        # MAIL, RCPT, RSET per vector: RSET counts as a non-mail command for some servers' limits.
        session = await probe.renew(session, errors=1, nonmail=1)
        mail = await session.cmd(f"MAIL FROM:<{expand(mail_t, values)}>")
        if mail.code == 530:
            # Authentication required before any transaction: nothing can be relayed unauthenticated.
            refused += 1
            await rset(session)
            continue
        if mail.code != 250:
            untested.append(mail)
            await rset(session)
            continue
        rcpt = await session.cmd(f"RCPT TO:<{expand(rcpt_t, values)}>")
        # Whatever the answer, the transaction ends here: never DATA to a foreign recipient.
        await rset(session)
        if rcpt.code in (250, 251):
            accepted.append(rcpt)
        elif rcpt.code is None or rcpt.code < 500:
            temporary.append(rcpt)
        else:
            refused += 1
            if rcpt.code not in PREFERRED_REFUSALS:
                other_refusals.add(rcpt.code)
    await session.close()
    if accepted:
        return Finding(
            Verdict.WARN,
            f"suspect open relay: {len(accepted)} of {len(VECTORS)} foreign recipients accepted without "
            f"authentication (first: {accepted[0].command}); confirm with a mailbox at {values['ext']}",
            evidence(*accepted[:4]),
        )
    if temporary or refused == 0:
        what = [f"{len(temporary)} RCPT deferred or unanswered"] if temporary else []
        what += [f"{len(untested)} vectors' MAIL refused"] if untested else []
        return Finding(
            Verdict.INFO,
            f"relay not confirmed either way: {', '.join(what) or 'nothing tested'}",
            evidence(*(temporary or untested)[:4]),
        )
    note = f" (also {', '.join(str(c) for c in sorted(other_refusals))}; 550 is usual)" if other_refusals else ""
    skipped = f"; {len(untested)} vectors' MAIL refused" if untested else ""
    return Finding(
        Verdict.PASS,
        f"{refused} foreign recipients refused{note}{skipped}",
        [line for s in probe.sessions for ex in s.exchanges[-8:] for line in ex.lines()][-12:],
    )


CHECKS = (Check("SEC-01", "Open relay", AREA, Level.POLICY, "3.6.2, 7.9; RFC 2505", script=open_relay),)
