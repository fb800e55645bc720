"""Percentile distribution files (``.hgrm``), as HdrHistogram's tools print them.

Values are written in milliseconds (recorded in µs), the convention of
HistogramLogProcessor output and of the HdrHistogram plotter.  We write the
file ourselves because the package's writer leaves the standard deviation
unscaled.
"""

from __future__ import annotations

import math
from typing import IO

from hdrh.histogram import HdrHistogram

UNIT_RATIO = 1000.0  # µs -> ms


def mean_and_stddev(h: HdrHistogram) -> tuple[float, float]:
    """Mean and standard deviation of ``h``, equal to hdrh's ``get_mean_value``/``get_stddev``.

    Like hdrh, each count stands for the middle of its bucket.  hdrh walks every
    bucket up to the maximum in pure Python (twice for the deviation, ~0.1 s per
    histogram with a wide range); this visits only the non-empty ones, so writing
    results stays quick even after a long or interrupted run.
    """
    n = h.get_total_count()
    if n == 0:
        return 0.0, 0.0
    cells = [(i, c) for i, c in enumerate(h.counts) if c]
    medians = []
    for i, c in cells:
        value = h.get_value_from_index(i)
        low = h.get_lowest_equivalent_value(value)
        size = h.get_highest_equivalent_value(value) - low + 1
        medians.append((low + (size >> 1), c))
    mean = float(sum(m * c for m, c in medians)) / n
    var = sum((m - mean) ** 2 * c for m, c in medians) / n
    return mean, math.sqrt(var)


def write_hgrm(out: IO[str], h: HdrHistogram, ticks_per_half_distance: int = 5) -> None:
    """Write the percentile distribution of ``h`` (values in ms)."""
    out.write(f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n")
    if h.get_total_count() == 0:
        out.write("#[Mean    =        0.000, StdDeviation   =        0.000]\n")
        out.write("#[Max     =        0.000, Total count    =            0]\n")
        return
    for it in h.get_percentile_iterator(ticks_per_half_distance):
        value = it.value_iterated_to / UNIT_RATIO
        pct = it.percentile_level_iterated_to / 100.0
        total = it.total_count_to_this_value
        if it.percentile_level_iterated_to < 100:
            out.write(f"{value:12.3f} {pct:2.12f} {total:10d} {1 / (1 - pct):14.2f}\n")
        else:
            out.write(f"{value:12.3f} {pct:2.12f} {total:10d}\n")
    mean_us, std_us = mean_and_stddev(h)
    mean, std = mean_us / UNIT_RATIO, std_us / UNIT_RATIO
    out.write(f"#[Mean    = {mean:12.3f}, StdDeviation   = {std:12.3f}]\n")
    out.write(f"#[Max     = {h.get_max_value() / UNIT_RATIO:12.3f}, Total count    = {h.get_total_count():12d}]\n")
    out.write(f"#[Buckets = {h.bucket_count:12d}, SubBuckets     = {h.sub_bucket_count:12d}]\n")
