"""Reply hygiene (G-01), graded over every reply of every session.

Three sources, all already recorded by the sessions: ``Reply.defects`` from
the shared parser (bare LF, overlong lines, control octets, a missing SP on
the last line); malformed replies the parser refused; and reply codes outside
the command's table (:func:`smtpbench.protocol.tables.allowed_codes`, the
same table the load engine counts "unexpected" replies with).  Replies that
arrive when none was due are flagged too, except a 421 before a close (3.8)
and a late reply after a read that timed out (the probe closed that session
as out of step and judged only what it had seen).

Grading: a malformed reply is ``fail`` (4.2: a MUST); a well-formed code of
the right class that the tables do not list is ``warn`` (4.3.1 lets clients
fall back on the first digit), reported once per (command, code) pair.
Exchanges of checks that judge their own reply codes (:data:`OWNERS`) are
left to those checks: one behaviour, one verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from smtpbench.conform.evidence import render
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Finding, Verdict
from smtpbench.conform.probe import Exchange, Session
from smtpbench.protocol.tables import COMMANDS, allowed_codes

#: The one defect the catalogue softens to WARN (the server SHOULD send the SP).
SOFT_DEFECTS = frozenset({"last line lacks the SP after the code"})
MAX_EXAMPLES = 6
#: A reply line over 512 octets (often an echoed long argument): 4.5.3.1 says objects larger than the
#: minimum sizes "SHOULD be avoided", so it is a warning, not a broken MUST.
LONG_LINE = "line of "
#: Checks that grade the reply codes they provoke themselves; G-01 judges only their replies' form.
OWNERS = frozenset(
    {
        "SEC-01",
        "V-01",
        "V-02",
        "V-03",
        "LG-01",
        "E-02",
        "E-04",
        "X-01",
        "X-06",
        "R-02",
        "S-01",
        "A-03",
        "U-02",
        "U-03",
        # The smuggling and bare-line-end probes: replies to smuggled commands are theirs to judge.
        "D-05",
        "D-06",
        "D-07",
        "D-08",
    }
)


def _owner(session: Session) -> str:
    return session.probe.check.id


def judge_hygiene(sessions: Iterable[Session]) -> Finding:
    """Grade all replies of ``sessions``: FAIL for a MUST broken, WARN for soft defects, else PASS.

    The evidence names each offending reply with the check that provoked it
    (the first few of them; the reason gives the totals).
    """
    hard: list[tuple[str, list[str]]] = []
    soft: list[tuple[str, list[str]]] = []
    replies = 0
    seen_pairs: set[tuple[str, int]] = set()
    for s in sessions:
        owned = _owner(s) in OWNERS
        for ex in s.exchanges:
            replies += len(ex.replies)
            for problem, verdict, pair in _exchange_problems(ex, owned):
                if pair is not None:
                    if pair in seen_pairs:
                        continue
                    seen_pairs.add(pair)
                (hard if verdict is Verdict.FAIL else soft).append((f"[{_owner(s)}] {problem}", ex.lines()))
        for prev, reply in s.unsolicited:
            if reply.code == 421 or (prev is not None and prev.timed_out):
                continue
            after = f" after {prev.command}" if prev is not None else ""
            lines = (prev.lines() if prev is not None else []) + render("S: ", reply.raw)
            hard.append((f"[{_owner(s)}] unsolicited or extra reply {reply.code}{after}", lines))
    if not hard and not soft:
        return Finding(Verdict.PASS, f"{replies} replies, all well-formed and listed for their command")
    bad = hard or soft
    evidence: list[str] = []
    for problem, lines in bad[:MAX_EXAMPLES]:
        evidence.append(f"# {problem}")
        evidence.extend(lines[-6:])
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    finding = Finding(Verdict.FAIL if hard else Verdict.WARN, f"{bad[0][0]}{more}", evidence)
    if not hard:
        finding.rule = sentence("listed-codes")
    return finding


def _what(ex: Exchange) -> str:
    return "the greeting" if ex.verb == "CONNECT" else ex.command


def _exchange_problems(ex: Exchange, owned: bool) -> list[tuple[str, Verdict, tuple[str, int] | None]]:
    out: list[tuple[str, Verdict, tuple[str, int] | None]] = []
    if ex.error:
        out.append((f"malformed reply to {_what(ex)}: {ex.error}", Verdict.FAIL, None))
    for reply in ex.replies:
        for defect in reply.defects:
            soft = defect in SOFT_DEFECTS or defect.startswith(LONG_LINE)
            verdict = Verdict.WARN if soft else Verdict.FAIL
            out.append((f"reply {reply.code} to {_what(ex)}: {defect}", verdict, None))
        if not owned and ex.verb in COMMANDS and reply.code not in allowed_codes(ex.verb):
            listed = "/".join(str(c) for c in sorted(allowed_codes(ex.verb)))
            out.append(
                (
                    f"reply {reply.code} to {ex.verb} is not a listed reply ({listed})",
                    Verdict.WARN,
                    (ex.verb, reply.code),
                )
            )
    return out
