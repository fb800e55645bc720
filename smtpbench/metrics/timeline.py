"""``timeline.jsonl``: the run's counters per interval, beside the interval log.

The interval log (``histograms.hlog``) holds latencies only; what a report
plots over time besides them (sessions in flight, errors by kind, counters
such as messages accepted) is written here, one JSON object per interval, at
the same moments as the hlog lines and flushed likewise::

    {"t": 3.0, "len": 1.0, "in_flight": 12, "counts": {"messages_accepted": 810}, "errors": {"timeout": 2}}

``t`` is the interval's start in seconds since the hlog's BaseTime, ``len`` its
length; ``counts`` and ``errors`` hold what changed *during* the interval
(counters that did not change are left out), ``in_flight`` is sampled at its end.
A PROXY run's lines also carry ``proxy_announced``, the sessions that announced
a client during the interval (how a ``--workers`` parent follows it live).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from smtpbench.metrics.recorder import Counters


class TimelineWriter:
    """Appends one line of counter deltas per interval to an open text file."""

    def __init__(self, out: IO[str], base_epoch: float, counters: Counters, in_flight: Callable[[], int]) -> None:
        self.out = out
        self.base = base_epoch
        self.counters = counters
        self.in_flight = in_flight
        self._start = base_epoch
        self._counts: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._announced = 0

    def write(self, now_epoch: float) -> None:
        """Close the interval at ``now_epoch``: write the counters' changes since the last call, and flush."""
        counts, errors = dict(self.counters.counts), dict(self.counters.errors)
        line = {
            "t": round(self._start - self.base, 3),
            "len": round(now_epoch - self._start, 3),
            "in_flight": self.in_flight(),
            "counts": _delta(counts, self._counts),
            "errors": _delta(errors, self._errors),
        }
        proxy = self.counters.proxy
        if proxy is not None:
            line["proxy_announced"] = proxy.announced - self._announced
            self._announced = proxy.announced
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()
        self._start, self._counts, self._errors = now_epoch, counts, errors


def _delta(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(now.items()) if v != before.get(k, 0)}


def read_timeline(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a ``timeline.jsonl`` (empty when the file is absent: results of older versions).

    A truncated last line (a killed run) is skipped; any other bad line raises ``ValueError``.
    """
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8").split("\n")
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if no >= len(lines) - 1:
                break
            raise ValueError(f"{p}: line {no}: {exc}") from None
        out.append(item)
    return out
