"""``smtpbench compare BASE NEW [NEW...]``: results side by side, with deltas and noise.

Theory of operation
-------------------
Rows are metrics named as thresholds name them: ``<phase>.<stat>`` (stat p50,
p90, p99, p999, max; phases include ``corrected.<phase>`` and
``schedule_lag``), ``throughput.<name>``, ``errors.<kind>`` and, for runs with
``[delivery]``, ``delivery.<count>`` (lost, duplicated, ...: README, "Delivery latency").  Values come
from each run's ``summary.json``; each NEW run gets one column with its
absolute and relative difference to BASE.

Noise (README, "compare"): a run's *spread* for a metric is the robust
standard deviation (1.4826 × the median absolute deviation, so that one
interval caught in a stall does not widen it) of that metric computed on each
full interval of its ``histograms.hlog`` (latencies; intervals with at least
:data:`NOISE_MIN_COUNT` values; a log longer than :data:`NOISE_MAX_INTERVALS`
intervals is sampled evenly, every k-th interval, to bound the work) or
``timeline.jsonl`` (throughput), when at least :data:`NOISE_MIN_INTERVALS`
intervals qualify.  The noise of a comparison is the larger spread of the two
runs, and a difference whose absolute value is no larger is marked ``~``
(within noise) instead of better/worse.  Interval-to-interval spread is wider
than the spread of a whole-run figure, so the rule errs towards calling a
change noise: a change that is not marked ``~`` is one that single intervals
rarely show by chance.
Error counts have no noise estimate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from smtpbench.config import did_you_mean
from smtpbench.errors import ConfigError
from smtpbench.metrics.hgrm import mean_and_stddev
from smtpbench.metrics.summary import DELIVERY_COUNTS
from smtpbench.metrics.thresholds import ERROR_KINDS
from smtpbench.report.rundata import STATS, RunData, interval_stats, robust_spread

NOISE_MIN_COUNT = 10
NOISE_MIN_INTERVALS = 3
#: Longer logs are sampled evenly down to about this many intervals (the spread of a sample estimates the same spread).
NOISE_MAX_INTERVALS = 120
THROUGHPUT_COUNTS = {
    "messages_per_s": "messages_accepted",
    "messages_sent_per_s": "messages_sent",
    "sessions_per_s": "sessions_completed",
}
#: Statistics a condition may name (summary.json key, percentile used per interval; 100 = max, 0 = min).
CONDITION_STATS = {**STATS, "min": "min_us", "mean": "mean_us"}
_PERCENTILE = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "max": 100.0}


@dataclass
class Cell:
    """One NEW run's value of a metric, compared with BASE."""

    value: float | None
    delta: float | None = None
    delta_pct: float | None = None  # inf when BASE is 0 and NEW is not
    noise: float | None = None
    verdict: str = ""  # same | noise | better | worse | "" (missing on one side)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (an infinite relative change becomes null)."""
        pct = self.delta_pct if self.delta_pct is None or math.isfinite(self.delta_pct) else None
        return {
            "value": self.value,
            "delta": self.delta,
            "delta_pct": None if pct is None else round(pct, 2),
            "noise": None if self.noise is None else round(self.noise, 2),
            "within_noise": self.verdict == "noise",
            "verdict": self.verdict,
        }


@dataclass
class Row:
    """One metric across BASE and every NEW run."""

    metric: str
    unit: str  # us | per_s | count
    base: float | None
    cells: list[Cell]


def _split(metric: str) -> tuple[str, str]:
    head, _, tail = metric.rpartition(".")
    return head, tail


def unit_of(metric: str) -> str:
    """``us`` for latencies, ``per_s`` for throughput, ``count`` for error and delivery counts."""
    family, _, rest = metric.partition(".")
    if family == "delivery" and rest in DELIVERY_COUNTS:  # not the delivery phase's statistics
        return "count"
    return {"throughput": "per_s", "errors": "count"}.get(family, "us")


def higher_is_worse(metric: str) -> bool:
    """Whether a larger value is a regression (everything but throughput)."""
    return unit_of(metric) != "per_s"


def metric_value(run: RunData, metric: str) -> float | None:
    """``metric`` of ``run`` from its summary, or None when the run has no such phase or figure."""
    family, _, rest = metric.partition(".")
    if family == "throughput":
        v = run.summary.get("throughput", {}).get(rest)
        return float(v) if isinstance(v, int | float) else None
    if family == "errors":
        if rest == "total":
            return float(run.summary["counts"].get("errors", 0))
        return float(run.summary.get("errors", {}).get(rest, 0))
    if family == "delivery" and rest in DELIVERY_COUNTS:
        v = run.summary.get("delivery", {}).get(rest)
        return float(v) if isinstance(v, int | float) else None
    phase, stat = _split(metric)
    st = run.phase_stats().get(phase)
    if st is None or stat not in CONDITION_STATS:
        return None
    v = st.get(CONDITION_STATS[stat])
    return float(v) if isinstance(v, int | float) else None


def _interval_values(run: RunData, phase: str, stat: str) -> list[float]:
    """``stat`` of each qualifying interval of ``phase`` (cached on the run: one pass per interval for every stat)."""
    cache: dict[tuple[str, str], list[float]] = run.__dict__.setdefault("_noise_cache", {})
    if (phase, stat) not in cache:
        wanted = list(_PERCENTILE) if stat in _PERCENTILE else [stat]
        for name in wanted:
            cache[(phase, name)] = []
        intervals = run.full_intervals(phase)
        step = max(1, -(-len(intervals) // NOISE_MAX_INTERVALS))
        for iv in intervals[::step]:  # one histogram decoded at a time: a long log stays small
            h = iv.histogram
            if h.get_total_count() < NOISE_MIN_COUNT:
                continue
            if stat in _PERCENTILE:
                for name, v in zip(wanted, interval_stats(h, tuple(_PERCENTILE.values())), strict=True):
                    cache[(phase, name)].append(float(v))
            else:
                cache[(phase, stat)].append(float(h.get_min_value()) if stat == "min" else mean_and_stddev(h)[0])
    return cache[(phase, stat)]


def spread(run: RunData, metric: str) -> float | None:
    """The run's interval-to-interval spread of ``metric`` (None when it cannot be estimated): see the module notes."""
    family, _, rest = metric.partition(".")
    values: list[float]
    if family == "errors" or unit_of(metric) == "count":
        return None
    if family == "throughput":
        counter = THROUGHPUT_COUNTS.get(rest)
        nominal = max((float(x.get("len", 0)) for x in run.timeline), default=0.0)
        full = [x for x in run.timeline if nominal and float(x.get("len", 0)) >= 0.5 * nominal]
        if counter is None:
            return None
        values = [x.get("counts", {}).get(counter, 0) / float(x["len"]) for x in full]
    else:
        values = _interval_values(run, *_split(metric))
    if len(values) < NOISE_MIN_INTERVALS:
        return None
    return robust_spread(values)


def compare_cell(metric: str, base: float | None, new: float | None, noise: float | None) -> Cell:
    """Delta, relative delta and verdict of NEW against BASE under the noise rule (module notes)."""
    if base is None or new is None:
        return Cell(new, noise=noise)
    delta = new - base
    pct = delta / base * 100 if base else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    if delta == 0:
        verdict = "same"
    elif noise is not None and abs(delta) <= noise:
        verdict = "noise"
    else:
        verdict = "worse" if (delta > 0) == higher_is_worse(metric) else "better"
    return Cell(new, delta, pct, noise, verdict)


def _noise(base: RunData, new: RunData, metric: str) -> float | None:
    spreads = [s for s in (spread(base, metric), spread(new, metric)) if s is not None]
    return max(spreads) if spreads else None


def metric_names(runs: list[RunData]) -> list[str]:
    """Every row compare shows: phase stats (BASE's phase order first), throughput, errors by kind."""
    phases: list[str] = []
    for run in runs:
        phases += [p for p in run.phase_stats() if p not in phases]
    names = [f"{p}.{s}" for p in phases for s in STATS]
    names += [f"throughput.{k}" for k in THROUGHPUT_COUNTS]
    if any("delivery" in run.summary for run in runs):
        names += [f"delivery.{k}" for k in DELIVERY_COUNTS]
    kinds = sorted({k for run in runs for k in run.summary.get("errors", {})})
    return names + [f"errors.{k}" for k in kinds] + ["errors.total"]


def compare_runs(base: RunData, news: list[RunData]) -> list[Row]:
    """Every metric of :func:`metric_names`, BASE against each NEW."""
    rows = []
    for metric in metric_names([base, *news]):
        b = metric_value(base, metric)
        cells = [compare_cell(metric, b, metric_value(n, metric), _noise(base, n, metric)) for n in news]
        rows.append(Row(metric, unit_of(metric), b, cells))
    return rows


# ------------------------------------------------------------------ --fail-if

_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=|<=|>|<)\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([A-Za-zµ%]*)\s*$")
CONDITION_FORM = (
    "METRIC OP CHANGE, e.g. 'transaction.p99 > +10%', 'session.p50 > +5ms', 'throughput.messages_per_s < -5%'"
)


@dataclass(frozen=True)
class Condition:
    """A parsed ``--fail-if``: holds when NEW's change from BASE compares true against ``amount``."""

    text: str
    metric: str
    op: str
    amount: float  # µs for latencies, else the metric's own unit; percent when relative
    relative: bool

    def holds(self, cell: Cell) -> bool:
        """Whether the change in ``cell`` meets the condition (a missing side never holds)."""
        change = cell.delta_pct if self.relative else cell.delta
        if change is None:
            return False
        return {
            ">": change > self.amount,
            ">=": change >= self.amount,
            "<": change < self.amount,
            "<=": change <= self.amount,
        }[self.op]


def parse_condition(text: str) -> Condition:
    """Parse one ``--fail-if``; a malformed one raises :class:`ConfigError` (exit 2) saying the form."""
    m = _CONDITION.match(text)
    if not m:
        raise ConfigError(f"--fail-if {text!r}: not a condition", expected=CONDITION_FORM)
    metric, op, sign, number, unit = m.groups()
    amount = float(number) * (-1 if sign == "-" else 1)
    if unit == "%":
        return Condition(text, metric, op, amount, True)
    if unit_of(metric) == "us":
        if not unit:
            raise ConfigError(
                f"--fail-if {text!r}: a latency change needs a unit", expected="e.g. +5ms, +250us or +10%"
            )
        try:
            from smtpbench.units import parse_duration

            amount = math.copysign(parse_duration(f"{number}{unit.replace('µ', 'u')}", "--fail-if") * 1e6, amount)
        except ConfigError:
            raise ConfigError(f"--fail-if {text!r}: unknown unit {unit!r}", expected="us, ms, s or %") from None
    elif unit:
        raise ConfigError(f"--fail-if {text!r}: {metric} takes a plain number or a percentage, not {unit!r}")
    return Condition(text, metric, op, amount, False)


def check_metric(metric: str, runs: list[RunData]) -> None:
    """Raise :class:`ConfigError` (exit 2) unless every run has ``metric``; says which run lacks it, with a did-you-mean."""
    family, _, rest = metric.partition(".")
    if family == "errors":
        # An error kind a run never saw counts 0, but a misspelt one would never hold: refuse what no version names.
        known = ["total", *ERROR_KINDS]
        if rest not in known and all(rest not in run.summary.get("errors", {}) for run in runs):
            hint = did_you_mean(metric, [f"errors.{k}" for k in known])
            raise ConfigError(
                f"--fail-if {metric}: unknown error kind {rest!r} (one of {', '.join(known)})",
                hint=f"did you mean {hint}?" if hint else None,
            )
        return
    for run in runs:
        if metric_value(run, metric) is not None:
            continue
        known = metric_names([run])
        hint = did_you_mean(metric, known)
        phase, stat = _split(metric)
        if unit_of(metric) == "count":
            what = f"run {run.name} ({run.path}) has no delivery counts (no [delivery] section)"
        elif family != "throughput" and stat not in CONDITION_STATS:
            what = f"unknown statistic {stat!r} (one of {', '.join(CONDITION_STATS)})"
        elif family == "throughput":
            what = f"unknown throughput figure (one of {', '.join(THROUGHPUT_COUNTS)})"
        else:
            what = f"phase {phase!r} not in run {run.name} ({run.path})"
        raise ConfigError(f"--fail-if {metric}: {what}", hint=f"did you mean {hint}?" if hint else None)


@dataclass
class Verdict:
    """One condition judged against one NEW run."""

    condition: Condition
    run: RunData
    cell: Cell
    holds: bool
    failed: bool  # holds and (outside the noise, or noise ignored)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "condition": self.condition.text,
            "new": str(self.run.path),
            "holds": self.holds,
            "within_noise": self.cell.verdict == "noise",
            "failed": self.failed,
        }


def judge(
    conditions: list[Condition], base: RunData, news: list[RunData], *, ignore_noise: bool = False
) -> list[Verdict]:
    """Every condition against every NEW run.  A condition that holds within noise fails only with ``ignore_noise``."""
    out = []
    for cond in conditions:
        check_metric(cond.metric, [base, *news])
        b = metric_value(base, cond.metric)
        for new in news:
            cell = compare_cell(cond.metric, b, metric_value(new, cond.metric), _noise(base, new, cond.metric))
            holds = cond.holds(cell)
            out.append(Verdict(cond, new, cell, holds, holds and (ignore_noise or cell.verdict != "noise")))
    return out
