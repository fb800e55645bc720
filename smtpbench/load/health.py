"""The generator watches itself: is the load tool, not the server, the limit?

A load generator that runs out of CPU, or whose event loop wakes late,
measures itself: its latencies include its own queueing and its open-model
arrivals fall behind.  So while a run lasts, :class:`GeneratorHealth`

* **probes the event loop**: a task sleeps :data:`PROBE_S` and records how
  late it woke (µs) into the ``generator.loop_lag`` histogram (in the
  interval log like every phase);
* **samples**, every ``period`` (the output interval, at most 1 s), the CPU
  share of one core used by the thread that runs the event loop
  (``time.thread_time``, so in-process servers in other threads, as in the
  tests, do not count) and, in open runs, how far the arrival driver is
  behind its schedule when it is not held by ``max_in_flight``.

:meth:`GeneratorHealth.verdict` applies the documented rule (README,
"Generator health"): the generator is **saturated** when, in at least half
of the samples, the loop thread used >= :data:`CPU_SATURATED_PERCENT` % of a
core or the open-model driver was more than :data:`BEHIND_BOUND_S` behind
schedule, or when the loop lag p99 over the run exceeds
:data:`LOOP_LAG_BOUND_US`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from hdrh.histogram import HdrHistogram

from smtpbench.metrics.recorder import Recorder

#: The loop probe's sleep: short enough to see stalls, cheap (100 wake-ups/s).
PROBE_S = 0.010
LOOP_LAG = "generator.loop_lag"
CPU_SATURATED_PERCENT = 90.0
#: Loop lag p99 above this means sessions waited on the generator, not the server, for whole timer periods.
LOOP_LAG_BOUND_US = 100_000
#: An open-model driver this far behind its schedule (not held by max_in_flight) cannot keep the rate.
BEHIND_BOUND_S = 0.100
#: A last partial sample shorter than this is too noisy to count.
MIN_SAMPLE_S = 0.1


@dataclass(frozen=True)
class Sample:
    """One sampling period."""

    cpu_percent: float
    behind_s: float  # open model: how late the driver was at the sample (0: on time or held by max_in_flight)


class GeneratorHealth:
    """Loop-lag probe and per-period samples of one run."""

    def __init__(self, recorder: Recorder, period: float, behind: Callable[[], float]) -> None:
        self.recorder = recorder
        self.period = period
        self.behind = behind
        self.samples: list[Sample] = []
        self.lag_max_us = 0  # the largest lag since the last sample, for the live view
        self._cpu0 = 0.0
        self._wall0 = 0.0

    async def probe(self) -> None:
        """Record the event loop's lateness every :data:`PROBE_S`; runs until cancelled."""
        record = self.recorder.record
        perf = time.perf_counter
        while True:
            t = perf()
            await trio.sleep(PROBE_S)
            late = max(int((perf() - t - PROBE_S) * 1_000_000), 0)
            record(LOOP_LAG, late)
            if late > self.lag_max_us:
                self.lag_max_us = late

    async def sample(self) -> None:
        """Take one sample every ``period``; runs until cancelled (call :meth:`finish` after)."""
        self._cpu0, self._wall0 = time.thread_time(), time.perf_counter()
        while True:
            await trio.sleep(self.period)
            self._take()

    def _take(self) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        span = wall - self._wall0
        if span < MIN_SAMPLE_S:
            return
        self.samples.append(Sample(100.0 * (cpu - self._cpu0) / span, self.behind()))
        self._cpu0, self._wall0 = cpu, wall
        self.lag_max_us = 0

    def finish(self) -> None:
        """Take the last, partial sample (if long enough to mean something)."""
        if self._wall0:
            self._take()

    def now_warning(self) -> str | None:
        """The live view's warning: the latest sample alone, in words, or None."""
        if not self.samples:
            return None
        last = self.samples[-1]
        words = []
        if last.cpu_percent >= CPU_SATURATED_PERCENT:
            words.append(f"CPU {last.cpu_percent:.0f}% of a core")
        if last.behind_s > BEHIND_BOUND_S:
            words.append(f"arrivals {last.behind_s:.2f}s behind schedule")
        if self.lag_max_us > LOOP_LAG_BOUND_US:
            words.append(f"event loop {self.lag_max_us / 1000:.0f} ms late")
        return "generator saturated: " + ", ".join(words) if words else None

    def live_text(self) -> str:
        """CPU share of the latest sample and the loop lag, for the live view."""
        cpu = f"{self.samples[-1].cpu_percent:.0f}%" if self.samples else "-"
        return f"CPU {cpu} of a core, loop lag max {self.lag_max_us / 1000:.1f} ms"

    def verdict(self, loop_lag: HdrHistogram | None) -> dict[str, Any]:
        """``summary.json``'s ``generator`` object (README, "Generator health")."""
        cpus = sorted(s.cpu_percent for s in self.samples)
        n = len(cpus)
        lag_p99 = int(loop_lag.get_value_at_percentile(99.0)) if loop_lag and loop_lag.get_total_count() else 0
        lag_max = int(loop_lag.get_max_value()) if loop_lag and loop_lag.get_total_count() else 0
        busy = sum(c >= CPU_SATURATED_PERCENT for c in cpus)
        behind = sum(s.behind_s > BEHIND_BOUND_S for s in self.samples)
        reasons = []
        if n and 2 * busy >= n:
            reasons.append(
                f"the event loop used >= {CPU_SATURATED_PERCENT:.0f}% of a CPU core in {busy} of {n} samples"
            )
        if n and 2 * behind >= n:
            reasons.append(
                f"open-model arrivals were more than {BEHIND_BOUND_S * 1000:.0f} ms behind schedule "
                f"in {behind} of {n} samples"
            )
        if lag_p99 > LOOP_LAG_BOUND_US:
            reasons.append(f"event-loop lag p99 was {lag_p99 / 1000:.0f} ms (bound {LOOP_LAG_BOUND_US / 1000:.0f} ms)")
        return {
            "cpu_percent_p50": round(cpus[(n - 1) // 2], 1) if n else 0.0,
            "cpu_percent_max": round(cpus[-1], 1) if n else 0.0,
            "loop_lag_p99_us": lag_p99,
            "loop_lag_max_us": lag_max,
            "samples": n,
            "saturated": bool(reasons),
            "reason": "; ".join(reasons) if reasons else None,
        }
