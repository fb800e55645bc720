"""The data model of the conformance suite: checks, steps, verdicts, results.

A check is a small declarative record (:class:`Check`): catalogue id, title,
area, normative level, RFC section, prerequisites (``needs`` tags), and either
a tuple of steps (:class:`Cmd`, :class:`Send`, :class:`Reconnect`,
:class:`StartTLS`, :class:`Quit`) interpreted by the runner, or a short
``async def`` script over a :class:`~smtpbench.conform.probe.Probe` for the few
checks that need logic.  The accepted replies are data (:class:`Expect`), so
reading a check is reading the catalogue entry.

Nothing here does I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Level(enum.Enum):
    """The strongest normative word behind a check (catalogue "Level")."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"
    INFO = "INFO"
    POLICY = "POLICY"


class Verdict(enum.Enum):
    """The outcome of one check."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    INFO = "info"
    #: The server enforces a limit or a site policy (closing after errors, VRFY disabled...): counted, never failing.
    POLICY = "policy"
    SKIP = "skip"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Severity for combining partial findings: higher is worse."""
        return _RANK[self]


_RANK = {
    Verdict.PASS: 0,
    Verdict.SKIP: 1,
    Verdict.INFO: 2,
    Verdict.POLICY: 3,
    Verdict.WARN: 4,
    Verdict.ERROR: 5,
    Verdict.FAIL: 6,
}

#: The verdict a broken requirement gets by default (catalogue "Default verdicts").
LEVEL_VERDICT: dict[Level, Verdict] = {
    Level.MUST: Verdict.FAIL,
    Level.SHOULD: Verdict.WARN,
    Level.MAY: Verdict.INFO,
    Level.INFO: Verdict.INFO,
    Level.POLICY: Verdict.INFO,
}

#: Prerequisite tags a check may declare (catalogue "Needs").
KNOWN_NEEDS = frozenset({"rcpt", "sink", "creds", "tls", "slow", "hook"})


#: Normative words, strongest first, and the verdict a broken one earns when it binds the server.
KEYWORD_VERDICT: tuple[tuple[str, Verdict], ...] = (
    ("MUST NOT", Verdict.FAIL),
    ("MUST", Verdict.FAIL),
    ("SHALL NOT", Verdict.FAIL),
    ("SHALL", Verdict.FAIL),
    ("REQUIRED", Verdict.FAIL),
    ("SHOULD NOT", Verdict.WARN),
    ("SHOULD", Verdict.WARN),
    ("RECOMMENDED", Verdict.WARN),
    ("MAY", Verdict.INFO),
)


@dataclass(frozen=True)
class Rule:
    """The sentence a verdict rests on: where it is, what it says, and whom it binds (``server``/``client``)."""

    section: str
    sentence: str
    binds: str = "server"
    #: Set only where the RFC states a mandatory procedure without an RFC 2119 word (the sentence says so).
    stated: str = ""

    @property
    def keyword(self) -> str:
        """The strongest upper-case normative word in the sentence (``""`` when it has none)."""
        if self.stated:
            return self.stated
        for word, _ in KEYWORD_VERDICT:
            if re.search(rf"\b{word}\b", self.sentence):
                return word
        return ""

    @property
    def verdict(self) -> Verdict:
        """The most a broken rule may earn: ``fail`` only for a server-side MUST/MUST NOT/SHALL.

        A SHOULD, or a server-side sentence without a keyword, is ``warn``;
        a client-side rule seen on the server, or a MAY, is ``info``.
        """
        if self.binds != "server":
            return Verdict.INFO
        # A server-side statement without an RFC 2119 word ("it will return code 555") is at most a warning.
        return dict(KEYWORD_VERDICT).get(self.keyword, Verdict.WARN)

    def quote(self) -> str:
        """The evidence line quoting the rule."""
        return f'# {self.section} ({self.binds} {self.keyword or "note"}): "{self.sentence}"'


@dataclass(frozen=True)
class Expect:
    """What a reply must be.

    ``codes`` are the accepted reply codes; any other code gets ``otherwise``
    (``None``: the check level's default verdict) with ``reason``.  ``verdicts``
    grades specific codes differently (e.g. ``{502: Verdict.WARN}``).  When the
    server closes the connection or stays silent instead, ``on_close`` applies
    (``None``: same as ``otherwise``).
    """

    codes: frozenset[int]
    reason: str = ""
    otherwise: Verdict | None = None
    verdicts: Mapping[int, Verdict] = field(default_factory=dict)
    on_close: Verdict | None = None
    #: The sentence this step enforces when it is not the check's own.
    rule: Rule | None = None

    def judge(self, code: int) -> Verdict | None:
        """The verdict a reply ``code`` earns: ``PASS``, a graded code's verdict, or ``None`` (use the default)."""
        if code in self.codes:
            return Verdict.PASS
        return self.verdicts.get(code)


def expect(*codes: int, reason: str = "", otherwise: Verdict | None = None, **graded: Verdict) -> Expect:
    """Shorthand: ``expect(250, 251, reason=..., c502=Verdict.WARN)``."""
    verdicts = {int(k.removeprefix("c")): v for k, v in graded.items()}
    return Expect(frozenset(codes), reason, otherwise, verdicts)


@dataclass(frozen=True)
class Cmd:
    """Send ``line`` (one write, CRLF appended unless ``raw``) and judge the reply.

    ``line`` may hold ``{rcpt}``, ``{helo}``, ``{domain}``, ``{foreign}`` and
    ``{sender}`` placeholders, filled from the options at run time.  ``expect``
    ``None`` reads the reply without judging it (setup steps: a setup step
    that does not get a positive reply makes the check ``error``).
    """

    line: str
    expect: Expect | None = None
    raw: bool = False
    verb: str | None = None


@dataclass(frozen=True)
class Send:
    """Write ``data`` in one send and read nothing (e.g. part of a body)."""

    data: str


@dataclass(frozen=True)
class Reconnect:
    """Close the session (QUIT) and open a new one; ``ehlo`` says whether to greet with EHLO."""

    ehlo: bool = True


@dataclass(frozen=True)
class StartTLS:
    """Run STARTTLS and the handshake, then EHLO again; failure makes the check ``error``."""


@dataclass(frozen=True)
class Quit:
    """Send QUIT now and expect 221 (the runner otherwise quits politely at the end)."""


Step = Cmd | Send | Reconnect | StartTLS | Quit


@dataclass
class Finding:
    """A verdict with its reason and the exchange lines that decided it.

    ``rule`` is the sentence this finding enforces when it is not the
    check's own (the runner caps the verdict at what that sentence allows).
    """

    verdict: Verdict
    reason: str
    evidence: list[str] = field(default_factory=list)
    rule: Rule | None = None


#: A check's script; its argument is a :class:`~smtpbench.conform.probe.Probe`, typed
#: loosely here because probe imports this module (no import cycle, tests/test_architecture.py).
Script = Callable[[Any], Awaitable[Finding]]


@dataclass(frozen=True)
class Check:
    """One catalogue check.

    Exactly one of ``steps`` and ``script`` is set.  ``start`` is how each
    session of the check begins: ``"ehlo"`` (greeting + EHLO, the catalogue's
    default), ``"greeting"`` (greeting only) or ``"none"`` (connect only; the
    check reads the greeting itself).  ``needs`` are catalogue tags; ``ext:X``
    means keyword X must be advertised.
    """

    id: str
    title: str
    area: str
    level: Level
    rfc: str
    needs: frozenset[str] = frozenset()
    steps: tuple[Step, ...] = ()
    script: Script | None = None
    start: str = "ehlo"

    def __post_init__(self) -> None:
        if bool(self.steps) == (self.script is not None):
            raise ValueError(f"{self.id}: a check has either steps or a script")
        if self.start not in ("ehlo", "greeting", "none"):
            raise ValueError(f"{self.id}: bad start {self.start!r}")
        for need in self.needs:
            if need not in KNOWN_NEEDS and not need.startswith("ext:"):
                raise ValueError(f"{self.id}: unknown need {need!r}")

    @property
    def failing_verdict(self) -> Verdict:
        """The verdict a broken requirement of this check gets by default."""
        return LEVEL_VERDICT[self.level]


@dataclass
class CheckResult:
    """The recorded outcome of one check, ready for the reports."""

    id: str
    title: str
    area: str
    level: str
    rfc: str
    verdict: Verdict
    reason: str
    evidence: list[str]
    duration_ms: int = 0
    transcript: list[str] = field(default_factory=list)
    #: The sentence the verdict rests on (``None`` for a pass without one).
    rule: Rule | None = None
    #: Why this verdict is waived (``--baseline`` or ``[conform.expect]``), or ``None``.
    waived: str | None = None
    #: The server setting that fixes this finding, when the server is recognised (fix-it hint).
    hint: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON form of this result; ``exchange`` is the whole (bounded, redacted) transcript."""
        out: dict[str, object] = {
            "id": self.id,
            "title": self.title,
            "area": self.area,
            "level": self.level,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "rfc": self.rfc,
            "evidence": list(self.evidence),
            "exchange": bounded(self.transcript),
            "duration_ms": self.duration_ms,
        }
        if self.rule is not None:
            out["rule"] = {
                "section": self.rule.section,
                "sentence": self.rule.sentence,
                "binds": self.rule.binds,
                "keyword": self.rule.keyword,
            }
        if self.waived is not None:
            out["waived"] = self.waived
        if self.hint is not None:
            out["hint"] = self.hint
        return out


def cited(rfc: str) -> str:
    """A check's ``rfc`` field with ``RFC`` in front exactly once (extension checks already name their RFC)."""
    return rfc if rfc.startswith("RFC") else f"RFC {rfc}"


#: At most this many transcript lines per check go into the JSON (the head and the tail are kept).
MAX_EXCHANGE_LINES = 400


def bounded(lines: list[str], limit: int = MAX_EXCHANGE_LINES) -> list[str]:
    """``lines`` unchanged when short; else the head and the tail around a note of how many were left out.

    Guarantees at most ``limit`` lines, the note included.
    """
    if len(lines) <= limit:
        return list(lines)
    tail = (limit - 1) // 2
    head = limit - 1 - tail
    return [*lines[:head], f"… {len(lines) - head - tail} lines left out …", *lines[-tail:]]


def worst(findings: list[Finding]) -> Finding:
    """Combine partial findings: the most severe wins; its evidence comes first, then the others' of equal rank.

    The result carries the rule of the first most-severe finding that names one.
    """
    if not findings:
        return Finding(Verdict.PASS, "all replies as expected")
    top = max(findings, key=lambda f: f.verdict.rank)
    if top.verdict is Verdict.PASS:
        return Finding(
            Verdict.PASS,
            findings[-1].reason if len(findings) == 1 else "all replies as expected",
            [line for f in findings[-1:] for line in f.evidence],
        )
    same = [f for f in findings if f.verdict is top.verdict]
    reason = "; ".join(dict.fromkeys(f.reason for f in same))
    evidence = [line for f in same for line in f.evidence]
    rule = next((f.rule for f in same if f.rule is not None), None)
    return Finding(top.verdict, reason, evidence, rule)
