"""How ``smtpbench compare`` prints: a coloured table on a terminal, plain text elsewhere, or JSON."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from smtpbench.report.compare import Cell, Row, Verdict, unit_of
from smtpbench.report.rundata import RunData

MARKS = {"same": "=", "noise": "~", "better": "better", "worse": "WORSE", "": ""}
STYLES = {"same": "dim", "noise": "dim", "better": "green", "worse": "bold red", "": ""}
LEGEND = "~ = within noise: |change| <= the larger interval-to-interval spread (1.4826 x MAD) of the two runs (README, compare)"


def fmt_value(value: float | None, unit: str) -> str:
    """A value in its display unit (latencies in ms)."""
    if value is None:
        return "-"
    if unit == "us":
        return f"{value / 1000:.3f}ms"
    if unit == "per_s":
        return f"{value:,.1f}/s"
    return f"{value:,.0f}"


def fmt_change(cell: Cell, unit: str) -> str:
    """``+1.200ms +5.9%`` (empty when one side is missing)."""
    if cell.delta is None:
        return ""
    d = fmt_value(abs(cell.delta), unit)
    sign = "-" if cell.delta < 0 else "+"
    if cell.delta_pct is None:
        pct = ""
    elif math.isinf(cell.delta_pct):
        pct = " (new)"
    else:
        pct = f" {cell.delta_pct:+.1f}%"
    return f"{sign}{d}{pct}"


def _left(column: int) -> bool:
    """Metric names and verdict marks are left-aligned, numbers right-aligned."""
    return column == 0 or (column >= 2 and (column - 2) % 3 == 2)


def _cells(cell: Cell, unit: str) -> list[tuple[str, str]]:
    mark = "~ (within noise)" if cell.verdict == "noise" else MARKS[cell.verdict]
    style = STYLES[cell.verdict]
    return [(fmt_value(cell.value, unit), ""), (fmt_change(cell, unit), style), (mark, style)]


def print_compare(
    rows: list[Row], base: RunData, news: list[RunData], verdicts: list[Verdict], console: Console | None = None
) -> None:
    """The comparison table, then one line per ``--fail-if`` judged.

    On a terminal: colours (red worse, green better, dim within noise); elsewhere plain aligned text.
    """
    console = console or Console(highlight=False)
    headers = ["metric", f"base {base.name}"]
    for n in news:
        headers += [f"new {n.name}", "change", ""]
    body = [
        [(r.metric, ""), (fmt_value(r.base, r.unit), "")] + [x for c in r.cells for x in _cells(c, r.unit)]
        for r in rows
        if r.base is not None or any(c.value is not None for c in r.cells)
    ]
    lines: list[str] = []
    if console.is_terminal:
        table = Table(show_edge=False, box=None, pad_edge=False)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if _left(i) else "right", no_wrap=True)
        for line in body:
            table.add_row(*[f"[{style}]{text}[/]" if style and text else text for text, style in line])
        console.print(table)
    else:
        widths = [max(len(h), *(len(line[i][0]) for line in body)) for i, h in enumerate(headers)]

        def row(texts: list[str]) -> str:
            return "  ".join(
                t.ljust(w) if _left(i) else t.rjust(w) for i, (t, w) in enumerate(zip(texts, widths, strict=True))
            )

        lines += [row(headers).rstrip()] + [row([t for t, _ in line]).rstrip() for line in body]
    lines.append(LEGEND)
    for v in verdicts:
        where = f"{v.run.name}: {v.condition.metric} {fmt_change(v.cell, _unit(rows, v.condition.metric))}".rstrip()
        if v.failed:
            lines.append(f"FAIL {v.condition.text} ({where})")
        elif v.holds:
            lines.append(f"pass {v.condition.text} ({where}; holds but within noise)")
        else:
            lines.append(f"pass {v.condition.text} ({where})")
    for text in lines:
        if console.is_terminal and text.startswith("FAIL"):
            console.print(f"[bold red]{text}[/]", markup=True)
        elif console.is_terminal:
            console.print(text, markup=False)
        else:
            print(text)


def _unit(rows: list[Row], metric: str) -> str:
    return next((r.unit for r in rows if r.metric == metric), unit_of(metric))


def compare_json(rows: list[Row], base: RunData, news: list[RunData], verdicts: list[Verdict]) -> dict[str, Any]:
    """The comparison as one JSON document (values in µs, per second or counts; see README)."""
    return {
        "base": {"path": str(base.path), "run_id": base.name},
        "new": [{"path": str(n.path), "run_id": n.name} for n in news],
        "rows": [
            {"metric": r.metric, "unit": r.unit, "base": r.base, "new": [c.to_json() for c in r.cells]} for r in rows
        ],
        "fail_if": [v.to_json() for v in verdicts],
        "failed": any(v.failed for v in verdicts),
    }
