"""Verdict levels from the sentence: the rules table and the one place verdicts are capped.

``rules.toml`` (beside this module) is the single source of truth for the
sentence each check enforces and whom it binds.  :func:`settle` is applied by
the runner to every finding: a ``fail`` stands only when the sentence behind it
is a server-side MUST / MUST NOT / SHALL, and then the sentence is quoted in
the evidence; a SHOULD caps it at ``warn``; a client-side rule caps it at
``info``.  Checks therefore cannot over-grade by accident.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from smtpbench.conform.model import Finding, Rule, Verdict


@dataclass(frozen=True)
class CheckText:
    """What ``--explain`` prints: the rule, what the check sends and why it matters."""

    rule: Rule
    sends: str
    why: str


def _rule(entry: dict[str, str], name: str) -> Rule:
    binds = entry.get("binds", "server")
    if binds not in ("server", "client"):
        raise ValueError(f"rules.toml {name}: binds must be server or client, not {binds!r}")
    return Rule(entry["section"], entry["sentence"], binds, entry.get("keyword", ""))


@cache
def _table() -> tuple[dict[str, CheckText], dict[str, Rule]]:
    data = tomllib.loads(resources.files("smtpbench.conform").joinpath("rules.toml").read_text("utf-8"))
    checks = {
        cid: CheckText(_rule(e, cid), e.get("sends", ""), e.get("why", "")) for cid, e in data.get("check", {}).items()
    }
    sentences = {name: _rule(e, name) for name, e in data.get("sentence", {}).items()}
    return checks, sentences


def check_text(check_id: str) -> CheckText | None:
    """The rule, ``sends`` and ``why`` of a check, or ``None`` when ``rules.toml`` has no entry."""
    return _table()[0].get(check_id)


def rule_of(check_id: str) -> Rule | None:
    """The sentence a check enforces (``None`` when it has none)."""
    text = check_text(check_id)
    return text.rule if text else None


def sentence(name: str) -> Rule:
    """A named further rule (``[sentence.NAME]``); an unknown name is a programming error (KeyError)."""
    return _table()[1][name]


def settle(check_id: str, finding: Finding) -> Finding:
    """Cap ``finding`` at what its sentence allows and quote the sentence in its evidence.

    Guarantees: a returned ``fail`` rests on a server-side MUST/MUST NOT/SHALL
    whose quote is the first evidence line; a ``fail`` without such a rule
    becomes ``warn`` (SHOULD), ``info`` (client rule, MAY) with the reason
    saying so.  Other verdicts keep their level and get the quote when
    they are ``warn``/``info``/``policy``.
    """
    rule = finding.rule or rule_of(check_id)
    finding.rule = rule
    if rule is None:
        if finding.verdict is Verdict.FAIL:
            finding.verdict = Verdict.WARN
            finding.reason += " (no binding sentence recorded: graded warn)"
        return finding
    if finding.verdict is Verdict.FAIL and rule.verdict is not Verdict.FAIL:
        finding.verdict = rule.verdict
        who = "the client" if rule.binds == "client" else "the server"
        finding.reason += f" ({rule.section} binds {who} with {rule.keyword or 'no MUST'}: {finding.verdict.value})"
    if finding.verdict in (Verdict.FAIL, Verdict.WARN, Verdict.INFO, Verdict.POLICY):
        quote = rule.quote()
        if quote not in finding.evidence:
            finding.evidence.insert(0, quote)
    return finding
