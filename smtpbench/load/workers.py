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
part is kept up to its last flushed interval (its counters from its timeline, its
latencies from its hlog; the replies-by-code of an unfinished interval are lost), and
the run's status is ``degraded``.

The embedded sink (``target.embedded``) is started once, by the parent, for all workers.
``[delivery]`` and ``--trace`` are not supported with workers (refused before any traffic).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from smtpbench.errors import ConfigError, RunError
from smtpbench.load.execute import RunOutcome
from smtpbench.load.merge import PartResult, combined_status, read_part, reevaluate_thresholds, write_merged
from smtpbench.load.profile import Profile, resolved_toml
from smtpbench.load.results import ResultsDir, new_run_id, write_atomic
from smtpbench.load.split import Part, plan_shard
from smtpbench.load.worker_process import WorkerJob, job_bytes
from smtpbench.metrics.hlog import interval_line, read_hlog
from smtpbench.metrics.recorder import Interval, Recorder, new_histogram
from smtpbench.metrics.summary import build_summary
from smtpbench.metrics.thresholds import breached, evaluate
from smtpbench.metrics.timeline import read_timeline
from smtpbench.report.progress import ProgressState, choose_mode, show_progress

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

    from smtpbench.metrics.exposition import LiveMetrics

#: How long a worker may take from its start to ``ready`` (imports, profile checks) on a loaded machine.
READY_TIMEOUT_S = 60.0
#: Lead between the last worker's ``ready`` and the common start (each worker still builds its message pool).
START_LEAD_S = 0.5
#: After a stop (signal, threshold, end of the schedule), how much longer than ``grace`` workers get.
STOP_SLACK_S = 10.0
#: After the second SIGINT, how long before SIGKILL.
KILL_AFTER_S = 5.0
#: How often the parent reads the workers' files when the output interval is longer.
FOLLOW_PERIOD_MAX_S = 1.0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on every OS
        return max(os.cpu_count() or 1, 1)


def worker_count(value: int | str) -> int:
    """``workload.workers`` as a number: ``"auto"`` is :func:`usable_cpus`."""
    return usable_cpus() if value == "auto" else int(value)


def parse_workers_option(text: str) -> int | str:
    """``--workers N|auto``: a count 1 .. MAX_WORKERS or ``"auto"``; ConfigError (exit 2) otherwise."""
    from smtpbench.fields import Invalid
    from smtpbench.load.sections import WORKERS_EXPECTED, parse_workers

    value = text.strip()
    try:
        return parse_workers(int(value) if value.isascii() and value.isdigit() else value)
    except Invalid as exc:
        problem = exc.problem if exc.problem.endswith("out of range") else f"{text.strip()!r} is not a worker count"
        raise ConfigError(problem, key="--workers", expected=WORKERS_EXPECTED) from None


def check_workers(profile: Profile, trace: int) -> None:
    """Refuse (ConfigError, exit 2) what a run over several workers does not support."""
    if profile.delivery is not None:
        raise ConfigError("[delivery] is not supported with several workers", key="workload.workers",
                          hint="track delivery with one worker")  # fmt: skip
    if trace:
        raise ConfigError("--trace is not supported with several workers", key="--trace",
                          hint="trace with one worker")  # fmt: skip


class _Follower:
    """Reads the complete lines appended to a file since the last call (a line still being written waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *done, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in done if line]


@dataclass
class Worker:
    """One worker process and what the parent has read of its results so far."""

    index: int
    part: Part
    folder: Path
    proc: trio.Process | None = None
    returncode: int | None = None
    in_flight: int = 0
    hlog: _Follower = field(init=False)
    timeline: _Follower = field(init=False)

    def __post_init__(self) -> None:
        self.hlog = _Follower(self.folder / "histograms.hlog")
        self.timeline = _Follower(self.folder / "timeline.jsonl")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.returncode is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process is still running (it may have exited in the meantime)."""
        if self.running and self.proc is not None:
            with suppress(ProcessLookupError):
                self.proc.send_signal(sig)


class Supervisor:
    """The parent of one run's workers: starts, follows, stops them (module notes)."""

    def __init__(self, profile: Profile, count: int, shard: Part, start_at: float | None,
                 results: ResultsDir, address: tuple[str, int], mode: str) -> None:  # fmt: skip
        self.profile = profile
        self.results = results
        self.address = address
        self.mode = mode
        self.start_at = start_at
        self.shard = shard
        self.workers = [Worker(w, shard.sub(w, count), results.path / "workers" / str(w)) for w in range(count)]
        self.status = "completed"
        #: Why the workers could not be started (the run then fails before any traffic).
        self.failure: str | None = None
        self.reason: str | None = None
        self.stopping = False
        self.signals = 0
        self.started_epoch = time.time()
        self.t0 = time.perf_counter()
        self.recorder = Recorder(self.started_epoch)
        self.criteria = profile.criteria()
        self.judged: list[dict[str, Any]] = []
        self.failing: list[dict[str, Any]] = []
        self.live: LiveMetrics | None = None
        #: perf_counter time of the first stop (inf while running).
        self.stop_at = float("inf")

    # --- jobs ---------------------------------------------------------------

    def _job(self, worker: Worker) -> bytes:
        wl, plan = plan_shard(self.profile.workload, worker.part, None)
        output = self.profile.output.model_copy(
            update={"results_dir": str(worker.folder.parent), "progress": "none", "metrics_port": None}
        )
        mine = dataclasses.replace(self.profile, workload=wl, output=output, thresholds={}, delivery=None)
        return job_bytes(WorkerJob(worker.index, mine, self.profile, plan, worker.folder.name, self.address))

    async def _spawn(self, worker: Worker, nursery: trio.Nursery) -> None:
        """Start ``worker``, hand it its job, wait for its ``ready``; on failure set :attr:`failure`."""
        log = open(worker.folder.parent / f"{worker.index}.stderr", "wb")  # noqa: SIM115 (the child holds it)
        try:
            worker.proc = proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "smtpbench.load.worker_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # Ctrl-C on a terminal reaches the parent only, which forwards it
            )
        except OSError as exc:
            self.failure = self.failure or f"worker {worker.index} did not start: {exc}"
            return
        finally:
            log.close()
        assert proc.stdin is not None and proc.stdout is not None
        nursery.start_soon(self._wait, worker)
        got = b""
        try:
            await proc.stdin.send_all(self._job(worker))
            while b"\n" not in got:
                chunk = await proc.stdout.receive_some(64)
                if not chunk:
                    break
                got += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if got.strip() != b"ready":
            with trio.move_on_after(KILL_AFTER_S):  # let it exit, so that its last words are in its log
                await proc.wait()
            self.failure = self.failure or f"worker {worker.index} did not start: {self._stderr_tail(worker)}"

    def _stderr_tail(self, worker: Worker) -> str:
        path = worker.folder.parent / f"{worker.index}.stderr"
        try:
            lines = [ln for ln in path.read_text("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1][:300] if lines else f"exit code {worker.returncode}"

    async def _wait(self, worker: Worker) -> None:
        assert worker.proc is not None
        worker.returncode = await worker.proc.wait()

    # --- the run ------------------------------------------------------------

    async def main(self) -> None:
        """Start every worker, give them one start time, follow them until the last has exited.

        Raises RunError when a worker does not start (every worker is then killed).
        """
        failure: str | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._signals)
            with trio.move_on_after(READY_TIMEOUT_S) as starting_scope:
                async with trio.open_nursery() as starting:
                    for worker in self.workers:
                        starting.start_soon(self._spawn, worker, nursery)
            if starting_scope.cancelled_caught:
                self.failure = self.failure or f"workers did not start within {READY_TIMEOUT_S:g}s"
            if self.stopping and not self.failure:  # interrupted while the workers were starting
                self.failure = "interrupted while the workers were starting; no traffic was sent"
            failure = self.failure
            if failure is None:
                await self._run(nursery)
            for worker in self.workers:
                if failure is not None:
                    worker.signal(signal.SIGKILL)
                elif worker.proc is not None and worker.proc.stdin is not None:
                    await worker.proc.stdin.aclose()  # end of file lets the worker's orphan watch end
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise RunError(failure)

    async def _run(self, nursery: trio.Nursery) -> None:
        self.started_epoch = self.start_at if self.start_at is not None else time.time() + START_LEAD_S
        self.recorder = Recorder(self.started_epoch)
        for worker in self.workers:
            assert worker.proc is not None and worker.proc.stdin is not None
            await worker.proc.stdin.send_all(f"start {self.started_epoch!r}\n".encode())
        self.t0 = time.perf_counter() + (self.started_epoch - time.time())
        progress = ProgressState(self.recorder, self.t0, self.profile.workload.total_duration,
                                 lambda: sum(w.in_flight for w in self.workers), self._notes)  # fmt: skip
        nursery.start_soon(self._deadline)
        nursery.start_soon(show_progress, progress, self.mode)
        while any(w.running for w in self.workers):
            await trio.sleep(min(self.profile.output.interval, FOLLOW_PERIOD_MAX_S))
            self._follow()
        self._follow()

    def _stop(self) -> None:
        """Stop every worker's arrivals (a first SIGINT each); bounded by :meth:`_deadline`."""
        if not self.stopping:
            self.stopping = True
            self.stop_at = time.perf_counter()
        for worker in self.workers:
            worker.signal(signal.SIGINT)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.signals += 1
                if self.status == "completed":
                    self.status = "interrupted"
                if self.signals == 1:
                    self._stop()
                else:
                    for worker in self.workers:
                        worker.signal(signal.SIGINT)
                    self.stop_at = min(self.stop_at, time.perf_counter() - self.profile.workload.grace - STOP_SLACK_S)

    async def _deadline(self) -> None:
        """Bound every wait: stop at the schedule's end + grace + slack, then a second SIGINT, then SIGKILL."""
        wl = self.profile.workload
        end = None if wl.total_duration is None else self.t0 + wl.total_duration + wl.grace + STOP_SLACK_S
        while True:
            await trio.sleep(0.1)
            now = time.perf_counter()
            if end is not None and now >= end and not self.stopping:  # overdue: their own timers did not stop them
                self._stop()
            if self.stopping and now >= self.stop_at + wl.grace + STOP_SLACK_S:
                for worker in self.workers:
                    worker.signal(signal.SIGINT)
                await trio.sleep(KILL_AFTER_S)
                for worker in self.workers:
                    worker.signal(signal.SIGKILL)
                return

    # --- following the workers ---------------------------------------------

    def _follow(self) -> None:
        """Read what every worker has flushed since the last call into the live recorder; judge thresholds."""
        fresh: dict[str, HdrHistogram] = {}
        span = [float("inf"), 0.0]
        counters = self.recorder.counters
        for worker in self.workers:
            for line in worker.hlog.lines():
                if line.startswith(("#", '"')):
                    continue
                iv = interval_line(line, str(worker.hlog.path))
                h = iv.histogram
                self.recorder.totals.setdefault(iv.tag, new_histogram()).add(h)
                fresh.setdefault(iv.tag, new_histogram()).add(h)
                start = self.started_epoch + iv.start
                span = [min(span[0], start), max(span[1], start + iv.length)]
            for line in worker.timeline.lines():
                item = json.loads(line)
                counters.counts.update(item.get("counts", {}))
                counters.errors.update(item.get("errors", {}))
                worker.in_flight = int(item.get("in_flight", 0))
            if not worker.running:
                worker.in_flight = 0
        elapsed = time.perf_counter() - self.t0
        if self.criteria:
            doc = self.summary_now(elapsed)
            self.judged = evaluate(self.criteria, doc)
            self.failing = [r for r in self.judged if not r["ok"] and r["value"] is not None]
            hit = breached(self.criteria, doc, elapsed)
            if hit is not None and self.status == "completed" and not self.stopping:
                self.status = "aborted_by_threshold"
                failing = next(r for r in self.failing if r["metric"] == hit.metric and r["condition"] == hit.condition)
                self.reason = f"threshold {hit.metric} {hit.condition} failed at {elapsed:.1f}s ({failing['shown']})"
                self._stop()
        if self.live is not None:
            from smtpbench.metrics.exposition import RunState

            intervals = [Interval(tag, span[0], span[1], h) for tag, h in fresh.items()]
            in_flight = sum(w.in_flight for w in self.workers)
            judged = list(zip(self.criteria, self.judged, strict=False))
            self.live.update(RunState(intervals, counters, in_flight, (), self.status, self.stopping, elapsed,
                                      thresholds=judged))  # fmt: skip

    def summary_now(self, elapsed: float) -> dict[str, Any]:
        """The merged figures so far as a summary document (for the thresholds judged during the run)."""
        return build_summary(
            run_id=self.results.run_id,
            status=self.status,
            started_at="",
            elapsed_s=elapsed,
            histograms=self.recorder.totals,
            counters=self.recorder.counters.to_dict(),
            model=self.profile.workload.model,
            target=f"{self.address[0]}:{self.address[1]}",
        )

    def _notes(self) -> dict[str, str]:
        running = sum(w.running for w in self.workers)
        lost = [w.index for w in self.workers if w.returncode not in (None, 0)]
        notes = {"workers": f"{running} of {len(self.workers)} running"}
        if lost:
            notes["WARNING"] = "worker(s) ended abnormally: " + ", ".join(map(str, lost))
        if self.failing:
            notes["thresholds"] = ", ".join(f"✗ {r['metric']} {r['condition']} ({r['shown']})" for r in self.failing)
        return notes


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
    reasons = [f"worker {r['index']} {r['status']}" + (f": {r['status_reason']}" if r["status_reason"] else "")
               for r in records if r["status"] != "completed"]  # fmt: skip
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
        plan_shard(profile.workload, shard.sub(w, count), None)
    results = ResultsDir(profile.output.results_dir, new_run_id())
    results.write_profile(resolved_toml(profile))
    (results.path / "workers").mkdir()
    mode = choose_mode(progress or profile.output.progress, quiet)
    with ExitStack() as stack:
        address = (profile.target.host, profile.target.port)
        if profile.target.embedded:
            from smtpbench.sink.embedded import EmbeddedSink

            try:
                address = stack.enter_context(EmbeddedSink(profile.target.sink.to_cli_args()))
            except (OSError, RuntimeError) as exc:
                raise RunError(f"could not start the embedded sink: {exc}") from None
        sup = Supervisor(profile, count, shard, start_at, results, address, mode)
        out = profile.output
        if out.metrics_port is not None:
            from smtpbench.metrics.exposition import LiveMetrics

            info = {"run_id": results.run_id, "model": profile.workload.model, "target": f"{address[0]}:{address[1]}"}
            sup.live = stack.enter_context(LiveMetrics(out.metrics_host, out.metrics_port, info))
        try:
            trio.run(sup.main)
        finally:
            for worker in sup.workers:  # never leave a worker behind, whatever ended the loop
                if worker.running and worker.proc is not None:
                    worker.proc.kill()
        summary = merge_workers(sup)
    return RunOutcome(summary["status"], str(results.path), summary)
