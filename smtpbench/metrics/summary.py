"""``summary.json``: the run's figures in one documented, versioned document.

The layout is part of the results format (README, "summary.json").  Phase
statistics are computed from the total histograms once, at the end.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

from smtpbench.metrics import tlsstats
from smtpbench.metrics.hgrm import mean_and_stddev, values_at_percentiles
from smtpbench.metrics.recorder import new_histogram

SCHEMA_VERSION = 1

#: Service phases in the order a session goes through them (others follow, sorted).
PHASE_ORDER = (
    "connect",
    tlsstats.COMBINED,
    tlsstats.FULL,
    tlsstats.RESUMED,
    "banner",
    "ehlo",
    "starttls",
    "auth",
    "mail",
    "rcpt",
    "data",
    "bdat",  # RFC 3030 chunks before the last (the last one's reply is data_end)
    "data_end",
    "rset",
    "quit",
    "transaction",
    "session",
    "unfinished_wait",
)
#: Every phase name a run can record (thresholds and compare check names against it).
KNOWN_PHASES = (*PHASE_ORDER, "schedule_lag", "unfinished_wait", "generator.loop_lag", "delivery", "end_to_end")
#: Counts of the ``delivery`` section (README, "Delivery latency") that thresholds and compare may name.
DELIVERY_COUNTS = ("lost", "duplicated", "unexpected", "rejected_but_delivered")
CORRECTED_PREFIX = "corrected."
SCHEDULE_LAG = "schedule_lag"
#: Histograms of the generator itself (``generator.loop_lag``): in the hlog, summarised under ``generator``.
GENERATOR_PREFIX = "generator."


def phase_stats(h: HdrHistogram) -> dict[str, Any]:
    """count, min, mean and percentiles (p50 .. p99.9) and max, in µs."""
    n = h.get_total_count()
    if n == 0:
        return {"count": 0}
    # values_at_percentiles: hdrh's values (a test holds them equal), without its walk over every bucket.
    p50, p90, p99, p999 = values_at_percentiles(h, (50.0, 90.0, 99.0, 99.9))
    return {
        "count": n,
        "min_us": int(h.get_min_value()),
        "mean_us": round(mean_and_stddev(h)[0], 1),
        "p50_us": p50,
        "p90_us": p90,
        "p99_us": p99,
        "p999_us": p999,
        "max_us": int(h.get_max_value()),
    }


def _combined(histograms: dict[str, HdrHistogram]) -> dict[str, HdrHistogram]:
    """``histograms`` plus the ``tls`` phase of every handshake: ``tls.full`` and ``tls.resumed`` added together."""
    parts = [histograms[t] for t in (tlsstats.FULL, tlsstats.RESUMED) if t in histograms]
    if not parts or tlsstats.COMBINED in histograms:
        return histograms
    both = new_histogram()
    for h in parts:
        both.add(h)
    return {**histograms, tlsstats.COMBINED: both}


def _ordered(tags: list[str]) -> list[str]:
    known = [t for t in PHASE_ORDER if t in tags]
    return known + sorted(t for t in tags if t not in PHASE_ORDER)


def build_summary(
    *,
    run_id: str,
    status: str,
    started_at: str,
    elapsed_s: float,
    histograms: dict[str, HdrHistogram],
    counters: dict[str, Any],
    model: str,
    target: str,
    extra: dict[str, Any] | None = None,
    throughput_s: float | None = None,
) -> dict[str, Any]:
    """Assemble the summary document (see README, "summary.json").

    ``throughput`` divides the counts by ``throughput_s`` (the load's span; ``elapsed_s`` when not given).

    Every outcome count is present (0 when nothing happened), so the
    accounting identities of the README hold on the document as written.
    """
    counts = {
        "sessions_started": 0,
        "sessions_completed": 0,
        "sessions_failed": 0,
        "sessions_unfinished": 0,
        "messages_sent": 0,
        "messages_accepted": 0,
        "messages_rejected": 0,
        "messages_failed": 0,
        "messages_unfinished": 0,
        "errors": 0,
    }
    counts.update(counters.get("counts", {}))
    counts["errors"] = sum(counters.get("errors", {}).values())
    if "arrivals_dropped" in counts:
        counts["arrivals_intended"] = counts["sessions_started"] + counts["arrivals_dropped"]
    elapsed = max(elapsed_s if throughput_s is None else throughput_s, 1e-9)
    histograms = _combined(histograms)
    service = [t for t in histograms if not t.startswith((CORRECTED_PREFIX, GENERATOR_PREFIX)) and t != SCHEDULE_LAG]
    corrected = sorted(t for t in histograms if t.startswith(CORRECTED_PREFIX))
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": status,
        "started_at": started_at,
        "elapsed_s": round(elapsed_s, 3),
        "load_s": round(elapsed, 3),
        "model": model,
        "target": target,
        "counts": counts,
        "throughput": {
            "messages_per_s": round(counts["messages_accepted"] / elapsed, 2),
            "messages_sent_per_s": round(counts["messages_sent"] / elapsed, 2),
            "sessions_per_s": round(counts["sessions_completed"] / elapsed, 2),
        },
        "phases": {t: phase_stats(histograms[t]) for t in _ordered(service)},
        "replies": counters.get("replies", {}),
        "unexpected_replies": counters.get("unexpected_replies", {}),
        "errors": counters.get("errors", {}),
    }
    if model == "open" or corrected:
        doc["corrected"] = {t[len(CORRECTED_PREFIX) :]: phase_stats(histograms[t]) for t in corrected}
        lag = histograms.get(SCHEDULE_LAG)
        doc["schedule_lag"] = phase_stats(lag) if lag is not None else {"count": 0}
    if counters.get("proxy") is not None:
        doc["proxy"] = counters["proxy"]
    if extra:
        doc.update(extra)
    return doc


# ------------------------------------------------------------------ reading one back

#: Sections that map names to numbers, and those that map names to such maps, as readers use them.
_NUMBER_MAPS = (
    *("counts", "throughput", "errors", "unfinished", "unfinished_min_wait_us"),
    *("transfer", "extensions", "unsupported"),
)
_MAPS_OF_NUMBER_MAPS = ("phases", "corrected", "replies", "unexpected_replies")
_MAPS = ("schedule_lag", "generator", "tls", "proxy", "delivery", "shard")


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number_map(key: str, value: object) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{key} is {type(value).__name__}, not an object")
    for name, n in value.items():
        if not _is_number(n):
            raise ValueError(f"{key}.{name} is {n!r}, not a number")


def check_summary(doc: object) -> dict[str, Any]:
    """``doc`` (a ``summary.json`` read back) if it has this version's layout, else ``ValueError`` naming the key.

    Guarantees to ``compare``, ``report`` and ``merge`` that every section they read has the type a run writes
    (sections may be absent: older versions lack some), so a summary of another version or a hand-edited one is
    one error line rather than a traceback half-way through.  A ``schema_version`` other than this one's is refused.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("counts"), dict):
        raise ValueError("not a run summary")
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}, this smtpbench reads {SCHEMA_VERSION}")
    for key in _NUMBER_MAPS:
        if key in doc:
            _number_map(key, doc[key])
    for key in _MAPS_OF_NUMBER_MAPS:
        if key in doc:
            if not isinstance(doc[key], dict):
                raise ValueError(f"{key} is {type(doc[key]).__name__}, not an object")
            for name, inner in doc[key].items():
                _number_map(f"{key}.{name}", inner)
    for key in _MAPS:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ValueError(f"{key} is {type(doc[key]).__name__}, not an object")
    thresholds = doc.get("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(t, dict) for t in thresholds):
        raise ValueError("thresholds is not a list of objects")
    for key in ("elapsed_s", "load_s"):
        if not _is_number(doc.get(key, 0)):
            raise ValueError(f"{key} is {doc[key]!r}, not a number")
    shard = doc.get("shard")
    if shard is not None and not all(isinstance(shard.get(k), int) for k in ("index", "count")):
        raise ValueError("shard.index and shard.count must be integers")
    return doc
