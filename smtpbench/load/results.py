"""The results folder of a run: ``results/<run-id>/``.

Created and tested for writability *before* the run starts (an unwritable
folder is a :class:`RunError`, exit 3, not a lost run).  The interval log is
streamed and flushed every interval; the final files are written atomically
(temporary file, then rename), so a reader never sees a half-written
``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any

from hdrh.histogram import HdrHistogram

from smtpbench.errors import RunError
from smtpbench.metrics.hgrm import write_hgrm


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxx``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResultsDir:
    """One run's folder and the files in it."""

    def __init__(self, base: str, run_id: str) -> None:
        self.run_id = run_id
        self.path = Path(base) / run_id
        try:
            self.path.mkdir(parents=True, exist_ok=False)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"results folder {self.path} is not writable: {exc.strerror or exc}") from None
        self._hlog: IO[str] | None = None
        self._timeline: IO[str] | None = None

    def write_profile(self, text: str) -> None:
        """The resolved profile (secrets already redacted by the caller)."""
        write_atomic(self.path / "profile.toml", text)

    def open_hlog(self) -> IO[str]:
        """Open ``histograms.hlog`` for streaming (line-buffered)."""
        # Held open for the whole run (closed by close_hlog), hence no `with`.
        self._hlog = open(self.path / "histograms.hlog", "w", encoding="ascii", buffering=1)  # noqa: SIM115
        return self._hlog

    def open_timeline(self) -> IO[str]:
        """Open ``timeline.jsonl`` (counters per interval) for streaming."""
        self._timeline = open(self.path / "timeline.jsonl", "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        return self._timeline

    def close_hlog(self) -> None:
        """Close the interval log and the timeline if open."""
        for f in (self._hlog, self._timeline):
            if f is not None:
                f.close()
        self._hlog = self._timeline = None

    def write_final(self, summary: dict[str, Any], histograms: dict[str, HdrHistogram]) -> None:
        """``summary.json`` and one ``<phase>.hgrm`` per recorded phase."""
        for tag, h in histograms.items():
            buf = io.StringIO()
            write_hgrm(buf, h)
            write_atomic(self.path / f"{tag}.hgrm", buf.getvalue())
        write_atomic(self.path / "summary.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
