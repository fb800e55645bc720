"""The end-of-run summary table printed to the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _ms(v: Any) -> str:
    return f"{v / 1000:.3f}" if isinstance(v, int | float) else "-"


def print_summary(summary: dict[str, Any], results_dir: str, console: Console | None = None) -> None:
    """Print counts, throughput and the per-phase latency table (ms)."""
    console = console or Console()
    c = summary["counts"]
    t = summary["throughput"]
    console.print(
        f"[bold]{summary['status']}[/bold] run {summary['run_id']} in {summary['elapsed_s']:.1f}s: "
        f"{c['messages_accepted']:,} messages accepted ({t['messages_per_s']:,.1f}/s), "
        f"{c['messages_rejected']:,} rejected, {c['sessions_completed']:,}/{c['sessions_started']:,} sessions, "
        f"{c['errors']:,} errors"
    )
    table = Table(title="latency (ms)")
    for col in ("phase", "count", "min", "p50", "p90", "p99", "p99.9", "max"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    rows = list(summary["phases"].items())
    rows += [(f"corrected.{k}", v) for k, v in summary.get("corrected", {}).items()]
    if "schedule_lag" in summary:
        rows.append(("schedule_lag", summary["schedule_lag"]))
    for name, st in rows:
        if not st.get("count"):
            continue
        table.add_row(
            name,
            f"{st['count']:,}",
            _ms(st["min_us"]),
            _ms(st["p50_us"]),
            _ms(st["p90_us"]),
            _ms(st["p99_us"]),
            _ms(st["p999_us"]),
            _ms(st["max_us"]),
        )
    console.print(table)
    if summary["errors"]:
        console.print("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(summary["errors"].items())))
    if summary["unexpected_replies"]:
        console.print(f"unexpected replies: {summary['unexpected_replies']}")
    d = summary.get("delivery")
    if d:
        console.print(
            f"delivery: {d['delivered']:,}/{d['accepted']:,} delivered, {d['lost']:,} lost, "
            f"{d['duplicated']:,} duplicated, {d['unexpected']:,} unexpected, "
            f"{d['rejected_but_delivered']:,} rejected but delivered"
            + (" (ids in delivery-problems.txt)" if d["lost"] or d["duplicated"] else "")
        )
    console.print(f"results: {results_dir}")
