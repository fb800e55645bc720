"""The CI gate: ``[conform.expect]`` waivers and ``--baseline previous.json``.

A waiver says "this check is known to give this verdict, for this reason"::

    [conform.expect]
    D-07 = { verdict = "fail", reason = "Postfix 3.7: bare LF accepted, fixed by the 3.9 upgrade" }

A baseline is the JSON report of an earlier run: a failure that was already
there is not new.  :func:`gate` marks every result that a waiver or the
baseline covers as waived, and says what still fails the run: failures
(``fail``/``error``) that nothing covers, and waivers that no longer match
(the check now gives another verdict), so that stale waivers are noticed.

Everything here takes plain data (the profile's table, the JSON document),
so that the profile reader can change without touching the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtpbench.conform.model import CheckResult, Verdict
from smtpbench.errors import ConfigError

#: Verdicts that fail a run unless waived.
FAILING = frozenset({Verdict.FAIL, Verdict.ERROR})
VERDICT_NAMES = ", ".join(v.value for v in Verdict)


@dataclass(frozen=True)
class Waiver:
    """An expected verdict for one check, with the reason it is accepted."""

    check_id: str
    verdict: Verdict
    reason: str


@dataclass
class GateOutcome:
    """What decides the exit code: unwaived failures and stale waivers (both lists of ids)."""

    new_failures: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    waived: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when the run must exit 1."""
        return bool(self.new_failures or self.stale)

    def as_dict(self) -> dict[str, list[str]]:
        """The JSON form (``gate`` in the report)."""
        return {"new_failures": self.new_failures, "stale_waivers": self.stale, "waived": self.waived}


def parse_waivers(table: object, known_ids: set[str], source: str = "conform.expect") -> dict[str, Waiver]:
    """``{ID: {verdict, reason}}`` from a profile's ``[conform.expect]`` table.

    Guarantees: every waiver names a known check id (case-insensitive), a
    verdict name and a non-empty reason; anything else is a one-line
    :class:`ConfigError`.
    """
    if not isinstance(table, dict):
        raise ConfigError("must be a table", key=source, expected='ID = { verdict = "fail", reason = "..." }')
    by_upper = {i.upper(): i for i in known_ids}
    out: dict[str, Waiver] = {}
    for raw_id, entry in table.items():
        key = f"{source}.{raw_id}"
        check_id = by_upper.get(str(raw_id).upper())
        if check_id is None:
            raise ConfigError(f"unknown check id {raw_id!r}", key=key, expected="a check id such as D-07")
        if not isinstance(entry, dict) or set(entry) - {"verdict", "reason"}:
            raise ConfigError("must be { verdict = ..., reason = ... }", key=key)
        verdict_name, reason = entry.get("verdict"), entry.get("reason")
        try:
            verdict = Verdict(str(verdict_name).lower())
        except ValueError:
            raise ConfigError(
                f"unknown verdict {verdict_name!r}", key=f"{key}.verdict", expected=VERDICT_NAMES
            ) from None
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError("a waiver needs a reason", key=f"{key}.reason", expected="a non-empty string")
        out[check_id] = Waiver(check_id, verdict, reason.strip())
    return out


def load_baseline(path: str) -> dict[str, Verdict]:
    """Check id -> verdict from an earlier ``--json`` report; a bad file is a one-line :class:`ConfigError`."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read baseline: {exc.strerror}", key="--baseline") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"baseline is not JSON: {exc}", key="--baseline") from None
    checks = doc.get("checks") if isinstance(doc, dict) else None
    if not isinstance(checks, list):
        raise ConfigError(
            "baseline has no 'checks' list", key="--baseline", expected="a smtpbench conform --json report"
        )
    out: dict[str, Verdict] = {}
    for entry in checks:
        try:
            out[str(entry["id"])] = Verdict(entry["verdict"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"baseline entry {entry!r} has no valid id/verdict", key="--baseline") from None
    return out


def gate(
    results: list[CheckResult], waivers: dict[str, Waiver], baseline: dict[str, Verdict] | None = None
) -> GateOutcome:
    """Mark waived results (``result.waived``) and collect what still fails the run.

    A result is waived when a waiver names its verdict, or when it fails with
    the same verdict as in the baseline.  A waiver whose check ran with
    another verdict is stale.  Checks not run leave their waivers alone.
    """
    outcome = GateOutcome()
    for r in results:
        waiver = waivers.get(r.id)
        if waiver is not None:
            if waiver.verdict is r.verdict:
                r.waived = f"waived: {waiver.reason}"
                outcome.waived.append(r.id)
                continue
            outcome.stale.append(r.id)
            r.waived = None
        if r.verdict in FAILING:
            if baseline is not None and baseline.get(r.id) is r.verdict:
                r.waived = "in the baseline"
                outcome.waived.append(r.id)
            else:
                outcome.new_failures.append(r.id)
    return outcome


def stale_reasons(results: list[CheckResult], waivers: dict[str, Waiver], outcome: GateOutcome) -> list[str]:
    """One line per stale waiver: what it expected and what the check gave now."""
    got = {r.id: r.verdict.value for r in results}
    return [f"{cid}: waiver expects {waivers[cid].verdict.value}, got {got[cid]}" for cid in outcome.stale]


def profile_waivers(conform_section: dict[str, Any], known_ids: set[str]) -> dict[str, Waiver]:
    """The waivers of a profile's ``[conform]`` section (``expect`` key), or none."""
    table = conform_section.get("expect")
    return {} if table is None else parse_waivers(table, known_ids)
