"""A long run's recorder keeps bounded memory: the histograms it drops are freed at once.

An hdrh histogram and its encoder refer to each other; before
``recorder.acyclic`` every interval's dropped histograms (~190 KB each) waited
for a full cycle collection, and a 10-minute soak at 400 msgs/s saw the
generator's RSS climb past 150 MiB (benchmarks/README.md, "Soak").  These tests
run with the cycle collector off, so only reference counting can free anything.
"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Iterator

import pytest
from hdrh.histogram import HdrHistogram

from smtpbench.metrics.hlog import HlogWriter
from smtpbench.metrics.recorder import Recorder, new_histogram

TAGS = ("connect", "mail", "data_end", "session")


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_dropped_histogram_is_freed_without_the_cycle_collector(no_cycle_collector: None) -> None:
    h = new_histogram()
    h.record_value(1234)
    ref = weakref.ref(h)
    del h
    assert ref() is None


def test_rotated_intervals_are_freed_once_written(no_cycle_collector: None) -> None:
    rec = Recorder(0.0)
    out = io.StringIO()
    hlog = HlogWriter(out, 0.0)
    refs: list[weakref.ref[HdrHistogram]] = []
    for interval in range(1, 41):
        for n in range(200):
            rec.record(TAGS[n % len(TAGS)], 100 + 7 * n + interval)
        intervals = rec.rotate(float(interval))
        hlog.write(intervals)
        refs += [weakref.ref(iv.histogram) for iv in intervals]
        rec.peek("session", 50, 99)
        del intervals
    assert len(refs) == 40 * len(TAGS)
    assert [r for r in refs if r() is not None] == []
    # The histograms still did their work: 40 lines per tag written, totals complete.
    assert sum(line.startswith("Tag=") for line in out.getvalue().splitlines()) == 40 * len(TAGS)
    assert sum(h.get_total_count() for h in rec.totals.values()) == 40 * 200


def test_an_acyclic_histogram_encodes_and_adds_as_before() -> None:
    a, plain = new_histogram(), HdrHistogram(1, 3_600_000_000, 3)
    for v in (1, 250, 250, 99_999, 3_600_000_000):
        a.record_value(v)
        plain.record_value(v)
    assert a.encode() == plain.encode()
    total = new_histogram()
    total.add(a)
    total.add(plain)
    back = HdrHistogram.decode(total.encode())
    assert back.get_total_count() == 10
    assert back.get_value_at_percentile(50) == total.get_value_at_percentile(50)
