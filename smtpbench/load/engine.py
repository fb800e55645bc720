"""The load engine: drives sessions per the workload model and keeps the results.

Theory of operation
-------------------
``execute()`` (:mod:`smtpbench.load.execute`) prepares everything that can fail on bad input or environment
*before* any traffic (results folder, resolved profile, message pool, TLS
context, embedded sink), then runs one Trio event loop:

* first, the target is **resolved once**: a name that does not resolve ends
  the run before any traffic (status ``failed``);
* a **driver** starts sessions: the closed model keeps ``level(t)`` session
  loops alive (each loop: session, ``session_pause``, repeat); the open model
  starts one session per intended arrival time, capped by ``max_in_flight``
  with a capacity limiter, and records how late each one really started
  (``schedule_lag``) and latencies from the intended start (``corrected.*``);
  arrivals due before the end that never started are ``arrivals_dropped``;
* a **timer** ends arrivals after the duration (or when the message budget
  is spent) and gives sessions in flight ``grace`` seconds before cancelling;
* an **interval task** rotates the histograms every ``output.interval`` and
  appends them to ``histograms.hlog`` and the counters to ``timeline.jsonl``
  (flushed), so measurements survive even a killed process;
* a **signal watcher**: the first SIGINT/SIGTERM stops arrivals (status
  ``interrupted``), the second cancels sessions at once;
* the **generator health** probe and sampler (:mod:`smtpbench.load.health`);
* the **progress view**.

A run that is one shard of a larger one (:mod:`smtpbench.load.split`) gets
its share of the load in its profile already; here it only waits for the
common start time, numbers its messages and sessions run-wide, interleaves
uniform arrivals, and records its part in the summary.

:func:`smtpbench.load.execute.execute` sets a run up and runs an Engine;
:mod:`smtpbench.load.workers` runs one Engine per worker process.

Whatever happens, the results measured so far are written at the end.  A
run in which no session completed ends with status ``failed`` and a reason
naming the dominant error kind (exit 3).
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import trio

from smtpbench.delivery.end import DeliveryRun
from smtpbench.delivery.ids import MessageIds
from smtpbench.load.extensions import message_extensions, message_pool, split_counts
from smtpbench.load.health import BEHIND_BOUND_S, LOOP_LAG, GeneratorHealth
from smtpbench.load.lifecycle import run_session
from smtpbench.load.opening import opening_steps
from smtpbench.load.profile import Profile
from smtpbench.load.results import ResultsDir
from smtpbench.load.scheduler import ArrivalSchedule, LoadShape, Ramp
from smtpbench.load.session import Control, Session, watchdog, watchdog_period
from smtpbench.load.setup import session_settings
from smtpbench.load.split import Part, ShardPlan
from smtpbench.load.trace import Tracer
from smtpbench.metrics.clients import ClientTally
from smtpbench.metrics.hlog import HlogWriter
from smtpbench.metrics.recorder import Interval, Recorder
from smtpbench.metrics.summary import build_summary
from smtpbench.metrics.thresholds import breached, evaluate
from smtpbench.metrics.timeline import TimelineWriter
from smtpbench.metrics.tlsstats import split_tls
from smtpbench.net.connection import resolve
from smtpbench.report.progress import ProgressState, show_progress

if TYPE_CHECKING:
    from smtpbench.metrics.exposition import LiveMetrics, RunState

#: An open-model session that starts later than this after its intended time counts as late.
LATE_THRESHOLD_S = 0.010
CONTROLLER_TICK_S = 0.1
#: The live view lists sessions waiting in one phase for longer than this as stuck.
STUCK_AFTER_S = 1.0
#: Health samples are taken every output interval, but at least this often.
HEALTH_PERIOD_MAX_S = 1.0
#: A closed-model loop whose session did not open (no connection, greeting refused, EHLO, TLS or AUTH failed)
#: waits before the next: the first wait, then twice the last one after each further such session, at most
#: the second; a session that opens resets it.
RECONNECT_BACKOFF_S = (0.05, 1.0)


class Engine:
    """One run of one profile against one resolved target."""

    def __init__(
        self,
        profile: Profile,
        host: str,
        port: int,
        results: ResultsDir,
        progress_mode: str,
        shard: ShardPlan | None = None,
        delivery: DeliveryRun | None = None,
        trace: int = 0,
    ) -> None:
        self.profile = profile
        self.shard = shard
        self.part = shard.part if shard else Part()
        self.results = results
        self.progress_mode = progress_mode
        wl = profile.workload
        self.rng = random.Random(wl.seed)
        self.status = "completed"
        self.started_epoch = shard.start_at if shard and shard.start_at is not None else time.time()
        self.recorder = Recorder(self.started_epoch)
        self.settings = session_settings(profile, host, port, self.part)
        if self.settings.proxy is not None:
            self.recorder.counters.proxy = ClientTally(profile.target.proxy_protocol)
        tracer = None
        if trace > 0:
            secrets = [secret for _, secret in self.settings.auth_credentials]
            tracer = Tracer(results.path / "traces", trace, wl.seed, secrets)
        self.control = Control(wl.messages, tracer)
        self.settings.extensions = message_extensions(profile.message, results.run_id)
        self.steps = opening_steps(self.settings)
        self.settings.ids = MessageIds(results.run_id)
        self.delivery = delivery
        if delivery is not None:
            self.settings.tracker = delivery.bind(self.settings.ids, self.recorder)
        self.signals = 0  # SIGINT/SIGTERM received (a first one during the delivery wait ends it)
        self.pool = message_pool(profile)
        initial = (wl.sessions if wl.model == "closed" else wl.rate) or 0
        self.shape = LoadShape(float(initial), [Ramp(s.duration, s.target) for s in wl.stages])
        self.total_duration = wl.total_duration
        self.in_flight = 0
        self.session_no = 0
        self.workload_scope = trio.CancelScope()
        self.t0 = 0.0
        #: Why the run failed (status ``failed``), in words.
        self.reason: str | None = None
        #: Seconds since start at which arrivals stopped (open model: arrivals due later were not asked for).
        self.stop_rel: float | None = None
        #: perf time the load ended and the delivery wait began (None without [delivery] or before then):
        #: throughput is over the load, not diluted by the wait for deliveries.
        self.load_end: float | None = None
        #: Open model: perf time the next arrival is due (None while the driver is not behind an arrival)
        #: and whether max_in_flight holds it.
        self.driver_due: float | None = None
        self.driver_held = False
        self.arrivals_dropped = 0
        period = min(profile.output.interval, HEALTH_PERIOD_MAX_S)
        self.health = GeneratorHealth(self.recorder, period, self._driver_behind)
        self.progress = ProgressState(self.recorder, 0.0, self.total_duration, lambda: self.in_flight, self._live_notes)
        self.criteria = profile.criteria()
        #: Thresholds failing at the last interval (for the live view).
        self.failing: list[dict[str, Any]] = []
        #: Every threshold as judged at the last interval; the live exporter (``--metrics-port``), if any.
        self.judged: list[dict[str, Any]] = []
        self.live: LiveMetrics | None = None

    # --- top level --------------------------------------------------------

    async def main(self) -> None:
        """Resolve the target, run the workload to its end, then flush the last interval."""
        hlog = HlogWriter(self.results.open_hlog(), self.started_epoch)
        timeline = TimelineWriter(
            self.results.open_timeline(), self.started_epoch, self.recorder.counters, lambda: self.in_flight
        )
        try:
            self.t0 = self.progress.started = await self._start_line()
            # Interrupted while waiting for the common start: no traffic at all.
            if self.control.stopping or not await self._resolve():
                return
            async with trio.open_nursery() as background:
                background.start_soon(self._intervals, hlog, timeline)
                background.start_soon(self._signals)
                background.start_soon(watchdog, self.control, watchdog_period(self.settings.timeouts))
                background.start_soon(self.health.probe)
                background.start_soon(self.health.sample)
                background.start_soon(show_progress, self.progress, self.progress_mode)
                if self.delivery is not None:
                    background.start_soon(self.delivery.run)
                with self.workload_scope:
                    async with trio.open_nursery() as work:
                        work.start_soon(self._timer)
                        if self.profile.workload.model == "open":
                            work.start_soon(self._drive_open, work)
                        else:
                            work.start_soon(self._drive_closed, work)
                if self.delivery is not None:
                    self.load_end = time.perf_counter()
                    seen = self.signals
                    await self.delivery.wait(lambda: self.signals > seen, self.progress_mode != "none")
                background.cancel_scope.cancel()
        finally:
            self.health.finish()
            now = time.time()
            intervals = self.recorder.rotate(now)
            hlog.write(intervals)
            timeline.write(now)
            self.results.close_hlog()
            if self.live:
                self.live.update(self._live_state(intervals))

    async def _start_line(self) -> float:
        """Wait for the shard's common start time (if any); return it on the perf_counter clock.

        A signal while waiting stops the run before any traffic (``interrupted``).
        """
        if self.shard is None or self.shard.start_at is None:
            return time.perf_counter()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            with trio.move_on_after(max(self.started_epoch - time.time(), 0.0)):
                async for _ in signals:
                    self.status = "interrupted"
                    self.control.stopping = True
                    break
        # Aligned on the wall clock: a shard that starts a little late is behind schedule, not shifted.
        return time.perf_counter() - (time.time() - self.started_epoch)

    async def _resolve(self) -> bool:
        """Resolve the target once, bounded by the connect timeout; False (run failed) when it does not."""
        st = self.settings
        limit = st.timeouts["connect"]
        try:
            with trio.fail_after(limit):
                st.family, st.sockaddr = await resolve(st.host, st.port, st.family)
            return True
        except trio.TooSlowError:
            detail = f"did not resolve within {limit:g}s"
        except OSError as exc:
            detail = f"does not resolve ({getattr(exc, 'strerror', None) or exc})"
        self.recorder.counters.errors["resolve"] += 1
        self.status = "failed"
        self.reason = f"target {st.host} {detail}; no session was started"
        return False

    def begin_stop(self) -> None:
        """Stop arrivals; sessions in flight get the grace period."""
        self.control.stopping = True
        self.control.stopped.set()
        if self.stop_rel is None:
            elapsed = time.perf_counter() - self.t0
            self.stop_rel = elapsed if self.total_duration is None else min(elapsed, self.total_duration)
        if self.workload_scope.deadline == float("inf"):
            self.workload_scope.deadline = trio.current_time() + self.profile.workload.grace

    # --- tasks ------------------------------------------------------------

    async def _timer(self) -> None:
        end = None if self.total_duration is None else self.t0 + self.total_duration
        while not self.control.stopping:
            now = time.perf_counter()
            if end is not None and now >= end:
                break
            await trio.sleep(min(0.05, end - now) if end is not None else 0.05)
        self.begin_stop()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            count = 0
            async for _ in signals:
                count += 1
                self.signals += 1
                self.status = "interrupted"
                if count == 1:
                    self.begin_stop()
                else:
                    self.workload_scope.cancel()

    async def _intervals(self, hlog: HlogWriter, timeline: TimelineWriter) -> None:
        interval = self.profile.output.interval
        while True:
            await trio.sleep(interval)
            now = time.time()
            intervals = self.recorder.rotate(now)
            hlog.write(intervals)
            timeline.write(now)
            if self.criteria:
                self._judge_thresholds()
            if self.live:
                self.live.update(self._live_state(intervals))

    def _live_state(self, intervals: list[Interval]) -> RunState:
        """What the live exporter publishes at this rotation (see smtpbench.metrics.exposition)."""
        from smtpbench.metrics.exposition import RunState

        samples = self.health.samples
        return RunState(
            intervals,
            self.recorder.counters,
            self.in_flight,
            [s.phase for s in self.control.sessions],
            self.status,
            self.control.stopping,
            time.perf_counter() - self.t0,
            samples[-1].cpu_percent if samples else None,
            self._driver_behind(),
            list(zip(self.criteria, self.judged, strict=False)),  # none before the first judgement
            self.recorder.counters.proxy.announced if self.recorder.counters.proxy is not None else 0,
        )

    def _judge_thresholds(self) -> None:
        """Judge the thresholds on the figures so far; an ``abort_on_fail`` one that fails stops the run."""
        elapsed = time.perf_counter() - self.t0
        doc = self.summary(elapsed)
        self.judged = evaluate(self.criteria, doc)
        self.failing = [r for r in self.judged if not r["ok"] and r["value"] is not None]
        hit = breached(self.criteria, doc, elapsed)
        if hit is not None and self.status == "completed" and not self.control.stopping:
            self.status = "aborted_by_threshold"
            failing = next(r for r in self.failing if r["metric"] == hit.metric and r["condition"] == hit.condition)
            self.reason = f"threshold {hit.metric} {hit.condition} failed at {elapsed:.1f}s ({failing['shown']})"
            self.begin_stop()

    # --- workload models --------------------------------------------------

    def _new_session(self) -> Session:
        self.session_no += 1
        return Session(self.settings, self.recorder, self.session_no, random.Random(self.rng.getrandbits(64)))

    async def _drive_closed(self, work: trio.Nursery) -> None:
        active = 0

        async def loop() -> None:
            nonlocal active
            pause = self.profile.workload.session_pause
            backoff = 0.0
            first, most = RECONNECT_BACKOFF_S
            try:
                while not self.control.stopping:
                    self.in_flight += 1
                    try:
                        opened = await run_session(self._new_session(), self.steps, self.pool, self.control)
                    finally:
                        self.in_flight -= 1
                    # Ramp-down: retire this loop when there are more than the level asks.
                    if active > round(self.shape.level(time.perf_counter() - self.t0)):
                        return
                    # A session that could not open (port refused, 554 greeting, wrong password): retrying
                    # at once would turn the loop into a flood (15,000 refusals a second from 10 loops) that
                    # buries the run's figures while a server restarts, and that a real server would ban.
                    backoff = 0.0 if opened else min(max(2 * backoff, first), most)
                    if pause or backoff:
                        with trio.move_on_after(max(pause, backoff)):
                            await self.control.stopped.wait()
                    else:
                        await trio.lowlevel.checkpoint()
            finally:
                active -= 1

        while not self.control.stopping:
            target = round(self.shape.level(time.perf_counter() - self.t0))
            while active < target and not self.control.stopping:
                active += 1
                work.start_soon(loop)
            await trio.sleep(CONTROLLER_TICK_S)

    async def _drive_open(self, work: trio.Nursery) -> None:
        wl = self.profile.workload
        rng = random.Random(self.rng.getrandbits(64))
        schedule = ArrivalSchedule(self.shape, wl.arrival, rng, self.part.first_gap(wl.arrival))
        limiter = trio.CapacityLimiter(wl.max_in_flight)
        counts = self.recorder.counters.counts

        async def one(intended: float) -> None:
            try:
                start = time.perf_counter()
                lag = start - intended
                self.recorder.record("schedule_lag", int(max(lag, 0) * 1_000_000))
                if lag > LATE_THRESHOLD_S:
                    counts["sessions_late"] += 1
                await run_session(self._new_session(), self.steps, self.pool, self.control, intended)
            finally:
                self.in_flight -= 1
                limiter.release_on_behalf_of(intended)

        pending: float | None = None  # the arrival due next, not started yet (seconds since start)
        try:
            while not self.control.stopping:
                t_rel = schedule.next()
                if self.total_duration is not None and t_rel >= self.total_duration:
                    break
                pending = t_rel
                intended = self.t0 + t_rel
                self.driver_due = intended
                delay = intended - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
                if self.control.stopping:
                    break
                if limiter.available_tokens == 0:
                    counts["sessions_capped"] += 1
                    self.driver_held = True  # waiting on the server's sessions, not on the generator
                await limiter.acquire_on_behalf_of(intended)
                self.driver_held = False
                if self.control.stopping:
                    limiter.release_on_behalf_of(intended)
                    break
                self.in_flight += 1
                work.start_soon(one, intended)
                pending = None
        finally:
            self.driver_due, self.driver_held = None, False
            self.arrivals_dropped = self._dropped(schedule, pending)

    def _dropped(self, schedule: ArrivalSchedule, pending: float | None) -> int:
        """Arrivals due before arrivals stopped that never started: ``pending`` and the rest of the schedule."""
        stop = self.stop_rel if self.stop_rel is not None else time.perf_counter() - self.t0
        if pending is None or pending >= stop:
            return 0
        return 1 + schedule.count_until(stop)

    def _driver_behind(self) -> float:
        """Seconds the open-model driver is behind its schedule now (0 when on time or held by max_in_flight)."""
        due = self.driver_due
        if due is None or self.driver_held:
            return 0.0
        return max(time.perf_counter() - due, 0.0)

    def _live_notes(self) -> dict[str, str]:
        """Extra rows of the live view: generator health and sessions stuck in a phase."""
        now = time.perf_counter()
        stuck: Counter[str] = Counter(
            s.phase for s in self.control.sessions if s.phase != "think" and now - s.mark > STUCK_AFTER_S
        )
        notes = {"generator": self.health.live_text()}
        if self.delivery is not None:
            notes.update(self.delivery.progress_fields())
        if stuck:
            notes[f"stuck > {STUCK_AFTER_S:g}s"] = ", ".join(f"{p}={n}" for p, n in stuck.most_common())
        behind = self._driver_behind()
        if behind > BEHIND_BOUND_S:
            notes["arrivals"] = f"{behind:.1f}s behind schedule"
        warning = self.health.now_warning()
        if warning:
            notes["WARNING"] = warning
        if self.failing:
            notes["thresholds"] = ", ".join(f"✗ {r['metric']} {r['condition']} ({r['shown']})" for r in self.failing)
        return notes

    # --- results ----------------------------------------------------------

    def judge(self) -> None:
        """A run that would be ``completed`` but in which no session completed is ``failed``, with the reason."""
        counters = self.recorder.counters
        counts = counters.counts
        if self.status != "completed" or counts["sessions_completed"] > 0:
            return
        self.status = "failed"
        started = counts["sessions_started"]
        causes = Counter(counters.errors)
        if counts["sessions_unfinished"]:
            phase = counters.unfinished.most_common(1)[0][0]
            causes[f"unfinished in {phase}"] = counts["sessions_unfinished"]
        if not started:
            self.reason = "no session started"
        elif causes:
            kind, n = causes.most_common(1)[0]
            self.reason = f"no session completed of {started} started; dominant cause: {kind} ({n})"
        else:
            self.reason = f"no session completed of {started} started"

    def summary(self, elapsed: float) -> dict[str, Any]:
        """The summary document of what was measured so far, with the thresholds judged on it."""
        p = self.profile
        counters, usage = split_counts(self.recorder.counters.to_dict())
        counters["counts"], tls = split_tls(counters["counts"], always=self.settings.tls != "none")
        if p.workload.model == "open":
            counters["counts"]["arrivals_dropped"] = self.arrivals_dropped
        extra: dict[str, Any] = {"status_reason": self.reason, **usage}
        if tls is not None:
            extra["tls"] = tls
        extra["unfinished"] = counters.pop("unfinished")
        extra["unfinished_min_wait_us"] = counters.pop("unfinished_min_wait_us")
        extra["generator"] = self.health.verdict(self.recorder.totals.get(LOOP_LAG))
        if self.shard:
            extra["shard"] = self.shard.record()
        doc = build_summary(
            run_id=self.results.run_id,
            status=self.status,
            started_at=dt.datetime.fromtimestamp(self.started_epoch, dt.UTC).isoformat(timespec="seconds"),
            elapsed_s=elapsed,
            throughput_s=elapsed if self.load_end is None else elapsed - (time.perf_counter() - self.load_end),
            histograms=self.recorder.totals,
            counters=counters,
            model=p.workload.model,
            target=f"{self.settings.host}:{self.settings.port}",
            extra={
                "profile": p.path,
                "seed": p.workload.seed,
                "values_clamped": self.recorder.clamped,
                **extra,
                **({"delivery": self.delivery.summary()} if self.delivery is not None else {}),
            },
        )
        if self.criteria:
            doc["thresholds"] = evaluate(self.criteria, doc)
        return doc
