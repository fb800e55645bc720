"""Small helpers shared by check scripts (not a check module: the registry skips ``_`` names)."""

from __future__ import annotations

import re
import secrets

import trio

from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Expect, Finding, Verdict
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


def evidence(*exchanges: Exchange) -> list[str]:
    """The evidence lines of several exchanges, in order."""
    return [line for ex in exchanges for line in ex.lines()]


def passed(reason: str, *exchanges: Exchange) -> Finding:
    """A PASS whose evidence is the given exchanges."""
    return Finding(Verdict.PASS, reason, evidence(*exchanges))


def client_rule(ex: Exchange, what: str, rule: str) -> Finding:
    """How the server treated a client's breach of client rule ``rule``: accepted is ``info``, refused passes.

    The sentence binds the client, so the server's tolerance is recorded, never graded (issue 7).
    """
    if ex.code is not None and ex.code < 400:
        return Finding(Verdict.INFO, f"{what} accepted ({ex.code}): a client rule", ex.lines(), sentence(rule))
    return passed(f"{what}: {ex.outcome}", ex)


def test_message(probe: Probe, tag: str, body: str = "smtpbench conformance probe\r\n") -> str:
    """A minimal RFC 5322 message (unstuffed, CRLF) whose Subject carries ``tag`` for the oracle to find."""
    o = probe.options
    rcpt = o.rcpt or "postmaster"
    return (
        f"From: <{o.mail_from}>\r\nTo: <{rcpt}>\r\nSubject: smtpbench {tag}\r\n"
        f"Message-ID: <{tag}.{secrets.token_hex(6)}@{o.helo}>\r\n\r\n{body}"
    )


async def start_data(session: Session) -> Exchange:
    """MAIL, RCPT to ``--rcpt`` and DATA, all required to succeed (354)."""
    await open_transaction(session)
    return await setup(session, "DATA", 354)


async def send_body(session: Session, wire: bytes) -> Exchange:
    """Send message data exactly as given (already stuffed and terminated) and read the final reply."""
    return await session.send(wire, verb="DATA_END", replies=1)


def find_delivered(probe: Probe, needle: bytes, before: int) -> list[bytes] | None:
    """Messages delivered since the oracle held ``before`` messages that contain ``needle`` (``None``: no oracle)."""
    msgs = probe.delivered()
    if msgs is None:
        return None
    return [m for m in msgs[before:] if needle in m]


#: The longest a check waits for an accepted message to show up in the oracle (real MTAs deliver from a queue).
DELIVERY_WAIT = 10.0


async def await_delivered(probe: Probe, needle: bytes, before: int) -> list[bytes] | None:
    """Messages delivered since ``before`` that contain ``needle``, waiting (bounded) until one shows up.

    Polls the oracle until a match appears or :data:`DELIVERY_WAIT` (at most
    the reply timeout) passes, then waits ``quiet_wait`` more so that a second
    message of the same transaction (a smuggled one) can show up too.
    ``None`` without an oracle.
    """
    if probe.delivered() is None:
        return None
    with trio.move_on_after(min(DELIVERY_WAIT, probe.options.timeout)):
        while not find_delivered(probe, needle, before):
            await trio.sleep(0.1)
    await trio.sleep(probe.options.quiet_wait)
    return find_delivered(probe, needle, before)


def delivered_count(probe: Probe) -> int:
    """How many messages the oracle holds now (0 without one)."""
    msgs = probe.delivered()
    return 0 if msgs is None else len(msgs)
