"""The live transcript: each event printed as it happens, and kept for ``--json``.

Line marks (README, "smtpbench probe"): ``->`` sent, ``<-`` received
(``<**`` for a 4yz/5yz reply), ``==`` information, ``**`` a failure; under a
reply, ``#`` lines explain it and ``!`` lines flag what is wrong with it.
Every line starts with the seconds since the connection attempt began.
Nothing secret ever reaches this module: sent AUTH payloads arrive already
replaced (:func:`smtpbench.probe.annotate.auth_shown`).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any, TextIO

from smtpbench import __version__
from smtpbench.probe.annotate import annotation, reply_event, tls_lines
from smtpbench.probe.model import Event, Outcome, TLSFacts
from smtpbench.protocol.replies import Reply

#: Schema of the ``--json`` document (README, "--json shape").
JSON_SCHEMA = "smtpbench-probe/1"
INDENT = " " * 10


class Transcript:
    """Events of one probe, printed live to ``out`` (stdout by default)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.events: list[Event] = []
        self.start = time.perf_counter()
        self.started_at = dt.datetime.now(dt.UTC)
        self.tls: TLSFacts | None = None
        self.extensions: dict[str, str] = {}

    def begin(self) -> None:
        """Start the clock: times are counted from here (call just before connecting)."""
        self.start = time.perf_counter()
        self.started_at = dt.datetime.now(dt.UTC)

    def now(self) -> float:
        """Seconds since the transcript (the connection attempt) started."""
        return time.perf_counter() - self.start

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _stamp(self, t: float, mark: str, text: str) -> None:
        self._print(f"{t:8.3f}s {mark} {text}")

    def info(self, text: str, *, failure: bool = False) -> Event:
        """An information line (``==``), or a failure (``**``)."""
        ev = Event(self.now(), "info", text)
        self.events.append(ev)
        self._stamp(ev.t, "**" if failure else "==", text)
        return ev

    def sent(self, text: str, verb: str | None = None) -> Event:
        """A line sent to the server, as it may be shown (``->``)."""
        ev = Event(self.now(), "sent", text, verb=verb)
        self.events.append(ev)
        self._stamp(ev.t, "->", text)
        return ev

    def received(self, verb: str, reply: Reply, extra: list[str] | None = None) -> Event:
        """A reply (``<-`` / ``<**``), its explanation (``#``) and any flags (``!``)."""
        ev = reply_event(self.now(), verb, reply)
        ev.notes.extend(extra or ())
        self.events.append(ev)
        mark = "<-" if reply.code < 400 else "<**"
        last = len(reply.lines) - 1
        for i, line in enumerate(reply.lines or ("",)):
            sep = "-" if i < last else " "
            self._stamp(ev.t, mark, f"{reply.code}{sep}{line}".rstrip())
        self._print(f"{INDENT}  # {annotation(ev)}")
        for note in ev.notes:
            self._print(f"{INDENT}  # {note}")
        for flag in ev.flags:
            self._print(f"{INDENT}  ! {flag}")
        return ev

    def tls_established(self, facts: TLSFacts) -> None:
        """Record and print the TLS summary."""
        self.tls = facts
        for line in tls_lines(facts):
            self.info(line)

    def summary(self, outcome: Outcome) -> None:
        """The final one-line outcome."""
        self._print(outcome.line())

    def to_json(self, target: str, options: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        """The whole probe as a JSON document (README, "--json shape")."""
        return {
            "schema": JSON_SCHEMA,
            "tool_version": __version__,
            "target": target,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "options": options,
            "events": [e.to_json() for e in self.events],
            "extensions": self.extensions,
            "tls": self.tls.to_json() if self.tls else None,
            "outcome": outcome.to_json(),
        }
