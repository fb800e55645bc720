"""Writer and reader for the HdrHistogram interval log format (version 1.3, tagged).

The ``hdrhistogram`` package's own writer cannot write tags and crashes in
``output_start_time``, so we write the format ourselves; tests read our files
back with the package's ``HistogramLogReader``.  Each line is flushed as it is
written, so a killed run still leaves a log readable up to its last interval.

Format (one interval line per tag per interval, times relative to BaseTime)::

    #[Histogram log format version 1.3]
    #[StartTime: 1764555511.123 (seconds since epoch), 2026-12-01T02:18:31Z]
    #[BaseTime: 1764555511.123 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    Tag=data_end,0.000,1.000,20.191,HISTFAAAA...

``Interval_Max`` is in milliseconds (values are recorded in microseconds).
"""

from __future__ import annotations

import datetime as dt
import gc
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hdrh.histogram import HdrHistogram

from smtpbench.metrics.recorder import Interval

#: Values are µs; the log's Interval_Max column is conventionally in ms.
MAX_VALUE_UNIT_RATIO = 1000.0


class HlogWriter:
    """Appends tagged interval histograms to an open text file."""

    def __init__(self, out: IO[str], start_epoch: float) -> None:
        self.out = out
        self.base = start_epoch
        when = dt.datetime.fromtimestamp(start_epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.write("#[Histogram log format version 1.3]\n")
        out.write("#[Latencies in microseconds; Interval_Max in milliseconds; one tag per phase]\n")
        out.write(f"#[StartTime: {start_epoch:.3f} (seconds since epoch), {when}]\n")
        out.write(f"#[BaseTime: {start_epoch:.3f} (seconds since epoch)]\n")
        out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        out.flush()

    def write(self, intervals: list[Interval]) -> None:
        """Write one line per interval histogram and flush."""
        for iv in intervals:
            payload = iv.histogram.encode().decode("ascii")
            max_ms = iv.histogram.get_max_value() / MAX_VALUE_UNIT_RATIO
            self.out.write(f"Tag={iv.tag},{iv.start - self.base:.3f},{iv.end - iv.start:.3f},{max_ms:.3f},{payload}\n")
        self.out.flush()


@dataclass
class LogInterval:
    """One interval line read back from an hlog: tag, start (s since BaseTime), length (s), payload.

    The histogram stays encoded (a decoded one takes ~190 KB) and is decoded
    on each access of :attr:`histogram`, so a long log can be read in little memory.
    """

    tag: str
    start: float
    length: float
    encoded: str
    where: str = ""  # "FILE: line N", for errors

    @property
    def histogram(self) -> HdrHistogram:
        """The interval's histogram, freshly decoded; a corrupt payload raises ``ValueError`` naming its line."""
        try:
            return decode(self.encoded)
        except Exception as exc:  # hdrh raises assorted types on a bad payload
            raise ValueError(f"{self.where}: not an interval histogram ({type(exc).__name__})") from None


_decoded = 0
#: A young-generation collection after this many decodes (see :func:`decode`).
COLLECT_EVERY = 4


def decode(encoded: str) -> HdrHistogram:
    """Decode one histogram, keeping the garbage of earlier decodes bounded.

    An hdrh histogram and its encoder refer to each other, so a decoded
    histogram is not freed when dropped but only when the cycle collector
    runs, which allocation counts rarely trigger (few objects, ~190 KB each).
    A cheap young-generation collection every few decodes bounds that garbage
    to a few histograms however long the log.
    """
    global _decoded
    _decoded += 1
    if _decoded % COLLECT_EVERY == 0:
        gc.collect(0)
    return HdrHistogram.decode(encoded)


def interval_line(line: str, where: str) -> LogInterval:
    """One interval line (``Tag=T,start,length,max,payload``; untagged: tag ``""``), payload not decoded.

    Raises ``ValueError`` when the line does not have the four fields.
    """
    tag = ""
    if line.startswith("Tag="):
        tag, _, line = line[4:].partition(",")
    fields = line.split(",")
    if len(fields) != 4 or not fields[3]:
        raise ValueError("expected 4 fields")
    return LogInterval(tag, float(fields[0]), float(fields[1]), fields[3], where)


def read_hlog(path: str | Path) -> tuple[float, list[LogInterval]]:
    """Read an interval log written by :class:`HlogWriter`: ``(base_epoch, intervals)``.

    Guarantees the intervals in file order.  Payloads are decoded on use
    (:attr:`LogInterval.histogram`).  A truncated last line (a killed run) is
    skipped, as HdrHistogram's readers do; any other line without the four
    fields raises ``ValueError`` naming its line number.  Untagged lines
    (other writers) get the tag ``""``.
    """
    base = 0.0
    out: list[LogInterval] = []
    with open(path, encoding="ascii", errors="replace") as f:
        lines = f.read().split("\n")
    for no, line in enumerate(lines, 1):
        if line.startswith("#[BaseTime:"):
            base = float(line.split()[1])
        if not line or line.startswith("#") or line.startswith('"StartTimestamp"'):
            continue
        try:
            out.append(interval_line(line, f"{path}: line {no}"))
        except ValueError as exc:
            if no >= len(lines) - 1:  # the last line of a log cut short
                break
            raise ValueError(f"{path}: line {no}: not an interval line ({exc})") from None
    if out:  # a killed run may have left its last payload cut short: check that one only
        try:
            out[-1].histogram  # noqa: B018 (decoding is the check)
        except ValueError:
            out.pop()
    return base, out
