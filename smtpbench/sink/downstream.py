"""The sink as the downstream hop of a delivery test: blackhole, arrival reports, pause.

Kept apart from the protocol code: the session calls :meth:`Downstream.accept`
once per message it accepted (250) and awaits :meth:`PauseGate.wait` before
it sends replies; everything else lives here.

* ``blackhole``: a share of accepted messages is dropped after the 250 (drawn
  from the session's seeded generator, counted in ``messages_blackholed``),
  so a test can prove that a run's ``lost`` counts exactly those.
* ``report_to``: every other accepted message's ``X-Smtpbench-Id`` is reported
  to the run (:mod:`smtpbench.delivery.reporter`: never blocks).
* pause: while paused the sink sends nothing (greetings included) and reads
  nothing more, like a hung next hop; a client sees its replies late.  A
  pause is scheduled (``pause_at``/``pause_for`` after the start) or driven by
  signals (SIGUSR1 pauses, for ``pause_for`` if set, SIGUSR2 resumes).
"""

from __future__ import annotations

import random
import time

import trio

from smtpbench.delivery.ids import find_id
from smtpbench.delivery.reporter import Reporter
from smtpbench.sink.model import SinkStats


class PauseGate:
    """Holds every reply while paused; counts the pauses and their total length."""

    def __init__(self) -> None:
        self.paused = False
        self._resumed = trio.Event()
        self._since = 0.0
        self._generation = 0
        self.pauses = 0
        self.paused_s = 0.0

    def pause(self) -> None:
        """Stop answering (no-op if already paused)."""
        if not self.paused:
            self.paused = True
            self._resumed = trio.Event()
            self._since = trio.current_time()
            self.pauses += 1
            self._generation += 1

    def resume(self) -> None:
        """Answer again; held replies go out now."""
        if self.paused:
            self.paused = False
            self.paused_s += trio.current_time() - self._since
            self._resumed.set()

    async def wait(self) -> None:
        """Return at once, or when the pause in progress ends."""
        if self.paused:
            await self._resumed.wait()

    async def pause_for(self, seconds: float) -> None:
        """Pause now for ``seconds`` (an earlier resume, or a newer pause, takes over)."""
        self.pause()
        generation = self._generation
        await trio.sleep(seconds)
        if self._generation == generation:
            self.resume()

    async def schedule(self, at: float, seconds: float) -> None:
        """Pause ``at`` seconds from now for ``seconds``."""
        await trio.sleep(at)
        await self.pause_for(seconds)


class Downstream:
    """What happens to an accepted message beyond its 250: blackhole or report."""

    def __init__(self, stats: SinkStats, blackhole: float, reporter: Reporter | None) -> None:
        self.stats = stats
        self.blackhole = blackhole
        self.reporter = reporter

    def accept(self, content: bytes | None, recipients: int, rng: random.Random | None) -> bool:
        """Decide for one message just accepted: False when it is blackholed (dropped, counted)."""
        if self.blackhole and rng is not None and rng.random() < self.blackhole:
            self.stats.messages_blackholed += 1
            return False
        if self.reporter is not None:
            self.reporter.report(find_id(content) if content else None, recipients, time.time())
        return True
