"""The report's charts: series over time and percentile spectra, computed from result folders.

Over time, every run starts at 0 s so that several runs overlay.  Latency
series come from the interval log (p50, p99 and max of each interval);
throughput, sessions in flight and errors from ``timeline.jsonl`` (throughput
falls back to the count of ``transaction`` values per interval for folders
written before the timeline existed).  Long runs are folded to at most
:data:`MAX_POINTS` points per series by adding neighbouring intervals'
histograms (``RunData.folded``), which keeps percentiles exact for the merged span.
"""

from __future__ import annotations

from smtpbench.metrics.summary import CORRECTED_PREFIX
from smtpbench.report.rundata import RunData, interval_stats
from smtpbench.report.svg import DASHES, PALETTE, Chart, Series, line_chart

MAX_POINTS = 240
SPECTRUM_PERCENTILES = tuple(
    100.0 - 50.0 / 10 ** (i / 8) for i in range(0, 8 * 5 + 1)
)  # 50 % .. 99.999 %, 8 points a decade
STAT_DASH = {"p50": DASHES[0], "p99": DASHES[1], "max": DASHES[2]}


def colour(i: int) -> str:
    """The colour of run number ``i`` (cycling)."""
    return PALETTE[i % len(PALETTE)]


def run_label(i: int) -> str:
    """Short name of run number ``i`` in legends (the runs table maps it to the run id)."""
    return f"run {i + 1}"


def _label(runs: list[RunData], i: int, what: str) -> str:
    return what if len(runs) == 1 else f"{run_label(i)} {what}"


def stage_markers(run: RunData) -> list[tuple[float, str]]:
    """Vertical markers where each stage of the first run ends (``-> 100/s`` or ``-> 50 sessions``)."""
    shape = run.shape()
    if shape is None:
        return []
    unit, ls = shape
    t, out = 0.0, []
    for st in ls.stages:
        out.append((t, f"→{st.target:g}{'/s' if unit == 'rate' else ''}"))
        t += st.duration
    return out


def latency_over_time(runs: list[RunData], tag: str) -> str:
    """p50, p99 and max of ``tag`` per interval (ms), one colour per run, one dash per statistic."""
    series = []
    for i, run in enumerate(runs):
        ivs = run.folded(tag, MAX_POINTS)
        stats = [(iv.start + iv.length / 2, interval_stats(iv.histogram, (50.0, 99.0, 100.0))) for iv in ivs]
        for k, name in enumerate(STAT_DASH):
            pts = [(t, v[k] / 1000) for t, v in stats]
            series.append(Series(_label(runs, i, name), pts, colour(i), STAT_DASH[name]))
    chart = Chart(f"{tag}: latency per interval", "ms", markers=stage_markers(runs[0]))
    return line_chart(chart, series)


def spectrum(runs: list[RunData], tags: list[str]) -> str:
    """Percentile spectrum (50 % .. 99.999 %, log axis) of ``tags`` (a phase and its corrected view), in ms."""
    series = []
    for i, run in enumerate(runs):
        for k, tag in enumerate(tags):
            h = run.total(tag)
            n = h.get_total_count()
            if not n:
                continue
            # Beyond 1/(1-p) > count the percentile is just the max: stop one step after that.
            ps = [p for p in SPECTRUM_PERCENTILES if 1 / (1 - p / 100) <= 10 * n]
            values = interval_stats(h, tuple(ps))
            what = "corrected (from intended start)" if tag.startswith(CORRECTED_PREFIX) else "service"
            label = _label(runs, i, what if len(tags) > 1 else tag)
            series.append(Series(label, [(p, v / 1000) for p, v in zip(ps, values, strict=True)], colour(i), DASHES[k]))
    return line_chart(Chart(f"{tags[0]}: percentile spectrum", "ms", spectrum=True), series)


def _timeline_rate(run: RunData, counter: str) -> list[tuple[float, float]]:
    return [
        (x["t"] + x["len"] / 2, x.get("counts", {}).get(counter, 0) / x["len"]) for x in run.timeline if x.get("len")
    ]


def throughput(runs: list[RunData]) -> str:
    """Messages accepted per second (and sessions started per second for open runs), per interval."""
    series = []
    for i, run in enumerate(runs):
        if run.timeline:
            pts = _timeline_rate(run, "messages_accepted")
        else:  # older folders: every finished transaction, accepted or not
            pts = [
                (iv.start + iv.length / 2, iv.histogram.get_total_count() / iv.length)
                for iv in run.folded("transaction", MAX_POINTS)
            ]
        series.append(Series(_label(runs, i, "messages accepted/s"), pts, colour(i)))
        if run.is_open and run.timeline:
            series.append(
                Series(
                    _label(runs, i, "sessions started/s"), _timeline_rate(run, "sessions_started"), colour(i), DASHES[1]
                )
            )
    plan = _planned(runs[0], "rate")
    if plan:
        series.append(Series("planned arrival rate/s", plan, "#777777", DASHES[2], 1.2))
    return line_chart(Chart("throughput", "per second", markers=stage_markers(runs[0])), series)


def _planned(run: RunData, unit: str) -> list[tuple[float, float]]:
    shape = run.shape()
    if shape is None or shape[0] != unit or shape[1].duration is None:
        return []
    ls = shape[1]
    end = ls.duration or 0.0
    return [(end * k / 100, ls.level(end * k / 100)) for k in range(101)]


def in_flight(runs: list[RunData]) -> str:
    """Sessions in flight at each interval's end (and the planned session count of closed stages)."""
    series = [
        Series(
            _label(runs, i, "sessions in flight"),
            [(x["t"] + x["len"], x["in_flight"]) for x in run.timeline],
            colour(i),
        )
        for i, run in enumerate(runs)
        if run.timeline
    ]
    plan = _planned(runs[0], "sessions")
    if plan:
        series.append(Series("planned sessions", plan, "#777777", DASHES[2], 1.2))
    return line_chart(Chart("sessions in flight", "sessions", markers=stage_markers(runs[0])), series)


def errors_over_time(runs: list[RunData]) -> str:
    """Errors per second by kind, per interval."""
    series = []
    kinds = sorted({k for run in runs for x in run.timeline for k in x.get("errors", {})})
    for i, run in enumerate(runs):
        for n, k in enumerate(kinds):
            pts = [(x["t"] + x["len"] / 2, x.get("errors", {}).get(k, 0) / x["len"]) for x in run.timeline if x["len"]]
            if any(y for _, y in pts):
                series.append(
                    Series(_label(runs, i, k), pts, colour(n if len(runs) == 1 else i), DASHES[n % len(DASHES)])
                )
    return line_chart(Chart("errors by kind", "per second", markers=stage_markers(runs[0])), series)
