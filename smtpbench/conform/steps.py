"""The interpreter for declarative checks (a tuple of :mod:`~smtpbench.conform.model` steps)."""

from __future__ import annotations

import re

from smtpbench.conform.model import Cmd, Expect, Finding, Quit, Reconnect, Send, StartTLS, Step, Verdict, worst
from smtpbench.conform.probe import NONMAIL_BUDGET, CheckAborted, Exchange, Probe, Session

#: Reply text that announces a limit or a site policy rather than a protocol judgement.
LIMIT_TEXT = re.compile(r"too many|rate limit|limit exceeded|try again later|administrative prohibition", re.I)


def server_words(ex: Exchange) -> str:
    """The server's own reply text for ``ex`` (first reply, lines joined), for policy reasons."""
    if ex.reply is None:
        return ex.outcome
    return f"{ex.reply.code} " + " / ".join(ex.reply.lines).strip()


def policy_reply(ex: Exchange) -> Finding | None:
    """A ``policy`` finding when ``ex`` got a 421 or a 5yz that announces a limit ("too many ..."), else ``None``."""
    reply = ex.reply
    if reply is None:
        return None
    text = " ".join(reply.lines)
    if reply.code == 421 or (reply.code >= 500 and LIMIT_TEXT.search(text)):
        return Finding(Verdict.POLICY, f'{ex.command}: server limit or policy: "{server_words(ex)}"', ex.lines())
    return None


def limit_closure(session: Session, ex: Exchange) -> Finding | None:
    """A ``policy`` finding when the server closed ``session`` after earlier errors or non-mail commands.

    Only a close on the first bad command stays the check's finding (3.8, 7.8:
    "an appropriate number" of errors may end a session; one may not).
    """
    if ex.reply is not None or not session.closed:
        # A reply is judged by the step's expectation (judge() knows which codes are fine).
        return None
    before = session.errors
    # Two or more earlier error replies, or more non-mail commands than the budget: a limit.  A close
    # after only one error is a close on the first bad command, which stays the check's own finding.
    if before >= 2 or session.nonmail > NONMAIL_BUDGET:
        why = f"the server closed after {before} error replies and {session.nonmail} non-mail commands"
        return Finding(Verdict.POLICY, f"{ex.command}: {why} (a limit; see X-06)", ex.lines())
    return None


def judge(expect: Expect, ex: Exchange, default: Verdict) -> Finding:
    """Grade one exchange against ``expect``; the evidence is that exchange's lines.

    No reply (close, silence, malformed reply) gets ``expect.on_close``, else
    ``expect.otherwise``, else ``default``; a malformed reply is an ``error``
    here (G-01 judges the malformation itself).
    """
    evidence = ex.lines()
    code_ok = ex.reply is not None and expect.judge(ex.reply.code) is Verdict.PASS
    if not code_ok and (policy := policy_reply(ex)) is not None:
        return policy
    if ex.reply is None:
        if ex.error:
            return Finding(Verdict.ERROR, f"{ex.command}: {ex.outcome}", evidence)
        verdict = expect.on_close or expect.otherwise or default
        why = f"{ex.command}: {ex.outcome}"
        return Finding(verdict, f"{why} ({expect.reason})" if expect.reason else why, evidence, expect.rule)
    code = ex.reply.code
    graded = expect.judge(code)
    if graded is Verdict.PASS:
        return Finding(Verdict.PASS, f"{ex.command}: {code}", evidence, expect.rule)
    verdict = graded or expect.otherwise or default
    if len(expect.codes) > 20:
        allowed = "anything but " + "/".join(str(c) for c in sorted(set(range(200, 600)) - expect.codes))
    else:
        allowed = "/".join(str(c) for c in sorted(expect.codes))
    why = f"{ex.command}: got {code}, expected {allowed}"
    return Finding(verdict, f"{why} ({expect.reason})" if expect.reason else why, evidence, expect.rule)


async def run_steps(probe: Probe, steps: tuple[Step, ...]) -> Finding:
    """Run a declarative check: one session (as the check's ``start`` says), the steps, then QUIT.

    When the server closes the session after a limit (earlier errors, a 421,
    "too many ..."), the closure is recorded as ``policy`` and the remaining
    steps resume on a new connection; a close on the first bad command stays
    the step's finding.  The worst finding wins.
    """
    default = probe.check.failing_verdict
    session: Session = await probe.connect()
    findings: list[Finding] = []
    for step in steps:
        if isinstance(step, Cmd):
            ex = await session.cmd(step.line, raw=step.raw, verb=step.verb)
            if step.expect is None:
                if ex.reply is None or ex.reply.code >= 400:
                    raise CheckAborted(f"setup step {ex.command} got {ex.outcome}")
            else:
                closure = limit_closure(session, ex)
                findings.append(closure if closure is not None else judge(step.expect, ex, default))
            if ex.code == 354 and step.expect is not None and 354 not in step.expect.codes:
                # An unwanted 354: drop the connection rather than send anything that could be delivered.
                await session.close(polite=False)
                return worst(findings)
            if session.closed:
                if not findings or findings[-1].verdict is not Verdict.POLICY:
                    break
                session = await probe.connect()
        elif isinstance(step, Send):
            await session.send(probe.fill(step.data).encode("utf-8"))
        elif isinstance(step, Reconnect):
            await session.close()
            session = await probe.connect("ehlo" if step.ehlo else "greeting")
        elif isinstance(step, StartTLS):
            await session.starttls()
        elif isinstance(step, Quit):
            ex = await session.quit()
            findings.append(judge(Expect(frozenset({221}), "QUIT must get 221"), ex, default))
            break
    await session.close()
    return worst(findings)
