"""``smtpbench merge``: the results of a split run's parts, merged into one run's results.

Theory of operation
-------------------
Each part (a shard, and later a worker) wrote an ordinary results folder plus
``shard = {index, count, seed}`` in its summary.  Merging is exact:

* **histograms**: every interval histogram of every part goes into exactly one
  merged interval of the same tag (the interval grid of the earliest part; a
  part's interval goes where its midpoint falls: :mod:`smtpbench.metrics.grid`), so the merged log and the
  merged totals hold exactly the values the parts recorded: HdrHistogram
  addition is lossless for histograms of one layout;
* **counters** are summed (:func:`smtpbench.metrics.recorder.merge_snapshots`:
  unfinished sessions per phase summed, their shortest wait the minimum),
  phase statistics recomputed from the merged totals and throughput taken
  over the merged span of the load (earliest start to latest end of a part's
  load, its ``[delivery]`` wait left out), by the same
  :func:`smtpbench.metrics.summary.build_summary` a run uses;
* **timeline** (``timeline.jsonl``): each part's lines go to the same grid
  cells as its histograms, counter changes summed, in-flight sessions added
  up across parts;
* **generator health** stays per part (a CPU share does not add up across
  machines): a list, saturated if any part was;
* **status**: the parts' common status, else ``degraded`` (some failed or
  were interrupted, or are missing); **thresholds** are judged again on the
  merged summary, as a run judges them on its own.

Parts are checked before anything is written: they must have run the same
profile and be parts of the same count; a part given twice (a retried
Kubernetes pod leaves the failed attempt's folder next to the new one) counts
once, by its latest start.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from smtpbench.config import shown
from smtpbench.errors import ConfigError
from smtpbench.load.extensions import join_counts, split_counts
from smtpbench.load.profile import profile_from_dict
from smtpbench.load.results import ResultsDir
from smtpbench.metrics.clients import ClientTally
from smtpbench.metrics.grid import LoggedInterval, cell_span, grid_cells, merge_intervals
from smtpbench.metrics.hlog import HlogWriter, LogInterval, read_hlog
from smtpbench.metrics.recorder import merge_snapshots, new_histogram
from smtpbench.metrics.summary import build_summary, check_summary
from smtpbench.metrics.thresholds import Threshold, evaluate
from smtpbench.metrics.timeline import read_timeline
from smtpbench.metrics.tlsstats import join_tls, split_tls
from smtpbench.units import parse_duration


def combined_status(statuses: Sequence[str], missing: int = 0) -> str:
    """The merged run's status: the parts' common status, else (or with parts missing) ``degraded``."""
    if not missing and len(set(statuses)) == 1:
        return statuses[0]
    return "degraded"


@dataclass
class PartResult:
    """One part's results folder, read."""

    path: Path
    summary: dict[str, Any]
    base: float
    intervals: list[LogInterval]
    profile_text: str
    timeline: list[dict[str, Any]]

    @property
    def index(self) -> int:
        return int(self.summary["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.summary["shard"]["count"])

    @property
    def end(self) -> float:
        return self.base + float(self.summary.get("elapsed_s", 0.0))

    @property
    def load_end(self) -> float:
        """When its load ended (before a [delivery] wait; summaries without ``load_s``: its end)."""
        return self.base + float(self.summary.get("load_s", self.summary.get("elapsed_s", 0.0)))


def find_runs(dirs: Sequence[str]) -> list[Path]:
    """Run folders in ``dirs``, each once: each is one (it has summary.json) or holds some (subfolders that have one).

    Raises ConfigError for a folder that is neither.
    """
    found: list[Path] = []
    for d in dirs:
        path = Path(d)
        if (path / "summary.json").is_file():
            found.append(path)
            continue
        subs = sorted(p for p in path.iterdir() if (p / "summary.json").is_file()) if path.is_dir() else []
        if not subs:
            what = "holds no run folder (no summary.json in it or its subfolders)" if path.is_dir() else "not found"
            raise ConfigError(f"{shown(d, 200)}: {what}", expected="shard results folders")
        found.extend(subs)
    unique = {p.resolve(): p for p in reversed(found)}  # one folder named twice (shard-0 and shard-*) is one part
    return [p for p in found if unique[p.resolve()] is p]


def read_part(path: Path) -> PartResult:
    """Read one part's folder (summary.json, histograms.hlog, profile.toml); ConfigError if it is not one."""
    try:
        summary = check_summary(json.loads((path / "summary.json").read_text("utf-8")))
        profile_text = (path / "profile.toml").read_text("utf-8")
        base, intervals = read_hlog(path / "histograms.hlog")
        timeline = read_timeline(path / "timeline.jsonl")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{shown(str(path), 200)}: not a complete results folder ({exc})") from None
    shard = summary.get("shard") if isinstance(summary, dict) else None
    if not isinstance(shard, dict) or not {"index", "count"} <= shard.keys():
        raise ConfigError(
            f"{shown(str(path), 200)}: not a shard's results (no shard in summary.json)",
            hint="merge runs made with --shard I/N",
        )
    if not 0 <= shard["index"] < shard["count"]:
        raise ConfigError(
            f"{shown(str(path), 200)}: summary.json: shard {shard['index']}/{shard['count']} is not a shard"
            " (0 <= index < count)"
        )
    if summary.get("proxy") is not None:
        try:
            ClientTally.from_dict(summary["proxy"])
        except ValueError as exc:
            raise ConfigError(f"{shown(str(path), 200)}: summary.json: {exc}") from None
    return PartResult(path, summary, base, intervals, profile_text, timeline)


#: Keys the shards of one run may differ in: where each wrote, and the seed each drew when the profile had none.
PER_SHARD_KEYS = (("output", "results_dir"), ("workload", "seed"), ("target", "sink", "seed"))


def _profile_body(text: str) -> Any:
    """The profile's settings, less :data:`PER_SHARD_KEYS` (the text itself if it is not TOML)."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text
    for path in PER_SHARD_KEYS:
        table = data
        for name in path[:-1]:
            table = table.get(name) if isinstance(table, dict) else None  # type: ignore[assignment]
        if isinstance(table, dict):
            table.pop(path[-1], None)
    return data


def select_parts(parts: list[PartResult]) -> tuple[list[PartResult], list[PartResult], list[int]]:
    """``(used, superseded, missing indexes)``: one part per index (the latest started), checked alike.

    Raises ConfigError when parts have different counts or profiles.
    """
    counts = {p.count for p in parts}
    if len(counts) > 1:
        raise ConfigError(f"the folders are parts of different splits (counts {sorted(counts)})")
    first = parts[0]
    for p in parts[1:]:
        if _profile_body(p.profile_text) != _profile_body(first.profile_text):
            raise ConfigError(
                f"{shown(str(p.path), 200)} ran another profile than {shown(str(first.path), 200)}",
                hint="merge only the shards of one run",
            )
    latest: dict[int, PartResult] = {}
    for p in sorted(parts, key=lambda p: p.base):
        latest[p.index] = p
    used = [latest[i] for i in sorted(latest)]
    superseded = [p for p in parts if latest[p.index] is not p]
    missing = [i for i in range(first.count) if i not in latest]
    return used, superseded, missing


def _counters(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "counts": {**summary.get("counts", {}), **join_tls(summary.get("tls")), **join_counts(summary)},
        "errors": summary.get("errors", {}),
        "replies": summary.get("replies", {}),
        "unexpected_replies": summary.get("unexpected_replies", {}),
        "unfinished": summary.get("unfinished", {}),
        "unfinished_min_wait_us": summary.get("unfinished_min_wait_us", {}),
        "proxy": summary.get("proxy"),  # PROXY protocol clients: merged as a union
    }


@dataclass
class _TimelineLine:
    """One part's ``timeline.jsonl`` line on the epoch clock."""

    part: int
    line: dict[str, Any]
    base: float

    @property
    def start(self) -> float:
        return self.base + float(self.line.get("t", 0.0))

    @property
    def end(self) -> float:
        return self.start + float(self.line.get("len", 0.0))


def merge_timeline(parts: Sequence[PartResult], base: float, step: float) -> Iterator[dict[str, Any]]:
    """The merged ``timeline.jsonl`` lines, in time order, on the merged hlog's base time.

    Lines go to the same grid cells as the histograms (:func:`grid_cells`);
    counter changes (and PROXY ``proxy_announced``) are summed; ``in_flight``
    (sampled at an interval's end) is the sum over parts of each part's last
    sample in the cell.
    """
    pieces = (_TimelineLine(p.index, line, p.base) for p in parts for line in p.timeline)
    for k, group in grid_cells(pieces, base, step):
        start, end = cell_span(group, base, step, k)
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        in_flight: dict[int, tuple[float, int]] = {}
        announced = 0
        for piece in group:
            announced += int(piece.line.get("proxy_announced", 0))
            counts.update(piece.line.get("counts", {}))
            errors.update(piece.line.get("errors", {}))
            last = in_flight.get(piece.part)
            if last is None or piece.end >= last[0]:
                in_flight[piece.part] = (piece.end, int(piece.line.get("in_flight", 0)))
        line = {
            "t": round(start - base, 3),
            "len": round(end - start, 3),
            "in_flight": sum(n for _, n in in_flight.values()),
            "counts": dict(sorted(counts.items())),
            "errors": dict(sorted(errors.items())),
        }
        yield line | ({"proxy_announced": announced} if announced else {})


def merged_generator(parts: Sequence[PartResult], label: str = "shard") -> dict[str, Any]:
    """``summary.generator`` of the merged run: each part's own verdict, saturated if any part's was.

    A CPU share or a loop lag is a property of one process on one machine, so
    they are listed per part rather than added up.
    """
    per_part = [
        {"index": p.index, **p.summary["generator"]} for p in parts if isinstance(p.summary.get("generator"), dict)
    ]
    saturated = [g for g in per_part if g.get("saturated")]
    reason = "; ".join(f"{label} {g['index']}: {g.get('reason')}" for g in saturated) or None
    return {"saturated": bool(saturated), "reason": reason, f"{label}s": per_part}


def merged_reason(parts: Sequence[PartResult], status: str, missing: Sequence[int]) -> str | None:
    """``summary.status_reason`` of the merged run: why it is not completed, in words (None when it is)."""
    if status == "completed":
        return None
    words = [
        f"shard {p.index} {p.summary.get('status')}"
        + (f": {p.summary['status_reason']}" if p.summary.get("status_reason") else "")
        for p in parts
        if p.summary.get("status") != "completed"
    ]
    if missing:
        words.append("shards missing: " + ", ".join(map(str, missing)))
    return "; ".join(words) or None


def _interval_step(profile_text: str) -> float:
    """The profile's histogram log interval (s), 1 s if it cannot be read."""
    try:
        value = tomllib.loads(profile_text).get("output", {}).get("interval", "1s")
        return parse_duration(value, "output.interval", positive=True)
    except (tomllib.TOMLDecodeError, ConfigError, AttributeError):
        return 1.0


def _profile_data(part: PartResult) -> dict[str, Any]:
    """The part's resolved profile as a dict (ConfigError if it is not TOML)."""
    try:
        return tomllib.loads(part.profile_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown(str(part.path / 'profile.toml'), 200)}: not TOML ({exc})") from None


def run_criteria(part: PartResult) -> list[Threshold]:
    """The run's thresholds, to be judged again on the merged summary (:func:`reevaluate_thresholds`).

    Every shard's ``profile.toml`` is the whole run's resolved profile (its
    ``--threshold`` options included), validated again here as a run's is,
    less ``target.ca_file``: a file that exists where the shards ran need not
    where they are merged, and thresholds do not depend on it.  A bad profile
    is a ConfigError (exit 2).
    """
    data = _profile_data(part)
    if not data.get("thresholds"):
        return []
    target = data.get("target")
    if isinstance(target, dict):
        target.pop("ca_file", None)
    return profile_from_dict(data, str(part.path / "profile.toml")).criteria()


def reevaluate_thresholds(criteria: list[Threshold], summary: dict[str, Any]) -> None:
    """Judge ``criteria`` on the merged summary: ``summary["thresholds"]`` as ``run`` writes it (none: unchanged)."""
    if criteria:
        summary["thresholds"] = evaluate(criteria, summary)


@dataclass
class MergeOutcome:
    """What a merge produced: like a run's outcome, plus what was left out."""

    status: str
    results_path: str
    summary: dict[str, Any]
    superseded: list[str]
    missing: list[int]
    #: Whether the run's profile asks for report.html (``[output] report``).
    report: bool = True


def merge_runs(dirs: Sequence[str], out: str) -> MergeOutcome:
    """Merge the part folders in ``dirs`` into the new folder ``out`` (a run's layout).

    Raises ConfigError (exit 2) for bad input, before writing anything (a corrupt histogram payload, found only
    when merged, removes what was written), and RunError (exit 3) when ``out`` cannot be written.
    """
    out_path = Path(out)
    if out_path.exists():
        raise ConfigError(f"{shown(out, 200)} already exists", key="-o", hint="give a new folder for the merged run")
    parts, superseded, missing = select_parts([read_part(p) for p in find_runs(dirs)])
    first = parts[0]
    report = bool(_profile_data(first).get("output", {}).get("report", True))
    criteria = run_criteria(first)  # checked before anything is written
    results = ResultsDir(str(out_path.parent), out_path.name)
    results.write_profile(f"# Merged from {len(parts)} of {first.count} shards of:\n" + first.profile_text)
    status = combined_status([p.summary.get("status", "failed") for p in parts], len(missing))
    extra = {"shards": [_part_record(p) for p in parts], "shards_missing": missing}
    try:
        summary = write_merged(results, parts, status, merged_reason(parts, status, missing), extra)
    except ValueError as exc:  # a corrupt payload in a shard's log, met when decoded: leave nothing behind
        shutil.rmtree(results.path, ignore_errors=True)
        raise ConfigError(f"unreadable shard results: {exc}") from None
    reevaluate_thresholds(criteria, summary)
    results.write_final(summary, summary.pop("_totals"))
    superseded_paths = [str(p.path) for p in superseded]
    return MergeOutcome(status, str(results.path), summary, superseded_paths, missing, report)


def write_merged(
    results: ResultsDir,
    parts: Sequence[PartResult],
    status: str,
    reason: str | None,
    extra: dict[str, Any],
    label: str = "shard",
) -> dict[str, Any]:
    """Write the parts' merged ``histograms.hlog`` and ``timeline.jsonl`` into ``results``; return the summary.

    The summary (not yet written, thresholds not yet judged) carries the merged
    totals under ``"_totals"`` for :meth:`ResultsDir.write_final`; ``extra``
    goes into it as is, and the generator health is listed per ``label``
    (``shard`` or ``worker``).  Used by ``merge`` and by ``run --workers``.
    """
    first = parts[0]
    base = min(p.base for p in parts)
    step = _interval_step(first.profile_text)
    totals: dict[str, HdrHistogram] = {}
    hlog = HlogWriter(results.open_hlog(), base)
    try:
        pieces = (LoggedInterval(line, p.base) for p in parts for line in p.intervals)
        for cell in merge_intervals(pieces, base, step):
            hlog.write(cell)
            for iv in cell:
                totals.setdefault(iv.tag, new_histogram()).add(iv.histogram)
        timeline = results.open_timeline()
        for line in merge_timeline(parts, base, step):
            timeline.write(json.dumps(line, separators=(",", ":")) + "\n")
    finally:
        results.close_hlog()  # and the timeline
    _, counters = merge_snapshots([{"histograms": {}, "counters": _counters(p.summary)} for p in parts])
    counters, usage = split_counts(counters)
    counters["counts"], tls = split_tls(counters["counts"])
    targets = sorted({str(p.summary.get("target", "")) for p in parts})
    summary = build_summary(
        run_id=results.run_id,
        status=status,
        started_at=dt.datetime.fromtimestamp(base, dt.UTC).isoformat(timespec="seconds"),
        elapsed_s=max(p.end for p in parts) - base,
        throughput_s=max(p.load_end for p in parts) - base,
        histograms=totals,
        counters=counters,
        model=str(first.summary.get("model", "")),
        target=", ".join(targets),
        extra={
            "profile": first.summary.get("profile"),
            "seed": first.summary["shard"].get("base_seed", first.summary.get("seed")),
            "values_clamped": sum(int(p.summary.get("values_clamped", 0)) for p in parts),
            "status_reason": reason,
            "unfinished": counters.pop("unfinished"),
            "unfinished_min_wait_us": counters.pop("unfinished_min_wait_us"),
            "generator": merged_generator(parts, label),
            **usage,
            **extra,
            **({"tls": tls} if tls is not None else {}),
        },
    )
    summary["_totals"] = totals
    return summary


def _part_record(p: PartResult) -> dict[str, Any]:
    s = p.summary
    return {
        **s["shard"],
        "status": s.get("status"),
        "results": str(p.path),
        "run_id": s.get("run_id"),
        "started_at": s.get("started_at"),
        "elapsed_s": s.get("elapsed_s"),
        "messages_accepted": s.get("counts", {}).get("messages_accepted", 0),
    }
