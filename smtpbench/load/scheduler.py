"""Workload shapes: stage ramps and arrival schedules.

A run's load level over time is a piecewise-linear function (k6-style
stages): each stage ramps linearly from the previous level to its ``target``
over its ``duration``.  For the closed model the level is the number of
concurrent sessions; for the open model it is the arrival rate (sessions/s).

Open-model arrivals are computed as *intended* start times, independent of
how fast the server answers: the engine starts each session at its intended
time if it can, and measures latency from that time (coordinated omission
correction, as wrk2 does).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Ramp:
    """One stage: reach ``target`` linearly over ``duration`` seconds."""

    duration: float
    target: float


class LoadShape:
    """Level at time ``t`` (seconds since the run started)."""

    def __init__(self, initial: float, stages: Sequence[Ramp] = ()) -> None:
        self.initial = initial
        self.stages = tuple(stages)

    @property
    def duration(self) -> float | None:
        """Total length of the stages, or ``None`` when there are none."""
        return sum(s.duration for s in self.stages) if self.stages else None

    def level(self, t: float) -> float:
        """The load level at ``t``; after the last stage, its target."""
        if not self.stages:
            return self.initial
        start_level = self.initial
        for stage in self.stages:
            if t < stage.duration:
                frac = t / stage.duration if stage.duration > 0 else 1.0
                return start_level + (stage.target - start_level) * frac
            t -= stage.duration
            start_level = stage.target
        return start_level

    def integral(self, a: float, b: float) -> float:
        """The area under the level between ``a`` and ``b`` (exact: trapezoids between the stage corners)."""
        if b <= a:
            return 0.0
        corners = [a, b]
        t = 0.0
        for stage in self.stages:
            t += stage.duration
            if a < t < b:
                corners.append(t)
        corners.sort()
        return sum((y - x) * (self.level(x) + self.level(y)) / 2 for x, y in zip(corners, corners[1:], strict=False))


class ArrivalSchedule:
    """Intended start times of open-model sessions.

    ``uniform`` spaces arrivals ``1/rate`` apart; ``poisson`` draws
    exponential gaps.  With a time-varying rate the gap is taken at the
    current rate; while the rate is zero the schedule advances in small steps
    until it rises again.
    """

    IDLE_STEP = 0.01
    #: :meth:`count_until` walks the schedule arrival by arrival up to this many, then integrates the rate.
    EXACT_COUNT_MAX = 100_000

    def __init__(self, shape: LoadShape, arrival: str, rng: random.Random) -> None:
        self.shape = shape
        self.poisson = arrival == "poisson"
        self.rng = rng
        self.t = 0.0

    def next(self) -> float:
        """Advance to and return the next intended start (seconds since start).

        ``inf`` once the rate is zero for good (after the last stage): no arrival ever comes.
        """
        end = self.shape.duration
        while True:
            rate = self.shape.level(self.t)
            if rate <= 0:
                if end is not None and self.t >= end:
                    return float("inf")
                self.t += self.IDLE_STEP
                continue
            gap = self.rng.expovariate(rate) if self.poisson else 1.0 / rate
            self.t += gap
            return self.t

    def count_until(self, end: float) -> int:
        """Consume and count the arrivals after the current one that fall before ``end``.

        Exact (the very times :meth:`next` gives) for the first
        :data:`EXACT_COUNT_MAX`; beyond that, the rest is the rate's integral
        (rounded), so a rate far beyond the generator costs bounded time to count.
        """
        n = 0
        while n < self.EXACT_COUNT_MAX:
            if self.next() >= end:
                return n
            n += 1
        return n + round(self.shape.integral(self.t, end))
