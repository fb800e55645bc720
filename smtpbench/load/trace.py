"""``smtpbench run --trace N``: full exchanges of sampled sessions, with AUTH and secrets redacted.

A traced session's connection logs every write and read with its time
(:class:`TraceLog`, plugged into :attr:`SMTPConnection.raw_log`, whose
``None`` check is already on the hot path: ``--trace 0`` adds nothing else
per command).  When the session ends, :meth:`Tracer.offer` keeps it when it
is the first session of an error kind (written at once) or among the ``N``
sessions with the smallest seeded key (a bottom-N sample: which sessions are
sampled depends on the seed and the session numbers run, not on the order
they finish).  The sample is written by :meth:`Tracer.finish`.

Files: ``RUN/traces/<session-no>-<kind>.txt``, ``kind`` being the session's
error kind, or ``ok``/``unfinished``.  Lines are ``+MS.mmm C: ...`` and
``+MS.mmm S: ...`` (milliseconds since the session started).  Redacted:
everything the client sends after ``AUTH <mechanism>`` up to the server's
final reply, the server's 334 challenges, and any known secret anywhere.
Message content is summarized as one line (its size), not copied.
"""

from __future__ import annotations

import heapq
import random
import time
from pathlib import Path

perf = time.perf_counter
REDACTED = "<redacted>"
#: Above this many distinct secrets (a large users file) only the structural redaction applies.
MAX_SCANNED_SECRETS = 1000


class TraceLog(list[tuple[str, bytes]]):
    """A connection's ``raw_log`` that also notes when each entry came (seconds since creation)."""

    def __init__(self) -> None:
        super().__init__()
        self.start = perf()
        self.times: list[float] = []

    def append(self, item: tuple[str, bytes]) -> None:
        """Log one write (``>``) or read (``<``) with its time."""
        self.times.append(perf() - self.start)
        super().append(item)


def render(log: TraceLog, secrets: tuple[str, ...] = ()) -> str:
    """The exchange as ``C:``/``S:`` lines with timestamps, AUTH payloads and ``secrets`` redacted."""
    out: list[str] = []
    in_auth = in_data = False
    data_lines = data_bytes = 0
    pending: dict[str, bytes] = {">": b"", "<": b""}
    for (direction, chunk), at in zip(log, log.times, strict=True):
        stamp = f"+{at * 1000:.3f}"
        buf = pending[direction] + chunk
        *lines, pending[direction] = buf.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if direction == "<":
                code = line[:3]
                if code == "334" and in_auth:
                    line = f"334 {REDACTED}"
                elif line[3:4] == " ":  # the last line of a reply
                    in_auth = in_auth and code == "334"
                    in_data = in_data or code == "354"
                out.append(f"{stamp} S: {line}")
            elif in_data:
                if line == ".":
                    out.append(f"{stamp} C: <message content: {data_lines} lines, {data_bytes} octets>")
                    out.append(f"{stamp} C: .")
                    in_data, data_lines, data_bytes = False, 0, 0
                else:
                    data_lines += 1
                    data_bytes += len(raw) + 1
            elif in_auth:
                out.append(f"{stamp} C: {REDACTED}")
            elif line[:5].upper() == "AUTH ":
                words = line.split()
                out.append(f"{stamp} C: AUTH {words[1] if len(words) > 1 else ''} {REDACTED}".rstrip())
                in_auth = True
            else:
                out.append(f"{stamp} C: {line}")
    text = "\n".join(out) + "\n"
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class Tracer:
    """Chooses the sessions to trace and writes their files (see the module notes)."""

    def __init__(self, folder: Path, n: int, seed: int, secrets: list[str]) -> None:
        self.folder = folder
        self.n = n
        self.seed = seed
        distinct = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self.secrets = distinct if len(distinct) <= MAX_SCANNED_SECRETS else ()
        #: The first session of each error kind: kind -> session number.
        self.first: dict[str, int] = {}
        #: The bottom-n sample as a max-heap on the key: (-key, number, kind, log).
        self._sample: list[tuple[float, int, str, TraceLog]] = []
        self.written: list[Path] = []

    def offer(self, number: int, log: TraceLog, kind: str) -> None:
        """Session ``number`` ended with ``kind`` (error kind, ``ok`` or ``unfinished``): keep it if wanted."""
        if kind == "ok":
            kind = _rejection_kind(log) or kind
        if kind not in ("ok", "unfinished") and kind not in self.first:
            self.first[kind] = number
            self._write(number, kind, log)
        if self.n <= 0:
            return
        key = random.Random(f"{self.seed}/{number}").random()
        entry = (-key, number, kind, log)
        if len(self._sample) < self.n:
            heapq.heappush(self._sample, entry)
        elif key < -self._sample[0][0]:
            heapq.heapreplace(self._sample, entry)

    def finish(self) -> None:
        """Write the sampled sessions not already written as the first of their error kind."""
        already = set(self.first.values())
        for _, number, kind, log in sorted(self._sample, key=lambda e: e[1]):
            if number not in already:
                self._write(number, kind, log)
        self._sample.clear()

    def _write(self, number: int, kind: str, log: TraceLog) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{number}-{kind}.txt"
        path.write_text(render(log, self.secrets), "utf-8")
        self.written.append(path)


def _rejection_kind(log: TraceLog) -> str | None:
    """``temp_fail``/``perm_fail`` for a completed session that had a message refused (as the counters say)."""
    for direction, chunk in log:
        if direction == "<":
            for line in chunk.split(b"\n"):
                if line[:1] in (b"4", b"5") and line[3:4] == b" ":
                    return "temp_fail" if line[:1] == b"4" else "perm_fail"
    return None
