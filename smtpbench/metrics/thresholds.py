"""Pass/fail criteria on a run's figures, k6 style: ``"transaction.p99" = "< 250ms"``.

A threshold names a *metric* (a path into ``summary.json``, see README,
"Thresholds") and a *condition* (an operator and a value in the metric's own
kind of unit: a duration for latency statistics, a ratio for ``errors.rate``,
a plain number for counts and throughput).  :func:`parse_threshold` checks
both when the profile is read, so a typo exits 2 before any traffic;
:func:`evaluate` judges them against a summary document, the final one or a
provisional one built while the run goes on (for ``abort_on_fail``).
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from smtpbench.errors import ConfigError
from smtpbench.metrics.summary import CORRECTED_PREFIX, DELIVERY_COUNTS, KNOWN_PHASES
from smtpbench.units import parse_duration, parse_ratio

#: Latency statistics of a phase, in the names users write and the summary's keys (µs).
TIME_STATS = {"min": "min_us", "mean": "mean_us", "p50": "p50_us", "p90": "p90_us", "p99": "p99_us"}
TIME_STATS |= {"p999": "p999_us", "max": "max_us"}
STATS = (*TIME_STATS, "count")

#: ``counts.*`` and ``throughput.*`` names a threshold may use (the summary's keys).
COUNT_NAMES = (
    "sessions_started",
    "sessions_completed",
    "sessions_failed",
    "sessions_unfinished",
    "sessions_late",
    "sessions_capped",
    "arrivals_dropped",
    "messages_sent",
    "messages_accepted",
    "messages_rejected",
    "messages_failed",
    "messages_unfinished",
    "messages_unsupported",  # a message the server cannot take (README, "Message mix and corpora")
    "arrivals_intended",  # open model
    "recipients_rejected",
    "recipients_delivered",  # LMTP
    "recipients_failed",  # LMTP
    "messages_partial",  # LMTP
    "bytes_sent",
    "errors",
)
THROUGHPUT_NAMES = ("messages_per_s", "messages_sent_per_s", "sessions_per_s")
#: Error kinds, as net.errors.classify() and load.extensions name them (README, "Error kinds").
ERROR_KINDS = (
    "refused",
    "resolve",
    "timeout",
    "reset",
    "closed",
    "tls",
    "protocol",
    "emfile",
    "eaddrnotavail",
    "temp_fail",
    "perm_fail",
    "auth",  # AUTH refused or failed (load.auth)
    "message_unsupported",  # load.extensions: a message needing an extension the server lacks
    "chunking_unsupported",
    "server_shutdown",
    "os_error",
    "error",
)

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_CONDITION = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*(\S.*?)\s*")
CONDITION_FORM = 'an operator (<, <=, >, >=, ==, !=) and a value, like "< 250ms", "< 1%" or ">= 500"'


@dataclass(frozen=True)
class Threshold:
    """One parsed criterion; ``limit`` is in the summary's unit (µs for durations)."""

    metric: str
    condition: str
    op: str
    limit: float
    kind: str  # "duration", "ratio" or "number"
    abort_on_fail: bool = False
    delay_s: float = 0.0

    def holds(self, value: float) -> bool:
        """Whether ``value`` (in the summary's unit) satisfies the condition."""
        return _OPERATORS[self.op](value, self.limit)


def metric_names() -> list[str]:
    """Every metric name a threshold accepts (for "did you mean" and the README)."""
    names = [f"{p}.{s}" for p in KNOWN_PHASES for s in STATS]
    names += [f"{CORRECTED_PREFIX}{p}.{s}" for p in ("session", "transaction") for s in STATS]
    names += ["errors.rate", *(f"errors.{k}" for k in ERROR_KINDS)]
    names += [f"counts.{c}" for c in COUNT_NAMES]
    names += [f"throughput.{t}" for t in THROUGHPUT_NAMES]
    names.append("unfinished.count")
    names += [f"delivery.{c}" for c in DELIVERY_COUNTS]
    return names


def metric_kind(metric: str) -> str | None:
    """The kind of value ``metric`` holds, or None when it is not a metric we know."""
    if metric == "errors.rate":
        return "ratio"
    head, _, tail = metric.partition(".")
    if head == "errors":
        return "number" if tail in ERROR_KINDS else None
    if head == "counts":
        return "number" if tail in COUNT_NAMES else None
    if head == "throughput":
        return "number" if tail in THROUGHPUT_NAMES else None
    if metric == "unfinished.count":
        return "number"
    if head == "delivery" and tail in DELIVERY_COUNTS:  # not the delivery phase's statistics
        return "number"
    phase, _, stat = metric.rpartition(".")
    phase = phase.removeprefix(CORRECTED_PREFIX)
    if phase not in KNOWN_PHASES or stat not in STATS:
        return None
    return "number" if stat == "count" else "duration"


def parse_threshold(
    metric: str,
    spec: object,
    *,
    key: str,
    file: str | None = None,
) -> Threshold:
    """Check ``metric`` and its condition ``spec`` and return the criterion.

    ``spec`` is a condition string or a table ``{condition, abort_on_fail,
    delay}``.  Guarantees a Threshold whose limit is in the summary's unit,
    else a ConfigError naming ``key`` (with "did you mean" for a misspelt
    metric).
    """
    kind = metric_kind(metric)
    if kind is None:
        close = difflib.get_close_matches(metric, metric_names(), n=1, cutoff=0.6)
        raise ConfigError(
            f"unknown metric {metric!r}",
            file=file,
            key=key,
            expected="a metric such as transaction.p99, corrected.session.p99, errors.rate, errors.timeout, "
            "counts.messages_accepted or throughput.messages_per_s",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    abort, delay = False, 0.0
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"condition", "abort_on_fail", "delay"})
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r}", file=file, key=key, expected="condition, abort_on_fail and delay"
            )
        if "condition" not in spec:
            raise ConfigError("missing condition", file=file, key=key, expected=CONDITION_FORM)
        abort = spec.get("abort_on_fail", False)
        if not isinstance(abort, bool):
            raise ConfigError(f"got {abort!r}", file=file, key=f"{key}.abort_on_fail", expected="true or false")
        delay = parse_duration(spec.get("delay", 0), f"{key}.delay", file=file)
        spec = spec["condition"]
    if not isinstance(spec, str):
        raise ConfigError(f"got {type(spec).__name__} {spec!r}", file=file, key=key, expected=CONDITION_FORM)
    match = _CONDITION.fullmatch(spec)
    if match is None:
        raise ConfigError(f"{spec!r} is not a condition", file=file, key=key, expected=CONDITION_FORM)
    op, text = match.groups()
    limit: float
    if kind == "duration":
        limit = parse_duration(text, key, file=file) * 1e6
    elif kind == "ratio":
        limit = parse_ratio(text, key, file=file)
    else:
        try:
            limit = float(text)
        except ValueError:
            raise ConfigError(f"{text!r} is not a number", file=file, key=key, expected=CONDITION_FORM) from None
    return Threshold(metric, f"{op} {text}", op, limit, kind, abort, delay)


def parse_cli_threshold(text: str) -> Threshold:
    """``--threshold 'transaction.p99<250ms'``: the metric, then the condition."""
    match = re.search(r"<=|>=|==|!=|<|>", text)
    if match is None:
        raise ConfigError(f"{text!r} has no condition", key="--threshold", expected=f"METRIC {CONDITION_FORM}")
    return parse_threshold(text[: match.start()].strip(), text[match.start() :], key="--threshold")


def parse_thresholds(table: object, *, file: str | None = None) -> list[Threshold]:
    """The profile's ``[thresholds]`` table: metric -> condition, table, or a list of them."""
    if table is None:
        return []
    if not isinstance(table, Mapping):
        raise ConfigError(f"got {type(table).__name__}", file=file, key="thresholds", expected="a table")
    out: list[Threshold] = []
    for metric, spec in table.items():
        key = f'thresholds."{metric}"'
        specs = spec if isinstance(spec, list) else [spec]
        out.extend(parse_threshold(str(metric), one, key=key, file=file) for one in specs)
    return out


def metric_value(summary: Mapping[str, Any], metric: str) -> float | None:
    """The metric's current figure in ``summary`` (µs for durations), or None for no data.

    Counts and error kinds the run never saw are 0; a latency statistic of a
    phase with no recorded value has no data.
    """
    counts = summary.get("counts", {})
    if metric == "errors.rate":
        started = counts.get("sessions_started", 0)
        bad = counts.get("sessions_failed", 0) + counts.get("sessions_unfinished", 0)
        return bad / started if started else None
    head, _, tail = metric.partition(".")
    if head == "errors":
        return float(summary.get("errors", {}).get(tail, 0))
    if head == "counts":
        return float(counts.get(tail, 0))
    if head == "throughput":
        return float(summary.get("throughput", {}).get(tail, 0.0))
    if metric == "unfinished.count":
        return float(counts.get("sessions_unfinished", 0))
    if head == "delivery" and tail in DELIVERY_COUNTS:
        value = summary.get("delivery", {}).get(tail)
        return None if value is None else float(value)
    phase, _, stat = metric.rpartition(".")
    if phase.startswith(CORRECTED_PREFIX):
        stats = summary.get("corrected", {}).get(phase[len(CORRECTED_PREFIX) :], {})
    else:
        stats = summary.get("phases", {}).get(phase, {})
    if stat == "count":
        return float(stats.get("count", 0))
    value = stats.get(TIME_STATS[stat])
    return None if value is None else float(value)


def shown(threshold: Threshold, value: float | None) -> str:
    """A value in the threshold's unit as a person reads it ("212ms", "0.5%", "480")."""
    if value is None:
        return "no data"
    if threshold.kind == "duration":  # for reading, not parsing back: format_duration would give "0.008319s"
        us = round(value)
        return f"{us / 1000:g}ms" if us < 1_000_000 else f"{us / 1e6:g}s"
    if threshold.kind == "ratio":
        return f"{value * 100:.3g}%"
    return f"{value:g}"


def evaluate(thresholds: list[Threshold], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Judge each threshold against ``summary``: ``[{metric, condition, value, shown, ok}]``.

    A metric with no data fails (a gate that asked for a p99 of something that
    never happened has not been met).
    """
    results = []
    for t in thresholds:
        value = metric_value(summary, t.metric)
        ok = value is not None and t.holds(value)
        results.append(
            {"metric": t.metric, "condition": t.condition, "value": value, "shown": shown(t, value), "ok": ok}
        )
    return results


def breached(thresholds: list[Threshold], summary: Mapping[str, Any], elapsed_s: float) -> Threshold | None:
    """The first ``abort_on_fail`` threshold that fails now, past its delay, on data (for in-run checks)."""
    for t in thresholds:
        if not t.abort_on_fail or elapsed_s < t.delay_s:
            continue
        value = metric_value(summary, t.metric)
        if value is not None and not t.holds(value):
            return t
    return None
