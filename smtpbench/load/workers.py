"""``smtpbench run --workers N``: one run over N worker processes, one result.

Theory of operation
-------------------
One Python process drives one core.  With ``workload.workers = N`` (``--workers N|auto``)
the parent process generates no load itself; it

* **plans** the parts with :mod:`smtpbench.load.split`: worker ``w`` is part ``w`` of
  ``N`` (of a shard: :meth:`Part.sub`), so closed sessions, stage targets, the message
  budget and ``max_in_flight`` are split exactly, rates divided with the arrival process
  kept (uniform: phase offsets; Poisson: independent streams), ``{n}`` strided and
  unique, seeds derived per worker and recorded in each worker's summary;
* **starts** the N workers (``python -m smtpbench.load.worker_process``, each in its own
  session, so a terminal's Ctrl-C reaches the parent only), hands each its job
  (:mod:`smtpbench.load.worker_process`), waits until every one is ready, and gives them
  one common start time, as shards get with ``--start-at``;
* **follows** each worker's ``histograms.hlog`` and ``timeline.jsonl`` under
  ``RUN/workers/<w>/`` as they are flushed every interval (the files are the stream:
  whatever reached the parent is also on disk when a worker dies), merging them into
  one live recorder for the progress view, the thresholds (an ``abort_on_fail`` one
  that fails stops every worker) and ``--metrics-port``;
* **forwards** SIGINT/SIGTERM to every worker as SIGINT (first: arrivals stop, sessions
  get the grace period; second: at once), and bounds every wait: workers still running
  ``grace`` + :data:`STOP_SLACK_S` after a stop get a second SIGINT, then SIGKILL;
* **merges** the workers' folders at the end with :func:`smtpbench.load.merge.write_merged`
  (losslessly, as ``smtpbench merge`` does) into RUN itself: one ``histograms.hlog``,
  one set of ``.hgrm``, one ``summary.json`` plus ``workers: [...]``.

A worker that dies (killed, crashed) does not end the run: the others go on, and its
part is kept up to its last flushed interval (counts and errors from its timeline,
latencies from its hlog; its replies by code, kept only in a worker's own summary, are
lost), and
the run's status is ``degraded``.

The embedded sink (``target.embedded``) is started once, by the parent, for all workers.
``[delivery]`` and ``--trace`` are not supported with workers (refused before any traffic).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from collections import Counter
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import trio

from smtpbench.errors import ConfigError, RunError
from smtpbench.load.execute import RunOutcome, embedded_sink_args
from smtpbench.load.merge import PartResult, combined_status, read_part, reevaluate_thresholds, write_merged
from smtpbench.load.profile import Profile, resolved_toml
from smtpbench.load.results import ResultsDir, new_run_id, write_atomic
from smtpbench.load.split import Part, plan_shard
from smtpbench.load.supervisor import Supervisor, Worker
from smtpbench.metrics.hlog import read_hlog
from smtpbench.metrics.recorder import new_histogram
from smtpbench.metrics.summary import build_summary
from smtpbench.metrics.timeline import read_timeline
from smtpbench.report.progress import choose_mode

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram


def check_workers(profile: Profile, trace: int) -> None:
    """Refuse (ConfigError, exit 2) what a run over several workers does not support."""
    if profile.delivery is not None:
        raise ConfigError("[delivery] is not supported with several workers", key="workload.workers",
                          hint="track delivery with one worker")  # fmt: skip
    if trace:
        raise ConfigError("--trace is not supported with several workers", key="--trace",
                          hint="trace with one worker")  # fmt: skip


# --- the one result ------------------------------------------------------------


def _how(returncode: int | None) -> str:
    """How a worker process ended, in words."""
    if returncode is None:
        return "never started"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def lost_part(worker: Worker, sup: Supervisor) -> PartResult | None:
    """The results of a worker that wrote no summary, up to its last flushed interval (None: nothing flushed).

    Counters come from its timeline (changes per interval), latencies from its
    hlog; the summary written into its folder says how it ended (status ``failed``).
    """
    folder = worker.folder
    if not (folder / "histograms.hlog").is_file() or not (folder / "profile.toml").is_file():
        return None
    base, intervals = read_hlog(folder / "histograms.hlog")
    lines = read_timeline(folder / "timeline.jsonl")
    totals: dict[str, HdrHistogram] = {}
    for iv in intervals:
        totals.setdefault(iv.tag, new_histogram()).add(iv.histogram)
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for line in lines:
        counts.update(line.get("counts", {}))
        errors.update(line.get("errors", {}))
    ends = [iv.start + iv.length for iv in intervals] + [float(x.get("t", 0)) + float(x.get("len", 0)) for x in lines]
    elapsed = max(ends, default=0.0)
    wl, plan = plan_shard(sup.profile.workload, worker.part, None)
    summary = build_summary(
        run_id=folder.name,
        status="failed",
        started_at=dt.datetime.fromtimestamp(base, dt.UTC).isoformat(timespec="seconds"),
        elapsed_s=elapsed,
        histograms=totals,
        counters={"counts": dict(counts), "errors": dict(errors), "replies": {}, "unexpected_replies": {}},
        model=wl.model,
        target=f"{sup.address[0]}:{sup.address[1]}",
        extra={
            "profile": sup.profile.path,
            "seed": wl.seed,
            "status_reason": f"worker {worker.index} {_how(worker.returncode)}; "
            f"its results up to its last interval ({elapsed:.1f}s) are kept",
            "unfinished": {},
            "unfinished_min_wait_us": {},
            "shard": plan.record(),
        },
    )
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    return read_part(folder)


def worker_record(worker: Worker, part: PartResult | None, wrote_summary: bool) -> dict[str, Any]:
    """One entry of ``summary.workers``: which worker ended how, and what it did."""
    s = part.summary if part is not None else {}
    generator = s.get("generator") or {}
    return {
        "index": worker.index,
        "part": {"index": worker.part.index, "count": worker.part.count},
        "pid": worker.proc.pid if worker.proc is not None else None,
        "status": s.get("status", "failed") if wrote_summary else _how(worker.returncode),
        "exit_code": worker.returncode,
        "seed": (s.get("shard") or {}).get("seed"),
        "elapsed_s": s.get("elapsed_s"),
        "messages_accepted": (s.get("counts") or {}).get("messages_accepted", 0),
        "cpu_percent": generator.get("cpu_percent_p50"),
        "status_reason": s.get("status_reason"),
    }


def _worker_reason(record: dict[str, Any]) -> str:
    """Why one worker did not complete, said once: a lost worker's own reason already names it and its end."""
    head = f"worker {record['index']} {record['status']}"
    reason = record["status_reason"]
    if not reason:
        return head
    return reason if reason.startswith(head) else f"{head}: {reason}"


def merge_workers(sup: Supervisor) -> dict[str, Any]:
    """Merge the workers' folders into the run's folder; return its summary (written, thresholds judged).

    The status is the workers' common one; a worker that wrote no summary of
    its own (killed, crashed) or exited otherwise than 0 makes it ``degraded``
    (``failed`` when no worker completed anything).
    """
    parts: list[PartResult] = []
    records = []
    lost = 0
    for worker in sup.workers:
        wrote = (worker.folder / "summary.json").is_file()
        try:
            part = read_part(worker.folder) if wrote else lost_part(worker, sup)
        except ConfigError:  # a folder cut short before its first line
            part = None
        lost += not wrote or worker.returncode != 0
        if part is not None:
            parts.append(part)
        records.append(worker_record(worker, part, wrote))
    statuses = [str(p.summary.get("status", "failed")) for p in parts]
    status = combined_status(statuses, len(sup.workers) - len(parts)) if parts else "failed"
    if lost and status != "failed":
        status = "degraded"
    if status == "interrupted" and sup.status == "aborted_by_threshold":
        status = sup.status
    reasons = [_worker_reason(r) for r in records if r["status"] != "completed"]
    reason = sup.reason or ("; ".join(reasons) if status != "completed" and reasons else None)
    if not parts:
        raise RunError(f"no worker left any results: {reason}")
    extra: dict[str, Any] = {"workers": records}
    if sup.shard.count > 1 or sup.start_at is not None:  # workers of a shard: the merged folder is the shard's
        extra["shard"] = plan_shard(sup.profile.workload, sup.shard, sup.start_at)[1].record()
    summary = write_merged(sup.results, parts, status, reason, extra, label="worker")
    reevaluate_thresholds(sup.criteria, summary)
    sup.results.write_final(summary, summary.pop("_totals"))
    return summary


def run_workers(
    profile: Profile,
    count: int,
    *,
    quiet: bool = False,
    progress: str | None = None,
    shard: Part | None = None,
    start_at: float | None = None,
) -> RunOutcome:
    """Run ``profile`` (the whole run's, or a shard's with ``shard``) over ``count`` worker processes.

    Raises ConfigError (exit 2) or RunError (exit 3) before any traffic, like
    :func:`smtpbench.load.execute.execute`; after that the merged results are
    always written (module notes).
    """
    shard = shard or Part()
    for w in range(count):  # every worker's share is checked before anything starts
        try:
            plan_shard(profile.workload, shard.sub(w, count), None)
        except ConfigError as exc:
            exc.hint = f"use fewer workers{' or shards' if shard.count > 1 else ''}, or raise {exc.key}"
            raise
    results = ResultsDir(profile.output.results_dir, new_run_id())
    results.write_profile(resolved_toml(profile))
    (results.path / "workers").mkdir()
    mode = choose_mode(progress or profile.output.progress, quiet)
    with ExitStack() as stack:
        address = (profile.target.host, profile.target.port)
        if profile.target.embedded:
            from smtpbench.sink.embedded import EmbeddedSink

            try:
                address = stack.enter_context(EmbeddedSink(embedded_sink_args(profile)))
            except (OSError, RuntimeError) as exc:
                raise RunError(f"could not start the embedded sink: {exc}") from None
        sup = Supervisor(profile, count, shard, start_at, results, address, mode)
        out = profile.output
        if out.metrics_port is not None:
            from smtpbench.metrics.exposition import LiveMetrics

            info = {"run_id": results.run_id, "model": profile.workload.model, "target": f"{address[0]}:{address[1]}"}
            sup.live = stack.enter_context(LiveMetrics(out.metrics_host, out.metrics_port, info, out.metrics_linger))
        try:
            trio.run(sup.main)
        finally:
            for worker in sup.workers:  # never leave a worker behind, whatever ended the loop
                if worker.running and worker.proc is not None:
                    worker.proc.kill()
        summary = merge_workers(sup)
    return RunOutcome(summary["status"], str(results.path), summary)
