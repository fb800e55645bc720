"""Conformance reports: terminal (rich), JSON, JUnit XML, per-check transcripts.

Every writer goes through :func:`scrub`, which removes the password (and its
usual base64 forms) from any text, as a last line of defence behind the
per-exchange redaction of AUTH payloads.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from smtpbench import __version__
from smtpbench.conform.evidence import REDACTED
from smtpbench.conform.model import CheckResult, Verdict, cited
from smtpbench.conform.options import ConformOptions
from smtpbench.errors import RunError

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.WARN: "yellow",
    Verdict.INFO: "cyan",
    Verdict.POLICY: "blue",
    Verdict.SKIP: "dim",
    Verdict.ERROR: "magenta",
}


class Scrubber:
    """Replaces secrets in report text."""

    def __init__(self, options: ConformOptions) -> None:
        self.secrets: list[str] = []
        pw = options.password
        if pw:
            user = options.user or ""
            raw = [pw.encode(), f"\0{user}\0{pw}".encode(), f"{user}\0{user}\0{pw}".encode()]
            self.secrets = sorted({pw, *(base64.b64encode(x).decode() for x in raw)}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``<redacted>``."""
        for s in self.secrets:
            text = text.replace(s, REDACTED)
        return text


def summary(results: list[CheckResult]) -> dict[str, int]:
    """Counts per verdict, every verdict present."""
    counts = Counter(r.verdict.value for r in results)
    return {v.value: counts.get(v.value, 0) for v in Verdict}


def to_json(
    results: list[CheckResult],
    options: ConformOptions,
    started_at: datetime,
    server: str | None = None,
    gate: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The JSON report document (schema in the README, "Conformance JSON").

    Each check carries its whole exchange (``exchange``: bounded, secrets
    redacted), the rule its verdict rests on, and ``waived``/``hint`` when set.
    """
    scrub = Scrubber(options)
    checks = []
    for r in results:
        d = r.as_dict()
        d["reason"] = scrub(r.reason)
        d["evidence"] = [scrub(x) for x in r.evidence]
        d["exchange"] = [scrub(x) for x in d["exchange"]]  # type: ignore[attr-defined]
        checks.append(d)
    doc: dict[str, Any] = {
        "tool_version": __version__,
        "target": options.target,
        "started_at": started_at.isoformat(),
        "checks": checks,
        "summary": summary(results),
    }
    if server is not None:
        doc["server"] = server
    if gate is not None:
        doc["gate"] = gate
    return doc


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Write the JSON report; an unwritable path is a :class:`RunError`."""
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror}") from None


_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_text(text: str) -> str:
    return _XML_BAD.sub("?", text)


def to_junit(results: list[CheckResult], options: ConformOptions, started_at: datetime) -> bytes:
    """JUnit XML: one ``<testcase>`` per check, classname = area; fail/error/skip as JUnit expects."""
    scrub = Scrubber(options)
    counts = summary(results)
    suite = ET.Element(
        "testsuite",
        name=f"smtpbench conform {options.target}",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if r.verdict is Verdict.FAIL and not r.waived)),
        errors=str(sum(1 for r in results if r.verdict is Verdict.ERROR and not r.waived)),
        skipped=str(counts["skip"] + sum(1 for r in results if r.waived)),
        timestamp=started_at.isoformat(),
        time=f"{sum(r.duration_ms for r in results) / 1000:.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname=r.area, name=f"{r.id} {r.title}", time=f"{r.duration_ms / 1000:.3f}"
        )
        message = _xml_text(scrub(r.reason))
        body = _xml_text(scrub("\n".join(r.evidence)))
        if r.waived:
            # A waived verdict is a known one: skipped, with the reason, so that CI stays green.
            ET.SubElement(case, "skipped", message=_xml_text(f"{r.verdict.value} ({r.waived}): {scrub(r.reason)}"))
        elif r.verdict is Verdict.FAIL:
            ET.SubElement(case, "failure", message=message, type=r.level).text = body
        elif r.verdict is Verdict.ERROR:
            ET.SubElement(case, "error", message=message).text = body
        elif r.verdict is Verdict.SKIP:
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = _xml_text(f"{r.verdict.value}: {scrub(r.reason)}\n{body}")
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: str, data: bytes) -> None:
    """Write the JUnit report; an unwritable path is a :class:`RunError`."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror}") from None


def write_transcripts(directory: str, results: list[CheckResult], options: ConformOptions) -> None:
    """One ``<id>.txt`` per check with the verdict, the reason and the full exchange."""
    scrub = Scrubber(options)
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for r in results:
            head = [f"{r.id} {r.title} [{r.level}, {cited(r.rfc)}]", f"verdict: {r.verdict.value}: {r.reason}", ""]
            text = "\n".join(scrub(line) for line in head + (r.transcript or ["(no traffic)"])) + "\n"
            (root / f"{r.id}.txt").write_text(text, "utf-8")
    except OSError as exc:
        raise RunError(f"cannot write transcripts to {directory}: {exc.strerror}") from None


def print_terminal(results: list[CheckResult], options: ConformOptions, console: Console) -> None:
    """The table grouped by area, then each failure with its evidence, then the counts."""
    scrub = Scrubber(options)
    table = Table(title=f"smtpbench conform {options.target}", show_lines=False)
    for col in ("id", "title", "level", "verdict", "reason"):
        table.add_column(col, overflow="fold" if col == "reason" else "ellipsis")
    area = None
    for r in results:
        if r.area != area:
            if area is not None:
                table.add_section()
            area = r.area
        shown = r.verdict.value.upper() + (" (waived)" if r.waived else "")
        table.add_row(r.id, r.title, r.level, Text(shown, style=VERDICT_STYLE[r.verdict]), scrub(r.reason))
    if not options.quiet:
        console.print(table)
    for r in results:
        if r.verdict in (Verdict.FAIL, Verdict.ERROR) or (r.verdict is Verdict.WARN and not options.quiet):
            waived = f" [{r.waived}]" if r.waived else ""
            console.print(
                Text(f"\n{r.id} {r.verdict.value.upper()}{waived}: {scrub(r.reason)}", style=VERDICT_STYLE[r.verdict])
            )
            for line in r.evidence:
                console.print(Text(f"    {scrub(line)}"))
            if r.hint:
                console.print(Text(f"    fix: {r.hint}", style="bold"))
    counts = summary(results)
    console.print("\n" + "  ".join(f"{k}: {v}" for k, v in counts.items()))


def now() -> datetime:
    """The current time, timezone-aware (reports use ISO 8601 with offset)."""
    return datetime.now(UTC)
