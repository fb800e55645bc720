"""Live progress of a load run.

On a terminal a rich live panel refreshes every second; otherwise a plain line
is printed every few seconds (CI logs stay readable); ``none`` prints nothing.
The view reads the recorder's counters and peeks at percentiles once a second,
never on the hot path.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from smtpbench.metrics.recorder import Recorder


@dataclass
class ProgressState:
    """What the engine exposes to the progress view."""

    recorder: Recorder
    started: float  # perf_counter at start
    total_duration: float | None
    in_flight: Callable[[], int]  # sessions running now, read at each refresh
    #: Extra rows (generator health, stuck sessions by phase, warnings), read at each refresh.
    notes: Callable[[], dict[str, str]] | None = None


def choose_mode(requested: str, quiet: bool) -> str:
    """Resolve ``auto`` to ``live`` on a TTY and ``plain`` elsewhere."""
    if quiet:
        return "none"
    if requested == "auto":
        return "live" if sys.stdout.isatty() else "plain"
    return requested


def _line(st: ProgressState, last: dict[str, float]) -> tuple[str, dict[str, str]]:
    rec = st.recorder
    counts = rec.counters.counts
    now = time.perf_counter()
    elapsed = now - st.started
    accepted = counts.get("messages_accepted", 0)
    rate = (accepted - last.get("accepted", 0)) / max(now - last.get("t", st.started), 1e-6)
    last["accepted"], last["t"] = accepted, now
    p50, p99 = (v / 1000 for v in rec.peek("transaction", 50, 99))
    errors = ", ".join(f"{k}={v}" for k, v in sorted(rec.counters.errors.items())) or "none"
    remaining = f"{max(st.total_duration - elapsed, 0):.0f}s" if st.total_duration else "-"
    fields = {
        "elapsed": f"{elapsed:.0f}s",
        "remaining": remaining,
        "messages/s": f"{rate:,.0f}",
        "accepted": f"{accepted:,}",
        "in flight": str(st.in_flight()),
        "txn p50": f"{p50:.2f} ms",
        "txn p99": f"{p99:.2f} ms",
        "errors": errors,
    }
    if st.notes is not None:
        fields.update(st.notes())
    text = "  ".join(f"{k} {v}" for k, v in fields.items())
    return text, fields


async def show_progress(st: ProgressState, mode: str, plain_every: float = 5.0) -> None:
    """Run until cancelled, showing progress in ``mode`` (live, plain or none)."""
    if mode == "none":
        await trio.sleep_forever()
    last: dict[str, float] = {}
    if mode == "plain":
        while True:
            await trio.sleep(plain_every)
            print(_line(st, last)[0], flush=True)
    # rich only for the live panel: a quiet or plain run does not pay for importing it.
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    with Live(console=console, refresh_per_second=2, transient=True) as live:
        while True:
            await trio.sleep(1.0)
            _, fields = _line(st, last)
            table = Table(show_header=False, box=None, title="smtpbench run")
            for k, v in fields.items():
                table.add_row(k, f"[bold red]{escape(v)}[/]" if k == "WARNING" else escape(v))
            live.update(table)
