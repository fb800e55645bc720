"""Small helpers shared by check scripts (not a check module: the registry skips ``_`` names)."""

from __future__ import annotations

import re

from smtpbench.conform.model import Expect, Finding, Verdict, worst
from smtpbench.conform.probe import CheckAborted, Exchange, Probe, Session
from smtpbench.conform.steps import judge

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9-]*[A-Za-z0-9]:[!-Z^-~]+)\]")


def is_domain_or_literal(word: str) -> bool:
    """True for a syntactically valid domain (4.1.2 ``Domain``) or an address literal."""
    return bool(DOMAIN.fullmatch(word) or ADDRESS_LITERAL.fullmatch(word))


def check_code(
    probe: Probe, ex: Exchange, *codes: int, reason: str = "", verdict: Verdict | None = None, **graded: Verdict
) -> Finding:
    """Judge ``ex`` against ``codes`` with the check's default failing verdict (or ``verdict``)."""
    verdicts = {int(k.removeprefix("c")): v for k, v in graded.items()}
    return judge(Expect(frozenset(codes), reason, verdict, verdicts), ex, probe.check.failing_verdict)


async def setup(session: Session, line: str, *codes: int) -> Exchange:
    """Send a setup command that must succeed (``codes``, default 2yz); else abort the check as ``error``."""
    ex = await session.cmd(line)
    ok = ex.code in codes if codes else (ex.code is not None and 200 <= ex.code < 300)
    if not ok:
        raise CheckAborted(f"setup step {ex.command} got {ex.outcome}")
    return ex


async def open_transaction(session: Session, rcpt: bool = True) -> None:
    """``MAIL FROM:<sender>`` and (when ``rcpt``) ``RCPT TO:<--rcpt>``, both required to succeed."""
    await setup(session, "MAIL FROM:<{sender}>")
    if rcpt:
        await setup(session, "RCPT TO:<{rcpt}>")


def passed(reason: str, *exchanges: Exchange) -> Finding:
    """A PASS whose evidence is the given exchanges."""
    return Finding(Verdict.PASS, reason, [line for ex in exchanges for line in ex.lines()])


__all__ = ["worst", "Finding", "Verdict"]
