"""The interpreter for declarative checks (a tuple of :mod:`~smtpbench.conform.model` steps)."""

from __future__ import annotations

from smtpbench.conform.model import Cmd, Expect, Finding, Quit, Reconnect, Send, StartTLS, Step, Verdict, worst
from smtpbench.conform.probe import CheckAborted, Exchange, Probe, Session


def judge(expect: Expect, ex: Exchange, default: Verdict) -> Finding:
    """Grade one exchange against ``expect``; the evidence is that exchange's lines.

    No reply (close, silence, malformed reply) gets ``expect.on_close``, else
    ``expect.otherwise``, else ``default``; a malformed reply is an ``error``
    here (G-01 judges the malformation itself).
    """
    evidence = ex.lines()
    if ex.reply is None:
        if ex.error:
            return Finding(Verdict.ERROR, f"{ex.command}: {ex.outcome}", evidence)
        verdict = expect.on_close or expect.otherwise or default
        why = f"{ex.command}: {ex.outcome}"
        return Finding(verdict, f"{why} ({expect.reason})" if expect.reason else why, evidence)
    code = ex.reply.code
    graded = expect.judge(code)
    if graded is Verdict.PASS:
        return Finding(Verdict.PASS, f"{ex.command}: {code}", evidence)
    verdict = graded or expect.otherwise or default
    if len(expect.codes) > 20:
        allowed = "anything but " + "/".join(str(c) for c in sorted(set(range(200, 600)) - expect.codes))
    else:
        allowed = "/".join(str(c) for c in sorted(expect.codes))
    why = f"{ex.command}: got {code}, expected {allowed}"
    return Finding(verdict, f"{why} ({expect.reason})" if expect.reason else why, evidence)


async def run_steps(probe: Probe, steps: tuple[Step, ...]) -> Finding:
    """Run a declarative check: one session (as the check's ``start`` says), the steps, then QUIT.

    Stops early when the server closes the connection; the worst finding wins.
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
                findings.append(judge(step.expect, ex, default))
            if ex.code == 354 and step.expect is not None and 354 not in step.expect.codes:
                # An unwanted 354: drop the connection rather than send anything that could be delivered.
                await session.close(polite=False)
                return worst(findings)
            if session.closed:
                break
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
