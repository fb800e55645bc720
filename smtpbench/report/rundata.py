"""A results folder read back: ``summary.json``, the interval log, the timeline, the profile.

``compare`` and ``report`` read folders only through :func:`load_run`, which
reads our own files with our own readers (``metrics.hlog.read_hlog``,
``metrics.timeline.read_timeline``).  Keys that newer versions add to
``summary.json`` are optional everywhere: a folder of an older version still
loads, it just has less to show.
"""

from __future__ import annotations

import json
import statistics
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from smtpbench.errors import ConfigError
from smtpbench.load.scheduler import LoadShape, Ramp
from smtpbench.metrics.hgrm import values_at_percentiles
from smtpbench.metrics.hlog import LogInterval, read_hlog
from smtpbench.metrics.recorder import new_histogram
from smtpbench.metrics.summary import CORRECTED_PREFIX, PHASE_ORDER, SCHEDULE_LAG, check_summary
from smtpbench.metrics.timeline import read_timeline
from smtpbench.units import parse_duration

#: Statistics of a phase that compare and report show, with their summary.json keys.
STATS = {"p50": "p50_us", "p90": "p90_us", "p99": "p99_us", "p999": "p999_us", "max": "max_us"}


@dataclass
class RunData:
    """One run's results, read back."""

    path: Path
    summary: dict[str, Any]
    profile_text: str
    intervals: list[LogInterval]
    timeline: list[dict[str, Any]]
    _by_tag: dict[str, list[LogInterval]] = field(default_factory=dict, repr=False)
    _totals: dict[str, str] = field(default_factory=dict, repr=False)  # tag -> encoded total

    def __post_init__(self) -> None:
        for iv in self.intervals:
            self._by_tag.setdefault(iv.tag, []).append(iv)

    @property
    def name(self) -> str:
        """The run id (the folder's name for a summary without one)."""
        return str(self.summary.get("run_id") or self.path.name)

    @property
    def is_open(self) -> bool:
        """Whether the run used the open model (corrected latencies exist)."""
        return self.summary.get("model") == "open"

    def phase_stats(self) -> dict[str, dict[str, Any]]:
        """Every phase's summary statistics, keyed as compare and thresholds name them.

        Service phases by name, ``corrected.<phase>``, and ``schedule_lag``.
        """
        out: dict[str, dict[str, Any]] = dict(self.summary.get("phases", {}))
        for name, st in self.summary.get("corrected", {}).items():
            out[CORRECTED_PREFIX + name] = st
        if SCHEDULE_LAG in self.summary:
            out[SCHEDULE_LAG] = self.summary[SCHEDULE_LAG]
        return {k: v for k, v in out.items() if v.get("count")}

    def tags(self) -> list[str]:
        """Tags in the interval log, service phases in session order first."""
        known = [t for t in PHASE_ORDER if t in self._by_tag]
        return known + sorted(t for t in self._by_tag if t not in PHASE_ORDER)

    def series(self, tag: str) -> list[LogInterval]:
        """The intervals of ``tag`` in time order (empty when the run never recorded it)."""
        return self._by_tag.get(tag, [])

    def total(self, tag: str) -> HdrHistogram:
        """All of ``tag``'s interval histograms added together (the run's total for that phase)."""
        if tag not in self._totals:
            self.folded(tag)
        return HdrHistogram.decode(self._totals[tag])

    def folded(self, tag: str, max_points: int = 300) -> list[LogInterval]:
        """``tag``'s intervals, neighbours merged (histograms added, lengths summed) to at most ``max_points``.

        The same pass adds up the run's total for :meth:`total`, so each payload is decoded once.
        """
        intervals = self.series(tag)
        group = max(1, -(-len(intervals) // max_points))
        total = new_histogram()
        out = []
        for k in range(0, len(intervals), group):
            part = intervals[k : k + group]
            h = new_histogram()
            for iv in part:
                h.add(iv.histogram)
            total.add(h)
            encoded = part[0].encoded if len(part) == 1 else h.encode().decode("ascii")
            out.append(LogInterval(tag, part[0].start, sum(iv.length for iv in part), encoded, part[0].where))
        self._totals[tag] = total.encode().decode("ascii")
        return out

    @cached_property
    def nominal_interval(self) -> float:
        """The log interval length (the longest one; the last is usually cut short)."""
        return max((iv.length for iv in self.intervals), default=1.0) or 1.0

    def full_intervals(self, tag: str) -> list[LogInterval]:
        """``tag``'s intervals at least half the nominal length (drops the short final flush)."""
        return [iv for iv in self.series(tag) if iv.length >= 0.5 * self.nominal_interval]

    def shape(self) -> tuple[str, LoadShape] | None:
        """The planned load over time (``("sessions" | "rate", shape)``) from the resolved profile, if it has stages."""
        try:
            wl = tomllib.loads(self.profile_text).get("workload", {})
            stages = [Ramp(parse_duration(s["duration"], "stage"), float(s["target"])) for s in wl.get("stages") or []]
        except (tomllib.TOMLDecodeError, ConfigError, KeyError, TypeError, ValueError):
            return None
        if not stages:
            return None
        unit = "rate" if wl.get("model") == "open" else "sessions"
        initial = wl.get(unit) or 0.0
        return unit, LoadShape(float(initial) if isinstance(initial, int | float) else 0.0, stages)


def load_run(folder: str | Path) -> RunData:
    """Read a results folder; a folder that is not one raises :class:`ConfigError` (exit 2) naming it."""
    path = Path(folder)
    summary_file = path / "summary.json"
    if not path.is_dir():
        raise ConfigError(f"{folder}: no such results folder")
    if not summary_file.is_file():
        raise ConfigError(f"{folder}: not a results folder (no summary.json)")
    try:
        summary = check_summary(json.loads(summary_file.read_text(encoding="utf-8")))
        hlog = path / "histograms.hlog"
        intervals = read_hlog(hlog)[1] if hlog.is_file() else []
        timeline = read_timeline(path / "timeline.jsonl")
        profile = path / "profile.toml"
        profile_text = profile.read_text(encoding="utf-8") if profile.is_file() else ""
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{folder}: unreadable results: {exc}") from None
    return RunData(path, summary, profile_text, intervals, timeline)


def interval_stats(h: HdrHistogram, percentiles: tuple[float, ...]) -> list[int]:
    """Values (µs) at ``percentiles`` of ``h`` in one pass; 100 gives the max (as recorded, like summary.json)."""
    got = values_at_percentiles(h, tuple(p for p in percentiles if p < 100))
    it = iter(got)
    return [int(h.get_max_value()) if p >= 100 else next(it) for p in percentiles]


#: Scales a median absolute deviation to the standard deviation of normally distributed values.
MAD_TO_SD = 1.4826


def robust_spread(values: list[float]) -> float:
    """1.4826 × the median absolute deviation of ``values``: the standard deviation for normal data,
    but a few outliers (an interval during a stall) barely move it.  0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return MAD_TO_SD * statistics.median(abs(v - mid) for v in values)
