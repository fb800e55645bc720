"""``smtpbench report``: one self-contained HTML file for one or several runs.

The page is static HTML with inline CSS and inline SVG (``report/svg.py``):
no script, no font, no image and no link that a browser would fetch, so it
opens offline and can be attached to a ticket.  Every value shown comes from
the result folders (``report/rundata.py``); keys that newer versions write
(thresholds, unfinished sessions, generator health, LMTP, TLS, PROXY, delivery) are shown when
present and skipped otherwise, so older folders still render.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from smtpbench.metrics.summary import CORRECTED_PREFIX
from smtpbench.report import charts
from smtpbench.report.rundata import STATS, RunData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px}
table{border-collapse:collapse;margin:6px 0 12px}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.ok{color:#0a7d32;font-weight:600}.bad{color:#c0261b;font-weight:600}.warn{background:#fff4e0;border-left:4px solid #e69f00;padding:6px 10px;margin:8px 0}
.grid-2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:8px}
svg.chart{background:#fff;font-size:11px;max-width:100%;height:auto}svg .title{font-size:13px;font-weight:600}
svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#bbb}svg .muted{fill:#666}
svg .marker{stroke:#999;stroke-dasharray:3 3}svg .marker-label{fill:#666;font-size:10px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}.muted{color:#666}
"""


def _ms(v: Any) -> str:
    return f"{v / 1000:,.3f}" if isinstance(v, int | float) else "–"


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells are already escaped/formatted HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _run_headers(runs: list[RunData]) -> list[str]:
    return [
        f'<span class="swatch" style="background:{charts.colour(i)}"></span>'
        + (escape(r.name) if len(runs) == 1 else f"{charts.run_label(i)}: {escape(r.name)}")
        for i, r in enumerate(runs)
    ]


def _per_run_table(runs: list[RunData], first: str, keys: list[str], get: Any) -> str:
    rows = [[escape(k)] + [escape(str(get(r, k))) for r in runs] for k in keys]
    return _table([first, *_run_headers(runs)], rows)


def runs_section(runs: list[RunData]) -> str:
    """Which runs, against what, how they ended; warnings for anything that makes a run's figures suspect."""
    rows = []
    warnings = []
    for i, r in enumerate(runs):
        s = r.summary
        rows.append(
            [_run_headers(runs)[i]]
            + [escape(str(s.get(k, "–"))) for k in ("status", "model", "target", "started_at", "elapsed_s", "profile")]
        )
        if s.get("status") not in (None, "completed"):
            warnings.append(f"{r.name}: status {s.get('status')}")
        gen = s.get("generator") or {}
        if gen.get("saturated"):
            warnings.append(f"{r.name}: the load generator was saturated ({gen.get('reason', 'no reason given')})")
        if s.get("counts", {}).get("arrivals_dropped"):
            warnings.append(f"{r.name}: {s['counts']['arrivals_dropped']:,} intended arrivals never started")
        if s.get("values_clamped"):
            warnings.append(f"{r.name}: {s['values_clamped']:,} latencies over one hour were clamped")
    out = _table(["run", "status", "model", "target", "started", "elapsed (s)", "profile"], rows)
    out += "".join(f'<div class="warn">{escape(w)}</div>' for w in warnings)
    return out


def generator_measures(gen: object) -> dict[str, Any]:
    """``summary.generator`` as measure -> value rows; a merged run's per-part list (``shards``/``workers``: one
    object each, with its ``index``) becomes rows such as ``shard 0 cpu_percent_p50``, not a list in one cell."""
    if not isinstance(gen, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in gen.items():
        if key in ("shards", "workers") and isinstance(value, list):
            for part in value:
                if isinstance(part, dict):
                    label = f"{key[:-1]} {part.get('index', '?')}"
                    out.update({f"{label} {k}": v for k, v in part.items() if k != "index"})
        else:
            out[key] = value
    return out


def counts_section(runs: list[RunData]) -> str:
    """Counts, throughput, errors by kind, thresholds, unfinished sessions and generator health."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.summary["counts"] if k not in keys]
    out = ["<h3>counts</h3>", _per_run_table(runs, "count", keys, lambda r, k: f"{r.summary['counts'].get(k, 0):,}")]
    tkeys = sorted({k for r in runs for k in r.summary.get("throughput", {})})
    out += [
        "<h3>throughput</h3>",
        _per_run_table(runs, "per second", tkeys, lambda r, k: r.summary["throughput"].get(k, "–")),
    ]
    ekeys = sorted({k for r in runs for k in r.summary.get("errors", {})})
    out.append("<h3>errors by kind</h3>")
    out.append(
        _per_run_table(runs, "kind", ekeys, lambda r, k: r.summary["errors"].get(k, 0))
        if ekeys
        else '<p class="muted">no errors</p>'
    )
    out.append(thresholds_section(runs))
    ukeys = sorted({k for r in runs for k in (r.summary.get("unfinished") or {})})
    if ukeys:
        out += [
            "<h3>unfinished sessions (phase they were waiting in when the run ended)</h3>",
            _per_run_table(runs, "phase", ukeys, lambda r, k: (r.summary.get("unfinished") or {}).get(k, 0)),
        ]
    health = {r.name: generator_measures(r.summary.get("generator")) for r in runs}
    gkeys = list(dict.fromkeys(k for measures in health.values() for k in measures))  # shard 2 before shard 10
    if gkeys:
        out += [
            "<h3>generator health</h3>",
            _per_run_table(runs, "measure", gkeys, lambda r, k: health[r.name].get(k, "–")),
        ]
    out.append(features_section(runs))
    if any(r.summary.get("delivery") for r in runs):
        out.append("<h3>delivery</h3>")
        out += [f"<pre>{escape(json.dumps(r.summary.get('delivery'), indent=2))}</pre>" for r in runs]
    return "\n".join(out)


#: The LMTP per-recipient counts (smtpbench.load.lmtp), in the order shown.
LMTP_COUNTS = ["recipients_delivered", "recipients_failed", "messages_partial"]
#: summary.json ``tls`` keys shown (``versions`` is a name -> count mapping).
TLS_KEYS = ["handshakes", "full", "resumed", "resume_declined", "versions"]
#: summary.json ``proxy`` keys shown (``clients``, the ranges, can be long: the summary has them).
PROXY_KEYS = ["version", "sessions_announced", "distinct_clients"]


def _figure(v: Any) -> str:
    """A count with thousands separators, a ``{name: count}`` mapping as ``name: count, ...``, else as is."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_figure(n)}" for k, n in v.items()) or "–"
    return f"{v:,}" if isinstance(v, int) else str(v)


def features_section(runs: list[RunData]) -> str:
    """LMTP per-recipient counts, TLS handshakes and PROXY clients: each only when some run has it ("–" for others)."""
    out = []

    def lmtp(r: RunData) -> dict[str, Any] | None:
        c = r.summary["counts"]
        # An LMTP run counts its recipients (smtpbench.load.lmtp); messages_partial only once one occurs.
        return (
            {k: c.get(k, 0) for k in LMTP_COUNTS} if {"recipients_delivered", "recipients_failed"} & c.keys() else None
        )

    for title, first, keys, section in (
        ("LMTP (per-recipient replies to the data)", "count", LMTP_COUNTS, lmtp),
        ("TLS handshakes", "measure", TLS_KEYS, lambda r: r.summary.get("tls")),
        ("PROXY protocol (announced clients)", "measure", PROXY_KEYS, lambda r: r.summary.get("proxy")),
    ):
        if any(section(r) for r in runs):
            out += [
                f"<h3>{title}</h3>",
                _per_run_table(runs, first, keys, lambda r, k, get=section: _figure((get(r) or {}).get(k, "–"))),
            ]
    return "\n".join(out)


def thresholds_section(runs: list[RunData]) -> str:
    """Thresholds with ✓/✗ per run (nothing for runs without thresholds)."""
    rows = []
    for r in runs:
        for t in r.summary.get("thresholds") or []:
            ok = bool(t.get("ok"))
            mark = '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'
            rows.append(
                [
                    mark,
                    escape(r.name),
                    escape(str(t.get("metric"))),
                    escape(str(t.get("condition"))),
                    escape(str(t.get("shown", t.get("value")))),  # "8.3ms", not 8300.0 (µs) with no unit
                ]
            )
    if not rows:
        return ""
    return "<h3>thresholds</h3>" + _table(["", "run", "metric", "condition", "value"], rows)


def _codes_table(runs: list[RunData], key: str) -> str:
    pairs: list[tuple[str, str]] = []
    for r in runs:
        for cmd, codes in (r.summary.get(key) or {}).items():
            pairs += [(cmd, c) for c in codes if (cmd, c) not in pairs]
    if not pairs:
        return '<p class="muted">none</p>'
    rows = [
        [escape(cmd), escape(code)] + [f"{(r.summary.get(key) or {}).get(cmd, {}).get(code, 0):,}" for r in runs]
        for cmd, code in sorted(pairs)
    ]
    return _table(["command", "code", *_run_headers(runs)], rows)


def latency_table(runs: list[RunData], tags: list[str]) -> str:
    """Every phase's count and percentiles (ms), one row per run and phase."""
    rows = []
    for tag in tags:
        for i, r in enumerate(runs):
            st = r.phase_stats().get(tag)
            if not st:
                continue
            rows.append(
                [escape(tag), _run_headers(runs)[i], f"{st['count']:,}"]
                + [_ms(st.get(k)) for k in ("min_us", *STATS.values())]
            )
    return _table(["phase", "run", "count", "min", "p50", "p90", "p99", "p99.9", "max"], rows)


def phase_tags(runs: list[RunData]) -> list[str]:
    """Every tag any run recorded, service phases in session order, corrected views after their phase."""
    tags: list[str] = []
    for r in runs:
        tags += [t for t in r.tags() if t not in tags]
    return tags


def build_report(runs: list[RunData]) -> str:
    """The whole HTML document for ``runs`` (the first is the reference for stages)."""
    tags = phase_tags(runs)
    service = [t for t in tags if not t.startswith(CORRECTED_PREFIX)]
    title = "smtpbench report: " + ", ".join(r.name for r in runs)
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="muted">Latencies in ms. Over time, each run starts at 0 s; dashed vertical lines mark stages.</p>',
        '<h2 id="runs">runs</h2>',
        runs_section(runs),
        '<h2 id="over-time">over time</h2>',
        '<div class="grid-2">',
        charts.throughput(runs),
        charts.in_flight(runs),
        charts.errors_over_time(runs),
        "</div>",
        '<h2 id="latency-over-time">latency over time (p50 solid, p99 dashed, max dotted)</h2>',
        '<div class="grid-2">',
    ]
    parts += [f'<div class="phase" data-phase="{escape(t)}">{charts.latency_over_time(runs, t)}</div>' for t in tags]
    parts += ["</div>", '<h2 id="spectrum">percentile spectrum</h2>', '<div class="grid-2">']
    for t in service:
        group = [t] + ([CORRECTED_PREFIX + t] if CORRECTED_PREFIX + t in tags else [])
        parts.append(f'<div class="spectrum" data-phase="{escape(t)}">{charts.spectrum(runs, group)}</div>')
    parts += [
        "</div>",
        '<h2 id="latency">latency (ms)</h2>',
        latency_table(runs, tags),
        '<h2 id="counts">counts</h2>',
        counts_section(runs),
    ]
    parts += ['<h2 id="replies">replies by command and code</h2>', _codes_table(runs, "replies")]
    parts += [
        '<h2 id="unexpected">unexpected replies</h2>',
        _codes_table(runs, "unexpected_replies"),
        '<h2 id="profile">resolved profile</h2>',
    ]
    for r in runs:
        parts.append(f"<details><summary>{escape(r.name)}</summary><pre>{escape(r.profile_text)}</pre></details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def default_path(runs: list[RunData]) -> Path:
    """``RUN/report.html`` for one run; ``RUN/report-<other run ids>.html`` in the first run's folder for several."""
    if len(runs) == 1:
        return runs[0].path / "report.html"
    return runs[0].path / ("report-" + "-".join(r.path.name for r in runs[1:]) + ".html")


def write_report(runs: list[RunData], out: str | Path | None = None) -> Path:
    """Write the report for ``runs`` to ``out`` (default :func:`default_path`) atomically; return the path."""
    from smtpbench.load.results import write_atomic

    path = Path(out) if out is not None else default_path(runs)
    page = build_report(runs)
    try:
        write_atomic(path, page)
    except OSError as exc:  # its temporary file's name, or none: name the file the user asked for
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    return path
