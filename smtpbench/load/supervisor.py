"""The parent side of ``run --workers``: starting, following and stopping the worker processes.

See :mod:`smtpbench.load.workers` for the whole design; this module holds the
:class:`Supervisor` (one Trio loop in the parent, no load of its own) and what
it knows of each :class:`Worker`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from smtpbench.errors import RunError
from smtpbench.filetail import FileTail
from smtpbench.load.profile import Profile
from smtpbench.load.results import ResultsDir
from smtpbench.load.split import Part, plan_shard
from smtpbench.load.worker_process import WorkerJob, job_bytes
from smtpbench.metrics.hlog import interval_line
from smtpbench.metrics.recorder import Interval, Recorder, new_histogram
from smtpbench.metrics.summary import build_summary
from smtpbench.metrics.thresholds import breached, evaluate
from smtpbench.report.progress import ProgressState, show_progress

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


@dataclass
class Worker:
    """One worker process and what the parent has read of its results so far."""

    index: int
    part: Part
    folder: Path
    proc: trio.Process | None = None
    returncode: int | None = None
    in_flight: int = 0
    #: SIGINTs sent (a worker's run acts on the first two; more are pointless).
    sigints: int = 0
    hlog: FileTail = field(init=False)
    timeline: FileTail = field(init=False)

    def __post_init__(self) -> None:
        self.hlog = FileTail(self.folder / "histograms.hlog")
        self.timeline = FileTail(self.folder / "timeline.jsonl")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.returncode is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process is still running (it may have exited in the meantime)."""
        if self.running and self.proc is not None:
            if sig == signal.SIGINT:
                if self.sigints >= 2:
                    return
                self.sigints += 1
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
        #: Sessions the workers have said announced a PROXY client (timeline ``proxy_announced``), for the exporter.
        self.proxy_announced = 0
        #: Bounds the workers' start; a signal cancels it.
        self.starting_scope = trio.CancelScope()
        #: perf_counter time of the first stop (inf while running).
        self.stop_at = float("inf")

    # --- jobs ---------------------------------------------------------------

    def _job(self, worker: Worker) -> bytes:
        wl, plan = plan_shard(self.profile.workload, worker.part, None)
        output = self.profile.output.model_copy(
            update={"results_dir": str(worker.folder.parent), "progress": "none", "metrics_port": None}
        )
        mine = self.profile.model_copy(update={"workload": wl, "output": output, "thresholds": {}, "delivery": None})
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
            with trio.move_on_after(READY_TIMEOUT_S) as self.starting_scope:
                async with trio.open_nursery() as starting:
                    for worker in self.workers:
                        starting.start_soon(self._spawn, worker, nursery)
            if self.starting_scope.cancelled_caught and not self.stopping:
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
                    self.starting_scope.cancel()  # still starting: no traffic will be sent (main says so)
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
        # Latencies only where something reads them live: a quiet run without thresholds or exporter skips
        # the decoding (its cost is the parent's, on cores the workers share); the final merge reads the files.
        latencies = self.mode != "none" or bool(self.criteria) or self.live is not None
        for worker in self.workers:
            for line in worker.hlog.text_lines() if latencies else ():
                if line.startswith(("#", '"')):
                    continue
                try:
                    iv = interval_line(line, str(worker.hlog.path))
                    h = iv.histogram
                except ValueError:  # never seen from our writer; the final merge reports a bad file
                    continue
                self.recorder.totals.setdefault(iv.tag, new_histogram()).add(h)
                fresh.setdefault(iv.tag, new_histogram()).add(h)
                start = self.started_epoch + iv.start
                span = [min(span[0], start), max(span[1], start + iv.length)]
            for line in worker.timeline.text_lines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                counters.counts.update(item.get("counts", {}))
                counters.errors.update(item.get("errors", {}))
                self.proxy_announced += int(item.get("proxy_announced", 0))
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
                                      thresholds=judged, proxy_announced=self.proxy_announced))  # fmt: skip

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
