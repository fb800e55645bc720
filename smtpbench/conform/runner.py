"""Running a selection of checks against one server.

Order of a run: one discovery session (greeting + EHLO) learns the advertised
extensions; each check then runs in turn (or a few at a time with
``concurrency``), bounded by the per-check cap; a check whose needs are not
met is ``skip`` with the reason.  Reply hygiene (G-01) runs last because it
grades the replies of every other check.

Guarantees: :func:`run_suite` returns one :class:`CheckResult` per selected
check, in catalogue order, whatever the server does: refused connections,
timeouts, resets and malformed replies become ``error`` verdicts (or the
check's own verdict), never exceptions or hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from smtpbench.conform.hints import apply_hints
from smtpbench.conform.levels import settle
from smtpbench.conform.model import Check, CheckResult, Finding, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.probe import RETRY_DELAYS, CheckAborted, DeliveryOracle, Probe, Session
from smtpbench.conform.steps import run_steps
from smtpbench.net.errors import classify

#: The id of the check that grades every other check's replies.
HYGIENE_ID = "G-01"
#: The per-check cap for checks that need ``slow`` (TO-01 idles up to 30 minutes).
SLOW_CHECK_TIMEOUT = 2400.0


class Discovery:
    """What the discovery session learnt: the greeting, EHLO keywords, or why it failed."""

    def __init__(self) -> None:
        self.extensions: dict[str, str] = {}
        self.greeting_code: int | None = None
        self.error: str | None = None
        #: The greeting and the EHLO reply's first line (how fix-it hints recognise the server).
        self.banner = ""


async def discover(options: ConformOptions, probe_check: Check) -> Discovery:
    """Connect once, read the greeting, EHLO (and STARTTLS when asked); never raises."""
    d = Discovery()
    probe = Probe(options, probe_check)
    probe.retry = False
    try:
        with trio.move_on_after(options.check_timeout) as scope:
            session = await probe.connect("none")
            greet = await session.read_greeting()
            for delay in RETRY_DELAYS if greet.code == 421 else ():
                # A 421 greeting may be a passing connection limit: back off as the checks would. One that
                # lasts means the server does not serve us; every check would spend the same back-off on it.
                await session.close(polite=False)
                await trio.sleep(delay)
                session = await probe.connect("none")
                greet = await session.read_greeting()
                if greet.code != 421:
                    break
            d.greeting_code = greet.code
            d.banner = " ".join(greet.reply.lines) if greet.reply is not None else ""
            if greet.code == 220:
                ex = await session.ehlo()
                if ex.reply is not None:
                    d.banner += " " + ex.reply.lines[0]
                if ex.code == 250:
                    d.extensions = dict(session.extensions)
                    if options.tls == "starttls":
                        await session.starttls()
                        d.extensions = dict(session.extensions)
                else:
                    d.error = f"EHLO got {ex.outcome}"
            else:
                retried = (
                    f" on {len(RETRY_DELAYS) + 1} connections (back-off 0.5 s to 4 s)" if greet.code == 421 else ""
                )
                d.error = f"greeting was {greet.outcome}{retried}"
        if scope.cancelled_caught:
            d.error = "discovery session timed out"
    except CheckAborted as exc:
        d.error = str(exc)
    finally:
        with trio.CancelScope(shield=True):
            await probe.aclose()
    return d


def unmet_needs(check: Check, options: ConformOptions, extensions: dict[str, str]) -> str | None:
    """Why ``check`` cannot run here (``None`` when it can)."""
    for need in sorted(check.needs):
        if need == "rcpt" and not options.rcpt:
            return "needs a local recipient (--rcpt)"
        if need == "creds" and not (options.user and options.password):
            return "needs credentials (--user and SMTPBENCH_PASSWORD or --password-file)"
        if need == "slow" and not options.slow:
            return "slow check (takes minutes): enable with --slow"
        if need == "hook":
            return "needs a hook to stop/restart the server, which smtpbench does not have"
        if need == "tls" and "STARTTLS" not in extensions and options.tls != "implicit":
            return "STARTTLS is not advertised"
        if need.startswith("ext:"):
            keyword = need[4:].upper()
            if keyword not in extensions:
                return f"{keyword} is not advertised"
    return None


class Runner:
    """Runs checks and remembers every session, so that G-01 can grade all replies."""

    def __init__(self, options: ConformOptions, oracle: DeliveryOracle | None = None) -> None:
        self.options = options
        self.oracle = oracle
        self.extensions: dict[str, str] = {}
        #: The server's greeting and EHLO line, and the name fix-it hints recognise it by.
        self.banner = ""
        self.server: str | None = None
        #: Every session of every check run so far (G-01's material).
        self.history: list[Session] = []

    async def run_check(self, check: Check) -> CheckResult:
        """Run one check to a result; the per-check cap turns a stuck check into ``error``."""
        started = time.monotonic()
        probe = Probe(self.options, check, self.extensions, self.oracle)
        probe.history = self.history
        try:
            # Slow checks (TO-01) wait minutes by design: the per-check cap must not cut them short.
            cap = self.options.check_timeout
            if "slow" in check.needs:
                cap = max(cap, SLOW_CHECK_TIMEOUT)
            with trio.move_on_after(cap) as scope:
                if check.script is not None:
                    finding = await check.script(probe)
                else:
                    finding = await run_steps(probe, check.steps)
            if scope.cancelled_caught:
                finding = Finding(Verdict.ERROR, f"check did not finish within {cap:g}s")
        except CheckAborted as exc:
            finding = Finding(Verdict.ERROR, str(exc))
        except Exception as exc:  # a server may break a check in ways we did not foresee: record, go on
            finding = Finding(Verdict.ERROR, f"{classify(exc)}: {type(exc).__name__}: {exc}")
        finally:
            with trio.CancelScope(shield=True):
                await probe.aclose()
        self.history.extend(probe.sessions)
        if not finding.evidence and finding.verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR, Verdict.POLICY):
            finding.evidence = probe.transcript()[-12:]
        finding = settle(check.id, finding)
        if probe.limits:
            # The server limited connections; the check still ran to its end, only slower.
            finding.reason += f" (connection limit met: {'; '.join(probe.limits[:3])})"
        return CheckResult(
            id=check.id,
            title=check.title,
            area=check.area,
            level=check.level.value,
            rfc=check.rfc,
            verdict=finding.verdict,
            reason=finding.reason,
            evidence=finding.evidence,
            duration_ms=int((time.monotonic() - started) * 1000),
            transcript=probe.transcript(),
            rule=finding.rule,
        )

    def skipped(self, check: Check, reason: str, verdict: Verdict = Verdict.SKIP) -> CheckResult:
        """A result for a check that did not run."""
        return CheckResult(check.id, check.title, check.area, check.level.value, check.rfc, verdict, reason, [])

    async def run(
        self, checks: list[Check], on_result: Callable[[CheckResult], None] | None = None
    ) -> list[CheckResult]:
        """Run ``checks`` (G-01 last); return results in the order given."""
        results: dict[str, CheckResult] = {}

        def done(r: CheckResult) -> None:
            results[r.id] = r
            if on_result is not None:
                on_result(r)

        if not checks:
            return []
        disc = await discover(self.options, checks[0])
        if disc.error is not None and disc.greeting_code in (None, 421):
            # Nothing to talk to (no greeting, or 421 through every back-off): every check is an error, same reason.
            for c in checks:
                done(self.skipped(c, disc.error, Verdict.ERROR))
            return [results[c.id] for c in checks]
        self.extensions = disc.extensions
        self.banner = disc.banner
        ordered = [c for c in checks if c.id != HYGIENE_ID] + [c for c in checks if c.id == HYGIENE_ID]
        limiter = trio.CapacityLimiter(max(1, self.options.concurrency))

        async def one(c: Check) -> None:
            async with limiter:
                why = unmet_needs(c, self.options, self.extensions)
                done(self.skipped(c, why) if why else await self.run_check(c))

        body = [c for c in ordered if c.id != HYGIENE_ID]
        if self.options.concurrency <= 1:
            for c in body:
                await one(c)
        else:
            async with trio.open_nursery() as nursery:
                for c in body:
                    nursery.start_soon(one, c)
        for c in ordered:
            if c.id == HYGIENE_ID:
                await one(c)
        final = [results[c.id] for c in checks]
        self.server = apply_hints(final, self.banner)
        return final


def run_suite(
    options: ConformOptions,
    checks: list[Check],
    oracle: DeliveryOracle | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Synchronous entry point: run ``checks`` against ``options.host:port`` and return the results."""
    runner = Runner(options, oracle)
    return trio.run(runner.run, checks, on_result)
