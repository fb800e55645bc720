"""Splitting one run's load into parts: shards on many machines (``--shard i/n``), workers on many cores.

Theory of operation
-------------------
A *part* is ``index`` of ``count`` (0-based, so Kubernetes' ``JOB_COMPLETION_INDEX``
is the index as it is).  Every part runs the same profile with its share of the
load, and the parts' results merge (:mod:`smtpbench.load.merge`) into those of
one run of the whole load:

* whole quantities (closed sessions, closed stage targets, the message budget,
  ``max_in_flight``) are split **exactly**: part ``i`` gets ``total // count``,
  plus one for the first ``total % count`` parts, so the shares add up to the
  total;
* rates (open ``rate`` and open stage targets) are divided by ``count`` and the
  arrival process is kept: Poisson parts are independent streams (their seeds
  differ), so their union is a Poisson stream at the total rate; uniform part
  ``i`` takes its first arrival after ``(i + 1) / count`` of its gap, so at a
  constant rate ``r`` its arrivals fall on ``(i + 1 + k*count) / r`` and the
  union is exactly the unsplit schedule ``1/r, 2/r, 3/r ...``;
* message and session numbers (``{n}``, ``{session}``) are strided:
  local number ``k`` of part ``i`` is ``(k - 1) * count + i + 1``, disjoint
  across parts and, with an exactly split budget, together ``1 .. total``;
  ``{worker}`` is the part's index;
* each part's seed is derived from the profile's seed and the part (one part
  of one keeps the seed), recorded in the part's summary.

Workers inside a shard split again: :meth:`Part.sub` composes the two, so a
worker of a shard is one part of ``shards * workers``.  Everything here is
pure (no I/O, no clock except where ``now`` is passed in).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from smtpbench.config import shown
from smtpbench.errors import ConfigError
from smtpbench.load.sections import MAX_SEED, WorkloadConfig

#: Most parts a run may be split into.
MAX_PARTS = 100_000
#: A --start-at this far in the past is still taken (the schedule starts late, aligned);
#: beyond it the shard is too late to align and refuses to start.
START_TOLERANCE_S = 2.0
#: A --start-at further ahead than this is taken for a typo.
START_HORIZON_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Part:
    """Part ``index`` (0-based) of ``count`` equal parts of a run."""

    index: int = 0
    count: int = 1

    def sub(self, index: int, count: int) -> Part:
        """Part ``index`` of ``count`` of this part: a part of ``self.count * count`` (workers within a shard)."""
        return Part(self.index * count + index, self.count * count)

    def share(self, total: int) -> int:
        """This part's exact share of ``total`` whole things; the shares of all parts add up to ``total``."""
        quotient, remainder = divmod(total, self.count)
        return quotient + (1 if self.index < remainder else 0)

    def number(self, local: int) -> int:
        """The run-wide number of this part's ``local``-th (1-based) message or session: disjoint across parts."""
        return (local - 1) * self.count + self.index + 1

    def first_gap(self, arrival: str) -> float:
        """Fraction of its first inter-arrival gap a part waits (uniform: phase ``(i + 1) / count``; else 1)."""
        return (self.index + 1) / self.count if arrival == "uniform" else 1.0

    def seed(self, seed: int) -> int:
        """The part's seed: ``seed`` itself for a whole run, else a hash of seed and part (0 .. MAX_SEED)."""
        if self.count == 1:
            return seed
        digest = hashlib.sha256(f"smtpbench-part:{seed}:{self.index}:{self.count}".encode()).digest()
        return int.from_bytes(digest[:8], "big") & MAX_SEED


def parse_part(text: str, option: str = "--shard") -> Part:
    """``Part`` from ``"i/n"`` (0 <= i < n <= MAX_PARTS); ConfigError naming ``option`` otherwise."""
    expected = "INDEX/COUNT with 0 <= INDEX < COUNT, like 0/3 (indexes start at 0)"
    index_text, sep, count_text = text.strip().partition("/")
    if not sep or not index_text.isdigit() or not count_text.isdigit() or not index_text.isascii():
        raise ConfigError(f"{shown(text)} is not a part", key=option, expected=expected)
    index, count = int(index_text), int(count_text)
    if not 1 <= count <= MAX_PARTS:
        raise ConfigError(f"{shown(text)}: count must be 1 .. {MAX_PARTS}", key=option, expected=expected)
    if index >= count:
        raise ConfigError(f"{shown(text)}: index {index} is not below count {count}", key=option, expected=expected)
    return Part(index, count)


def parse_start_at(text: str, now: float, option: str = "--start-at") -> float:
    """Seconds since the epoch from ISO 8601 (``2026-12-02T10:00:00Z``; no zone means UTC) or epoch seconds.

    Raises ConfigError when the text is neither, when the time is more than
    :data:`START_TOLERANCE_S` before ``now`` (a shard that late cannot align its
    schedule with the others), or more than :data:`START_HORIZON_S` after it.
    """
    value = text.strip()
    expected = "an ISO 8601 time like 2026-12-02T10:00:00Z, or seconds since the epoch"
    try:
        epoch = float(value)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ConfigError(f"{shown(text)} is not a time", key=option, expected=expected) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        epoch = when.timestamp()
    try:  # 1e20 or -1e20 seconds: finite, but no date (OverflowError; OSError on some platforms)
        iso = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # ValueError: nan
        raise ConfigError(f"{shown(text)} is not a time", key=option, expected=expected) from None
    if epoch < now - START_TOLERANCE_S:
        raise ConfigError(
            f"{iso} is {now - epoch:.1f}s in the past; this shard cannot align with the others",
            key=option,
            hint="give every shard a new start time in the future",
        )
    if epoch > now + START_HORIZON_S:
        raise ConfigError(f"{iso} is more than 7 days ahead", key=option, expected="a start time within 7 days")
    return epoch


def split_workload(wl: WorkloadConfig, part: Part) -> WorkloadConfig:
    """The workload of ``part``: its exact share of sessions, stage targets, budget and cap; rate / count.

    Guarantees that the shares of all parts add up to the whole (see the
    module notes).  Raises ConfigError, in every part alike, when the last
    part's share would be empty (fewer sessions or messages than parts): such
    a part would never end, or do nothing.
    """
    if part.count == 1:
        return wl
    last = Part(part.count - 1, part.count)
    closed = wl.model == "closed"
    update: dict[str, object] = {"seed": part.seed(wl.seed)}
    stages = []
    for stage in wl.stages:
        target = part.share(int(stage.target)) if closed else stage.target / part.count
        stages.append(stage.model_copy(update={"target": target}))
    update["stages"] = tuple(stages)
    if closed:
        update["sessions"] = part.share(wl.sessions)
        if max([last.share(wl.sessions), *(last.share(int(s.target)) for s in wl.stages)]) == 0:
            raise _too_few("workload.sessions", max([wl.sessions, *(int(s.target) for s in wl.stages)]), part)
    else:
        update["rate"] = wl.rate / part.count
        update["max_in_flight"] = max(part.share(wl.max_in_flight), 1)
    if wl.messages is not None:
        update["messages"] = part.share(wl.messages)
        if last.share(wl.messages) == 0:
            raise _too_few("workload.messages", wl.messages, part)
    return wl.model_copy(update=update)


def _too_few(key: str, total: int, part: Part) -> ConfigError:
    return ConfigError(
        f"{total} cannot be split into {part.count} parts: the last ones would get none",
        key=key,
        hint=f"use at most {total} shards, or raise {key}",
    )


@dataclass(frozen=True)
class ShardPlan:
    """How a run is placed within a larger one: its part, its seed, its common start time."""

    part: Part
    base_seed: int
    seed: int
    start_at: float | None = None

    def record(self) -> dict[str, object]:
        """The ``shard`` object of summary.json."""
        return {"index": self.part.index, "count": self.part.count, "seed": self.seed, "base_seed": self.base_seed}


def plan_shard(workload: WorkloadConfig, part: Part, start_at: float | None) -> tuple[WorkloadConfig, ShardPlan]:
    """The part's workload and its plan (raises ConfigError like :func:`split_workload`)."""
    mine = split_workload(workload, part)
    return mine, ShardPlan(part, workload.seed, mine.seed, start_at)
