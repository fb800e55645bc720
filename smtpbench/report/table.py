"""The end-of-run summary table printed to the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported where a table is printed: a quiet run does not pay for it
    from rich.console import Console


def _ms(v: Any) -> str:
    return f"{v / 1000:.3f}" if isinstance(v, int | float) else "-"


#: What a session in each phase was waiting for, in words.
WAITING_FOR = {
    "connect": "to connect",
    "tls": "for the TLS handshake",
    "banner": "for the banner",
    "ehlo": "for the EHLO reply",
    "starttls": "for the STARTTLS reply",
    "auth": "for the AUTH reply",
    "mail": "for the MAIL reply",
    "rcpt": "for a RCPT reply",
    "data": "for the DATA reply",
    "data_end": "for the reply to the message data",
    "rset": "for the RSET reply",
    "quit": "for the QUIT reply",
    "think": "in think_time",
}


def outcome_lines(summary: dict[str, Any]) -> list[str]:
    """The final lines in words: why a run failed, unfinished sessions, dropped arrivals, a saturated generator."""
    lines = []
    c = summary["counts"]
    if summary.get("status_reason"):
        lines.append(f"run {summary['status']}: {summary['status_reason']}")
    waits = summary.get("unfinished_min_wait_us", {})
    for phase, n in sorted(summary.get("unfinished", {}).items(), key=lambda kv: -kv[1]):
        what = WAITING_FOR.get(phase, f"in {phase}")
        were = "session was" if n == 1 else "sessions were"
        lines.append(
            f"{n:,} {were} still waiting {what} when the run ended (waited >= {waits.get(phase, 0) / 1e6:.1f} s)"
        )
    if c.get("arrivals_dropped"):
        lines.append(
            f"{c['arrivals_dropped']:,} of {c['arrivals_intended']:,} intended arrivals never started "
            "(the generator fell behind or max_in_flight held them until the end)"
        )
    gen = summary.get("generator") or {}
    if gen.get("saturated"):
        lines.append(f"WARNING: the generator was saturated ({gen['reason']}): latencies include its own delays")
    return lines + hint_lines(summary)


def hint_lines(summary: dict[str, Any]) -> list[str]:
    """One ``hint: ...`` line per error kind in the run that has advice (``net.errors.HINTS``), by count."""
    from smtpbench.net.errors import HINTS

    errors = summary.get("errors") or {}
    kinds = sorted((k for k in errors if k in HINTS and errors[k]), key=lambda k: -errors[k])
    return [f"hint: {k} ({errors[k]:,}): {HINTS[k]}" for k in kinds]


def print_summary(summary: dict[str, Any], results_dir: str, console: Console | None = None) -> None:
    """Print counts, throughput and the per-phase latency table (ms)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    c = summary["counts"]
    t = summary["throughput"]
    console.print(
        f"{summary['status']} run {summary['run_id']} in {summary['elapsed_s']:.1f}s: "
        f"{c['messages_accepted']:,} messages accepted ({t['messages_per_s']:,.1f}/s), "
        f"{c['messages_rejected']:,} rejected, {c['sessions_completed']:,}/{c['sessions_started']:,} sessions "
        f"completed ({c['sessions_failed']:,} failed, {c['sessions_unfinished']:,} unfinished), "
        f"{c['errors']:,} errors",
        markup=False,
    )
    if "recipients_delivered" in c or "recipients_failed" in c:  # an LMTP run: the per-recipient replies
        console.print(
            f"LMTP: {c.get('recipients_delivered', 0):,} recipients delivered, {c.get('recipients_failed', 0):,} "
            f"failed after the data ({c.get('messages_partial', 0):,} messages only partly delivered)",
            markup=False,
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
            + (" (ids in delivery-problems.txt)" if d["lost"] or d["duplicated"] else ""),
            markup=False,
        )
    for line in outcome_lines(summary):
        console.print(line, style="bold red" if line.startswith(("WARNING", "run failed")) else None, markup=False)
    for line, ok in threshold_lines(summary):
        console.print(line, style=None if ok else "bold red", markup=False)
    console.print(f"results: {results_dir}", markup=False)


def threshold_lines(summary: dict[str, Any]) -> list[tuple[str, bool]]:
    """One line per threshold, marked ✓ or ✗ with the value it was judged on, and whether it held."""
    return [
        (f"{'✓' if t['ok'] else '✗'} {t['metric']} {t['condition']} (was {t['shown']})", t["ok"])
        for t in summary.get("thresholds", [])
    ]
