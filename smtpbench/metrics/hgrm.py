"""Percentile distribution files (``.hgrm``), as HdrHistogram's tools print them.

Values are written in milliseconds (recorded in µs), the convention of
HistogramLogProcessor output and of the HdrHistogram plotter.  We write the
file ourselves because the package's writer leaves the standard deviation
unscaled.
"""

from __future__ import annotations

import ctypes
import math
from array import array
from itertools import compress
from typing import IO

from hdrh.histogram import HdrHistogram

UNIT_RATIO = 1000.0  # µs -> ms
_ARRAY_CODES = {2: "H", 4: "I", 8: "Q"}  # hdrh counter word size -> array typecode


def mean_and_stddev(h: HdrHistogram) -> tuple[float, float]:
    """Mean and standard deviation of ``h``, equal to hdrh's ``get_mean_value``/``get_stddev``.

    Like hdrh, each count stands for the middle of its bucket.  hdrh walks every
    bucket up to the maximum in pure Python (twice for the deviation, ~0.1 s per
    histogram with a wide range); this visits only the non-empty ones, picked in
    C (as :func:`values_at_percentiles` does), so writing results stays quick
    even after a long or interrupted run.
    """
    n = h.get_total_count()
    if n == 0:
        return 0.0, 0.0
    counts = _counts(h)
    cells = [(i, counts[i]) for i in compress(range(len(counts)), counts)]
    medians = []
    for i, c in cells:
        value = h.get_value_from_index(i)
        low = h.get_lowest_equivalent_value(value)
        size = h.get_highest_equivalent_value(value) - low + 1
        medians.append((low + (size >> 1), c))
    mean = float(sum(m * c for m, c in medians)) / n
    var = sum((m - mean) ** 2 * c for m, c in medians) / n
    return mean, math.sqrt(var)


def _counts(h: HdrHistogram) -> array[int]:
    """A copy of ``h``'s counts as an ``array`` (one C copy; reading the ctypes array cell by cell is slow)."""
    return array(_ARRAY_CODES[ctypes.sizeof(h.counts._type_)], bytes(h.counts))


def _index_of(h: HdrHistogram, value: int) -> int:
    """The counts index of ``value`` (hdrh's layout, with int.bit_length instead of its bit-counting loop)."""
    bucket = max(
        0, (int(value) | h.sub_bucket_mask).bit_length() - h.unit_magnitude - h.sub_bucket_half_count_magnitude - 1
    )
    sub = int(value) >> (bucket + h.unit_magnitude)
    return ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count


def values_at_percentiles(h: HdrHistogram, percentiles: tuple[float, ...]) -> list[int]:
    """Values of ``h`` at ``percentiles`` (0 < p <= 100), equal to hdrh's ``get_value_at_percentile``; 0 when empty.

    hdrh walks the buckets one Python call at a time and finds each value's
    bucket with a bit-counting loop (~0.2 ms a value).  Here the non-empty
    buckets are picked in C (a copy of the counts up to the maximum's bucket,
    through ``itertools.compress``) and a bucket's highest equivalent value
    comes from its index, so the per-interval statistics of a report stay cheap.
    """
    counts = _counts(h)
    end = _index_of(h, h.get_max_value()) + 1
    if sum(counts[:end]) == h.get_total_count():  # else trust nothing: walk the whole array
        counts = counts[:end]
    targets = sorted(set(percentiles))
    found: dict[float, int] = {}
    k, total = 0, 0
    target = h.get_target_count_at_percentile(targets[0]) if targets else 0
    for index in compress(range(len(counts)), counts):
        total += counts[index]
        if total < target:
            continue
        bucket = max(0, (index >> h.sub_bucket_half_count_magnitude) - 1)
        highest = h.get_value_from_index(index) + (1 << (h.unit_magnitude + bucket)) - 1
        while k < len(targets) and total >= target:
            found[targets[k]] = highest
            k += 1
            if k < len(targets):
                target = h.get_target_count_at_percentile(targets[k])
        if k == len(targets):
            break
    return [int(found.get(p, 0)) for p in percentiles]


def percentile_steps(h: HdrHistogram, ticks_per_half_distance: int) -> list[tuple[int, float, int]]:
    """``(value, percentile level, count up to it)`` of each step of hdrh's percentile iterator.

    Exactly what ``h.get_percentile_iterator(ticks_per_half_distance)`` yields
    (``value_iterated_to``, ``percentile_level_iterated_to``,
    ``total_count_to_this_value``), with the same floating-point steps, but
    visiting only the non-empty buckets (picked in C): hdrh walks every bucket
    up to the maximum one Python call at a time, a tenth of a second per
    results folder.  The last recorded value is reported once more at 100 %,
    as hdrh does.
    """
    n = h.get_total_count()
    counts = _counts(h)
    steps: list[tuple[int, float, int]] = []
    level: float = 0
    total = 0
    for index in compress(range(len(counts)), counts):
        total += counts[index]
        value = -1
        while (100.0 * total) / n >= level:
            if value < 0:
                bucket = max(0, (index >> h.sub_bucket_half_count_magnitude) - 1)
                value = h.get_value_from_index(index) + (1 << (h.unit_magnitude + bucket)) - 1
            steps.append((value, level, total))
            if total >= n:  # hdrh then moves its level to 100 % and reports this value again
                steps.append((value, 100.0, total))
                return steps
            gap = 100.0 - level
            if gap:
                level += 100.0 / (ticks_per_half_distance * math.pow(2, (math.log(100 / gap) / math.log(2)) + 1))
    return steps


def write_hgrm(out: IO[str], h: HdrHistogram, ticks_per_half_distance: int = 5) -> None:
    """Write the percentile distribution of ``h`` (values in ms)."""
    out.write(f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n")
    if h.get_total_count() == 0:
        out.write("#[Mean    =        0.000, StdDeviation   =        0.000]\n")
        out.write("#[Max     =        0.000, Total count    =            0]\n")
        return
    for value_us, level, total in percentile_steps(h, ticks_per_half_distance):
        value = value_us / UNIT_RATIO
        pct = level / 100.0
        if level < 100:
            out.write(f"{value:12.3f} {pct:2.12f} {total:10d} {1 / (1 - pct):14.2f}\n")
        else:
            out.write(f"{value:12.3f} {pct:2.12f} {total:10d}\n")
    mean_us, std_us = mean_and_stddev(h)
    mean, std = mean_us / UNIT_RATIO, std_us / UNIT_RATIO
    out.write(f"#[Mean    = {mean:12.3f}, StdDeviation   = {std:12.3f}]\n")
    out.write(f"#[Max     = {h.get_max_value() / UNIT_RATIO:12.3f}, Total count    = {h.get_total_count():12d}]\n")
    out.write(f"#[Buckets = {h.bucket_count:12d}, SubBuckets     = {h.sub_bucket_count:12d}]\n")
