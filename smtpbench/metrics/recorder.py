"""Phase latency histograms and run counters.

Theory of operation
-------------------
Every timed phase (``connect``, ``banner``, ``ehlo``, ..., ``session``, and the
coordinated-omission views ``corrected.session``, ``corrected.transaction``,
``schedule_lag``) is a *tag*.  Phases are open-ended: a session step that
times something new simply records under a new tag, so pluggable steps (TLS,
AUTH, BDAT ...) need no change here.

Values are integer microseconds recorded into the *current interval*
histogram of their tag.  :meth:`Recorder.rotate` closes the interval: it
returns the interval histograms (for the interval log) and adds them into the
run totals.  Everything costly (encoding, percentiles, means) happens once per
interval or at the end.

Recording is on the load engine's hot path (five values per message), and
``HdrHistogram.record_value`` costs ~1 µs in pure Python.  So :meth:`record`
only appends the value to a per-tag list; the list is folded into the
histogram (``collections.Counter`` in C, then one count added at its bucket
per *distinct* value, with hdrh's index arithmetic inlined) when it reaches
:data:`PENDING_MAX` values, and always before anything reads the histograms
(rotate, peek).  The histograms end up holding exactly the values recorded,
as if each had been recorded at once.

All state is plain data plus HdrHistograms, so results stay mergeable: two
recorders' encoded totals and counters add up losslessly (:func:`merge_snapshots`),
which is what sharded runs will need.
"""

from __future__ import annotations

import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from smtpbench.metrics.clients import ClientTally

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped and counted
SIGNIFICANT_DIGITS = 3
#: Values held per tag before they are folded into the histogram (bounds memory).
PENDING_MAX = 4096


def _index(h: HdrHistogram, value: int) -> int:
    """hdrh's counts index of ``value`` (``HdrHistogram._counts_index_for``) for ``value >= 0``."""
    bucket = (value | h.sub_bucket_mask).bit_length() - h.unit_magnitude - h.sub_bucket_half_count_magnitude - 1
    return (
        ((bucket + 1) << h.sub_bucket_half_count_magnitude)
        + (value >> (bucket + h.unit_magnitude))
        - h.sub_bucket_half_count
    )


def new_histogram() -> HdrHistogram:
    """A histogram with the layout every smtpbench histogram shares (µs, 1 µs .. 1 h, 3 digits).

    Guarantee: it is freed as soon as its last reference goes (no reference cycle), see :func:`acyclic`.
    """
    return acyclic(HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS))


def acyclic(h: HdrHistogram) -> HdrHistogram:
    """Break ``h``'s reference cycle with its encoder; return ``h``, which works as before.

    An hdrh histogram and its encoder refer to each other, so a dropped one
    (~190 KB of counts) waits for a full cycle collection, which comes more
    rarely the more long-lived objects the process holds.  A run drops one
    histogram per tag per interval (:meth:`Recorder.rotate`) and one per
    :meth:`Recorder.peek`: in a 10-minute soak at 400 msgs/s
    (benchmarks/bench_soak.py) that garbage took the generator from 73 MiB at
    10 s to 159 MiB (58 MiB with this).  The encoder only reads the
    histogram while the histogram itself is encoding or adding, so a weak
    reference is enough and the counts are freed by reference counting.
    """
    h.encoder.histogram = weakref.proxy(h)
    return h


@dataclass
class Counters:
    """Run counters; every field adds up across shards."""

    counts: Counter[str] = field(default_factory=Counter)
    replies: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: Counter[str] = field(default_factory=Counter)
    #: Sessions the run's end cut off, by the phase each was waiting in.
    unfinished: Counter[str] = field(default_factory=Counter)
    #: The shortest time (µs since its start) any of those sessions had waited, by phase (merges by min).
    unfinished_min_wait_us: dict[str, int] = field(default_factory=dict)
    #: The clients announced with the PROXY protocol (only with target.proxy_protocol; merges by union).
    proxy: ClientTally | None = None

    def note_unfinished(self, phase: str, waited_us: int) -> None:
        """Count one session cut off by the run's end while in ``phase``, after ``waited_us``."""
        self.unfinished[phase] += 1
        best = self.unfinished_min_wait_us.get(phase)
        if best is None or waited_us < best:
            self.unfinished_min_wait_us[phase] = waited_us

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (reply codes as string keys)."""
        return {
            "unfinished": dict(self.unfinished),
            "unfinished_min_wait_us": dict(self.unfinished_min_wait_us),
            "counts": dict(self.counts),
            "replies": {v: {str(c): n for c, n in sorted(codes.items())} for v, codes in sorted(self.replies.items())},
            "unexpected_replies": {
                v: {str(c): n for c, n in sorted(codes.items())} for v, codes in sorted(self.unexpected.items())
            },
            "errors": dict(self.errors),
            **({"proxy": self.proxy.to_dict()} if self.proxy is not None else {}),
        }


@dataclass
class Interval:
    """One closed interval of one tag."""

    tag: str
    start: float  # seconds since the epoch
    end: float
    histogram: HdrHistogram


class Recorder:
    """Collects phase latencies (µs) and counters for one run (one process)."""

    def __init__(self, start_epoch: float) -> None:
        self.start_epoch = start_epoch
        self._interval_start = start_epoch
        self._current: dict[str, HdrHistogram] = {}
        self._pending: dict[str, list[int]] = {}
        self.totals: dict[str, HdrHistogram] = {}
        self.counters = Counters()
        self.clamped = 0

    def record(self, tag: str, value_us: int) -> None:
        """Record one latency; values beyond one hour are clamped (and counted).

        The value is in the current interval's histogram by the next
        :meth:`rotate` or :meth:`peek` (see the module notes on batching).
        """
        pending = self._pending.get(tag)
        if pending is None:
            pending = self._pending[tag] = []
            if tag not in self._current:
                self._current[tag] = new_histogram()
        pending.append(value_us)
        if len(pending) >= PENDING_MAX:
            self._fold(tag)

    def _fold(self, tag: str) -> None:
        pending = self._pending.pop(tag, None)
        if not pending:
            return
        h = self._current[tag]
        distinct = Counter(pending)
        low, high = min(distinct), max(distinct)
        if low >= 0 and _index(h, high) < h.counts_len:
            # Every value fits: add each distinct value's count at its bucket as record_value
            # would, without its four Python calls per value (the index arithmetic is hdrh's,
            # inlined; tests hold the encoded histograms equal to one record_value per value).
            counts = h.counts
            unit, half_mag, half = h.unit_magnitude, h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count
            mask = h.sub_bucket_mask
            for value, count in distinct.items():
                bucket = (value | mask).bit_length() - unit - half_mag - 1
                counts[((bucket + 1) << half_mag) + (value >> (bucket + unit)) - half] += count
            h.total_count += len(pending)
            h.min_value = min(h.min_value, low)
            h.max_value = max(h.max_value, high)
            return
        record = h.record_value
        for value, count in distinct.items():
            if not record(value, count):
                self.clamped += count
                record(HIGHEST_US if value > 0 else 0, count)

    def flush(self) -> None:
        """Fold every pending value into the current interval's histograms."""
        for tag in list(self._pending):
            self._fold(tag)

    def rotate(self, now_epoch: float) -> list[Interval]:
        """Close the current interval at ``now_epoch``; return its non-empty histograms.

        The returned histograms are also added into :attr:`totals`, so after a
        final ``rotate`` the totals hold every value ever recorded.
        """
        self.flush()
        start, self._interval_start = self._interval_start, now_epoch
        out = []
        for tag, h in self._current.items():
            if h.get_total_count() == 0:
                continue
            total = self.totals.get(tag)
            if total is None:
                total = self.totals[tag] = new_histogram()
            total.add(h)
            out.append(Interval(tag, start, now_epoch, h))
        # Fresh histograms rather than reset(): the closed ones are handed out.
        self._current = {tag: new_histogram() for tag in self._current}
        return out

    def snapshot(self) -> dict[str, Any]:
        """A mergeable snapshot: encoded total histograms plus counters."""
        return {
            "histograms": {tag: h.encode().decode("ascii") for tag, h in self.totals.items()},
            "counters": self.counters.to_dict(),
        }

    def peek(self, tag: str, *percentiles: float) -> list[int]:
        """Percentiles of ``tag`` over totals and the open interval (for live progress).

        One merge serves every percentile asked for; all are 0 before any value.
        """
        self._fold(tag)
        h = new_histogram()
        for src in (self.totals.get(tag), self._current.get(tag)):
            if src is not None and src.get_total_count():
                h.add(src)
        if not h.get_total_count():
            return [0] * len(percentiles)
        return [int(h.get_value_at_percentile(p)) for p in percentiles]


def merge_snapshots(snapshots: list[dict[str, Any]]) -> tuple[dict[str, HdrHistogram], dict[str, Any]]:
    """Merge recorder snapshots losslessly: histograms are added, counters summed (PROXY clients: a union)."""
    hists: dict[str, HdrHistogram] = {}
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    replies: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected: dict[str, Counter[str]] = defaultdict(Counter)
    unfinished: Counter[str] = Counter()
    min_wait: dict[str, int] = {}
    proxy: ClientTally | None = None
    for snap in snapshots:
        for tag, enc in snap["histograms"].items():
            h = hists.get(tag)
            if h is None:
                h = hists[tag] = new_histogram()
            h.decode_and_add(enc)
        c = snap["counters"]
        counts.update(c["counts"])
        errors.update(c["errors"])
        unfinished.update(c.get("unfinished", {}))
        for phase, us in c.get("unfinished_min_wait_us", {}).items():
            min_wait[phase] = min(us, min_wait.get(phase, us))
        if c.get("proxy") is not None:  # ValueError if malformed (merge checks each part's first)
            tally = ClientTally.from_dict(c["proxy"])
            if proxy is None:
                proxy = tally
            else:
                proxy.merge(tally)
        for v, codes in c["replies"].items():
            replies[v].update(codes)
        for v, codes in c["unexpected_replies"].items():
            unexpected[v].update(codes)
    merged = {
        "counts": dict(counts),
        "errors": dict(errors),
        "replies": {v: dict(c) for v, c in replies.items()},
        "unexpected_replies": {v: dict(c) for v, c in unexpected.items()},
        "unfinished": dict(unfinished),
        "unfinished_min_wait_us": min_wait,
    }
    if proxy is not None:
        merged["proxy"] = proxy.to_dict()
    return hists, merged
