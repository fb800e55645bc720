"""Small inline-SVG line charts for the HTML report (no dependency, no script, no network).

:func:`line_chart` draws series of ``(x, y)`` points on a linear time axis,
or on HdrHistogram's percentile axis (``spectrum=True``): x is a percentile
and is placed at ``log10(1 / (1 - p/100))``, so 90 %, 99 %, 99.9 %... are
evenly spaced, as in HdrHistogram's plotter.  The SVG is meant to be
embedded in HTML5, which needs no ``xmlns``; every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

#: Run colours, picked to stay apart for the colour-blind (Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
DASHES = ("", "6 3", "2 3", "10 3 2 3")
SPECTRUM_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
MAX_SPECTRUM_PERCENTILE = 99.9999


@dataclass
class Series:
    """One line: a label for the legend, points, a colour and an optional dash pattern."""

    label: str
    points: list[tuple[float, float]]
    colour: str
    dash: str = ""
    width: float = 1.6


@dataclass
class Chart:
    """Layout of one chart (pixels)."""

    title: str
    y_label: str
    x_label: str = "seconds since start"
    width: int = 560
    height: int = 240
    markers: list[tuple[float, str]] = field(default_factory=list)  # vertical lines at x with a label
    spectrum: bool = False


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1-2-5 step that divides ``span`` into about ``ticks`` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.4g}"


def spectrum_x(percentile: float) -> float:
    """Where a percentile sits on the spectrum axis: log10(1/(1-p))."""
    p = min(percentile, MAX_SPECTRUM_PERCENTILE) / 100.0
    return math.log10(1.0 / (1.0 - p))


def line_chart(chart: Chart, series: Sequence[Series]) -> str:
    """An ``<svg>`` element drawing ``series`` with axes, ticks, markers and a legend.

    Always returns a complete, well-formed element; with no points it says "no data".
    """
    left, right, top, bottom = 64, 30, 28, 40
    longest = max((len(s.label) for s in series), default=1)
    per_row = max(1, min(4, int((chart.width - 80) // (34 + 6.5 * longest))))
    legend_rows = math.ceil(len(series) / per_row) if series else 0
    w, h = chart.width, chart.height + 18 * legend_rows + 6
    pw, ph = w - left - right, chart.height - top - bottom
    xs = [(spectrum_x(x) if chart.spectrum else x) for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    out = [
        f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{escape(chart.title)}">',
        f'<text x="{left}" y="18" class="title">{escape(chart.title)}</text>',
    ]
    if not xs:
        out.append(f'<text x="{w / 2}" y="{chart.height / 2}" text-anchor="middle" class="muted">no data</text></svg>')
        return "".join(out)
    x0, x1 = (0.0, max(xs + [spectrum_x(99.99)])) if chart.spectrum else (min(xs + [0.0]), max(xs))
    if x1 <= x0:
        x1 = x0 + 1.0
    ystep = nice_step(max(ys) if ys else 1.0)
    y1 = max(ystep, math.ceil(max(ys) / ystep) * ystep) if max(ys) > 0 else 1.0

    def px(x: float) -> float:
        v = spectrum_x(x) if chart.spectrum else x
        return left + (v - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y / y1) * ph

    # grid and y ticks
    y = 0.0
    while y <= y1 + ystep / 2:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
        y += ystep
    # x ticks
    if chart.spectrum:
        ticks = [t for t in SPECTRUM_TICKS if spectrum_x(t) <= x1 + 1e-9]
        labels = [f"{t:g}%" for t in ticks]
    else:
        step = nice_step(x1 - x0, 8)
        ticks = [x0 + i * step for i in range(int((x1 - x0) / step) + 1)]
        labels = [_fmt(t) for t in ticks]
    for t, label in zip(ticks, labels, strict=True):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 32}" text-anchor="middle" class="muted">')
    out.append(f"{escape('percentile' if chart.spectrum else chart.x_label)}</text>")
    out.append(
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle" class="muted">'
        f"{escape(chart.y_label)}</text>"
    )
    for mx, label in chart.markers:
        if x0 <= mx <= x1:
            x = px(mx)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="marker"/>')
            out.append(f'<text x="{x + 3:.1f}" y="{top + 10}" class="marker-label">{escape(label)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for s in series:
        if not s.points:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="{s.width}"{dash}>'
            f"<title>{escape(s.label)}</title></polyline>"
        )
        if len(s.points) == 1:
            x, y = s.points[0]
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.colour}"/>')
    for i, s in enumerate(series):  # legend, as many entries a row as fit
        lx, ly = left + (i % per_row) * (pw / per_row), chart.height + 18 * (i // per_row) + 4
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(
            f'<line x1="{lx:.1f}" x2="{lx + 22:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s.colour}" '
            f'stroke-width="2"{dash}/><text x="{lx + 27:.1f}" y="{ly}" class="legend">{escape(s.label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
