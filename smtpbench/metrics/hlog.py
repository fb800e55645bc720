"""Writer for the HdrHistogram interval log format (version 1.3, tagged).

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
from typing import IO

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
