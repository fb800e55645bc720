"""``smtpbench merge``: the results of a split run's parts, merged into one run's results.

Theory of operation
-------------------
Each part (a shard, and later a worker) wrote an ordinary results folder plus
``shard = {index, count, seed}`` in its summary.  Merging is exact:

* **histograms**: every interval histogram of every part goes into exactly one
  merged interval of the same tag (the interval grid of the earliest part; a
  part's interval goes where its midpoint falls), so the merged log and the
  merged totals hold exactly the values the parts recorded: HdrHistogram
  addition is lossless for histograms of one layout;
* **counters** are summed (:func:`smtpbench.metrics.recorder.merge_snapshots`),
  phase statistics recomputed from the merged totals and throughput taken
  over the merged wall-clock span (earliest start to latest end), by the same
  :func:`smtpbench.metrics.summary.build_summary` a run uses;
* **status**: the parts' common status, else ``degraded`` (some failed or
  were interrupted, or are missing).

Parts are checked before anything is written: they must have run the same
profile and be parts of the same count; a part given twice (a retried
Kubernetes pod leaves the failed attempt's folder next to the new one) counts
once, by its latest start.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from smtpbench.config import shown
from smtpbench.errors import ConfigError
from smtpbench.load.results import ResultsDir
from smtpbench.metrics.hlog import HlogWriter, LogInterval, read_hlog
from smtpbench.metrics.recorder import Interval, merge_snapshots, new_histogram
from smtpbench.metrics.summary import build_summary
from smtpbench.units import parse_duration


class TimedHistogram(Protocol):
    """An interval histogram with absolute times: a recorder's :class:`Interval`, or one read from a log."""

    @property
    def tag(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def histogram(self) -> HdrHistogram: ...


@dataclass
class _Logged:
    """A :class:`LogInterval` on the epoch clock (its payload decoded only when merged)."""

    line: LogInterval
    base: float

    @property
    def tag(self) -> str:
        return self.line.tag

    @property
    def start(self) -> float:
        return self.base + self.line.start

    @property
    def end(self) -> float:
        return self.base + self.line.start + self.line.length

    @property
    def histogram(self) -> HdrHistogram:
        return self.line.histogram


def merge_intervals(pieces: Iterable[TimedHistogram], base: float, step: float) -> Iterator[list[Interval]]:
    """Merged intervals, in time order: one list (one Interval per tag) per grid cell that has any.

    Grid cell ``k`` is ``[base + k*step, base + (k+1)*step)``; a piece goes to
    the cell of its midpoint, so every piece is counted exactly once.  A
    merged interval spans its pieces' times clipped to the cell.  Pieces are
    decoded one cell at a time, so memory stays bounded by one cell.
    """
    cells: dict[int, list[TimedHistogram]] = defaultdict(list)
    for piece in pieces:
        cells[int(((piece.start + piece.end) / 2 - base) // step)].append(piece)
    for k in sorted(cells):
        by_tag: dict[str, list[TimedHistogram]] = defaultdict(list)
        for piece in cells[k]:
            by_tag[piece.tag].append(piece)
        out = []
        for tag in sorted(by_tag):
            group = by_tag[tag]
            lo, hi = min(p.start for p in group), max(p.end for p in group)
            start, end = max(lo, base + k * step), min(hi, base + (k + 1) * step)
            if end <= start:  # pieces longer than a cell: keep their own span
                start, end = lo, hi
            h = new_histogram()
            for p in group:
                h.add(p.histogram)
            out.append(Interval(tag, start, end, h))
        yield out


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

    @property
    def index(self) -> int:
        return int(self.summary["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.summary["shard"]["count"])

    @property
    def end(self) -> float:
        return self.base + float(self.summary.get("elapsed_s", 0.0))


def find_runs(dirs: Sequence[str]) -> list[Path]:
    """Run folders in ``dirs``: each is one (it has summary.json) or holds some (its subfolders that have one).

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
    return found


def read_part(path: Path) -> PartResult:
    """Read one part's folder (summary.json, histograms.hlog, profile.toml); ConfigError if it is not one."""
    try:
        summary = json.loads((path / "summary.json").read_text("utf-8"))
        profile_text = (path / "profile.toml").read_text("utf-8")
        base, intervals = read_hlog(path / "histograms.hlog")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{shown(str(path), 200)}: not a complete results folder ({exc})") from None
    shard = summary.get("shard") if isinstance(summary, dict) else None
    if not isinstance(shard, dict) or not {"index", "count"} <= shard.keys():
        raise ConfigError(
            f"{shown(str(path), 200)}: not a shard's results (no shard in summary.json)",
            hint="merge runs made with --shard I/N",
        )
    return PartResult(path, summary, base, intervals, profile_text)


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
        "counts": summary.get("counts", {}),
        "errors": summary.get("errors", {}),
        "replies": summary.get("replies", {}),
        "unexpected_replies": summary.get("unexpected_replies", {}),
    }


def _interval_step(profile_text: str) -> float:
    """The profile's histogram log interval (s), 1 s if it cannot be read."""
    try:
        value = tomllib.loads(profile_text).get("output", {}).get("interval", "1s")
        return parse_duration(value, "output.interval", positive=True)
    except (tomllib.TOMLDecodeError, ConfigError, AttributeError):
        return 1.0


def reevaluate_thresholds(profile_text: str, summary: dict[str, Any]) -> None:
    """Hook: judge the profile's thresholds on the merged summary.

    Thresholds (``smtpbench/metrics/thresholds.py``) are not on this branch's
    main yet; once they are, this reads them from ``profile_text`` and adds
    their verdicts to ``summary`` as ``run`` does.  Until then it does nothing.
    """


@dataclass
class MergeOutcome:
    """What a merge produced: like a run's outcome, plus what was left out."""

    status: str
    results_path: str
    summary: dict[str, Any]
    superseded: list[str]
    missing: list[int]


def merge_runs(dirs: Sequence[str], out: str) -> MergeOutcome:
    """Merge the part folders in ``dirs`` into the new folder ``out`` (a run's layout).

    Raises ConfigError (exit 2) for bad input, before writing anything, and
    RunError (exit 3) when ``out`` cannot be written.
    """
    out_path = Path(out)
    if out_path.exists():
        raise ConfigError(f"{shown(out, 200)} already exists", key="-o", hint="give a new folder for the merged run")
    parts, superseded, missing = select_parts([read_part(p) for p in find_runs(dirs)])
    first = parts[0]
    base = min(p.base for p in parts)
    step = _interval_step(first.profile_text)
    results = ResultsDir(str(out_path.parent), out_path.name)
    header = f"# Merged from {len(parts)} of {first.count} shards of:\n"
    results.write_profile(header + first.profile_text)
    totals: dict[str, HdrHistogram] = {}
    hlog = HlogWriter(results.open_hlog(), base)
    try:
        pieces = (_Logged(line, p.base) for p in parts for line in p.intervals)
        for cell in merge_intervals(pieces, base, step):
            hlog.write(cell)
            for iv in cell:
                totals.setdefault(iv.tag, new_histogram()).add(iv.histogram)
    finally:
        results.close_hlog()
    _, counters = merge_snapshots([{"histograms": {}, "counters": _counters(p.summary)} for p in parts])
    status = combined_status([p.summary.get("status", "failed") for p in parts], len(missing))
    targets = sorted({str(p.summary.get("target", "")) for p in parts})
    summary = build_summary(
        run_id=results.run_id,
        status=status,
        started_at=dt.datetime.fromtimestamp(base, dt.UTC).isoformat(timespec="seconds"),
        elapsed_s=max(p.end for p in parts) - base,
        histograms=totals,
        counters=counters,
        model=str(first.summary.get("model", "")),
        target=", ".join(targets),
        extra={
            "profile": first.summary.get("profile"),
            "seed": first.summary["shard"].get("base_seed", first.summary.get("seed")),
            "values_clamped": sum(int(p.summary.get("values_clamped", 0)) for p in parts),
            "shards": [_part_record(p) for p in parts],
            "shards_missing": missing,
        },
    )
    reevaluate_thresholds(first.profile_text, summary)
    results.write_final(summary, totals)
    return MergeOutcome(status, str(results.path), summary, [str(p.path) for p in superseded], missing)


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
