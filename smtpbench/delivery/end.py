"""What a run with a ``[delivery]`` section starts, serves, waits for and reports.

Before the run (:meth:`DeliveryRun.start`, errors before any traffic): the
report socket is bound (``report_listen``, or a free loopback port for the
run's own sink), the delivery sink is started on ``listen`` as a process of
its own (``smtpbench sink --report-to ...`` with the ``[delivery.sink]``
knobs), the Maildir/mbox watchers take note of what is already there.
During the run (:meth:`DeliveryRun.run`): reports and watched folders feed
the :class:`~smtpbench.delivery.tracker.Tracker`.  After the load
(:meth:`DeliveryRun.wait`): wait up to ``wait`` until nothing accepted is
outstanding.  At the end (:meth:`DeliveryRun.finish`): stop the sink,
write ``delivery-problems.txt``, give the summary's ``delivery`` section.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio

from smtpbench.delivery.config import DeliveryConfig
from smtpbench.delivery.ids import MessageIds
from smtpbench.delivery.listener import ReportListener, bind
from smtpbench.delivery.tracker import Tracker
from smtpbench.delivery.watch import POLL_S, MaildirWatcher, MboxWatcher
from smtpbench.errors import ConfigError, RunError
from smtpbench.metrics.recorder import Recorder

PROBLEMS_FILE = "delivery-problems.txt"
#: How often the wait prints the outstanding count (plain progress).
WAIT_REPORT_S = 5.0
#: Once nothing is outstanding, reports still in flight get this long (late duplicates count too).
SETTLE_S = 0.25


class DeliveryRun:
    """The delivery ends of one run; see the module notes for the order of calls."""

    def __init__(self, config: DeliveryConfig) -> None:
        self.config = config
        self.tracker: Tracker | None = None
        self.listener: ReportListener | None = None
        self.sink: Any = None  # EmbeddedSink once started
        self.sink_stats: dict[str, int] | None = None
        self.watchers: list[MaildirWatcher | MboxWatcher] = []
        self.waited_s = 0.0
        self._sock: Any = None
        self._scans = 0  # watcher polls completed

    def start(self, stack: ExitStack) -> None:
        """Bind, start the delivery sink, note the folders' contents; raises ConfigError or RunError."""
        cfg = self.config
        for key, path in (("delivery.maildir", cfg.maildir), ("delivery.mbox", cfg.mbox)):
            if path is not None and Path(path).exists() and Path(path).is_dir() != (key == "delivery.maildir"):
                raise ConfigError(f"{path} is not a {'folder' if key == 'delivery.maildir' else 'file'}", key=key)
        if cfg.maildir is not None:
            self.watchers.append(MaildirWatcher(cfg.maildir))
        if cfg.mbox is not None:
            self.watchers.append(MboxWatcher(cfg.mbox))
        if cfg.report_listen is not None or cfg.listen is not None:
            host, port = cfg.report_listen or ("127.0.0.1", 0)
            self._sock = bind(host, port)
            stack.callback(self._sock.close)
        if cfg.listen is not None:
            from smtpbench.sink.embedded import EmbeddedSink

            host, port = cfg.listen
            report_host, report_port = self._sock.getsockname()[:2]
            if cfg.report_listen is None or report_host in ("0.0.0.0", "::"):
                report_host = "127.0.0.1" if ":" not in report_host else "::1"
            report_to = f"[{report_host}]:{report_port}" if ":" in report_host else f"{report_host}:{report_port}"
            args = [*cfg.sink.to_cli_args(), "--report-to", report_to, "--local-domain", "*"]
            sink = EmbeddedSink(args, host=host, port=port)
            try:
                stack.enter_context(sink)
            except (OSError, RuntimeError) as exc:
                raise RunError(f"could not start the delivery sink on {host}:{port}: {exc}") from None
            self.sink = sink

    def bind(self, ids: MessageIds, recorder: Recorder) -> Tracker:
        """The tracker the load engine feeds (created once)."""
        self.tracker = Tracker(ids, recorder)
        if self._sock is not None:
            self.listener = ReportListener(self._sock, self.tracker)
        return self.tracker

    async def run(self) -> None:
        """Serve reports and poll the watched folders until cancelled."""
        async with trio.open_nursery() as nursery:
            if self.listener is not None:
                nursery.start_soon(self.listener.serve)
            for watcher in self.watchers:
                nursery.start_soon(self._poll, watcher)

    async def _poll(self, watcher: MaildirWatcher | MboxWatcher) -> None:
        assert self.tracker is not None
        while True:
            for ident, epoch in await trio.to_thread.run_sync(watcher.scan):
                self.tracker.arrived(ident, epoch)
            self._scans += 1
            await trio.sleep(POLL_S)

    def progress_fields(self) -> dict[str, str]:
        """Live progress: delivered and outstanding counts."""
        t = self.tracker
        if t is None:
            return {}
        return {"delivered": f"{t.delivered:,}", "outstanding": f"{t.outstanding:,}"}

    async def wait(self, stop: Callable[[], bool], show: bool) -> None:
        """Wait up to ``wait`` seconds until nothing is outstanding, or ``stop()`` (a Ctrl-C) turns true.

        Then, within the same bound, let what is already on its way be seen
        (late duplicates): every watched folder is scanned twice more, and
        reports get :data:`SETTLE_S`.
        """
        t = self.tracker
        assert t is not None
        start = time.monotonic()
        deadline = start + self.config.wait
        last_shown = 0.0
        if show and t.outstanding:
            print(f"delivery: waiting up to {self.config.wait:g}s for {t.outstanding:,} outstanding", flush=True)
        while t.outstanding and not stop() and time.monotonic() < deadline:
            now = time.monotonic()
            if show and now - last_shown >= WAIT_REPORT_S:
                last_shown = now
                print(f"delivery: {t.outstanding:,} outstanding, {deadline - now:.0f}s left", flush=True)
            await trio.sleep(0.05)
        settled = self._scans + 2 * len(self.watchers)
        settle_end = min(time.monotonic() + SETTLE_S, deadline)
        while not stop() and time.monotonic() < deadline and (self._scans < settled or time.monotonic() < settle_end):
            await trio.sleep(0.02)
        self.waited_s = time.monotonic() - start

    def finish(self, results_path: Path) -> None:
        """Stop the delivery sink (collecting its stats) and write ``delivery-problems.txt``."""
        if self.sink is not None:
            self.sink.stop()
            self.sink_stats = self.sink.stats
        if self.tracker is not None:
            (results_path / PROBLEMS_FILE).write_text(self.tracker.problems_text(), encoding="ascii")

    def summary(self) -> dict[str, Any]:
        """The summary's ``delivery`` section (README, "Delivery latency")."""
        doc: dict[str, Any] = self.tracker.summary() if self.tracker is not None else {}
        doc["outstanding_after_wait"] = self.tracker.outstanding if self.tracker is not None else 0
        doc["waited_s"] = round(self.waited_s, 3)
        if self.listener is not None:
            doc["reports"] = {
                "received": self.listener.reports,
                "resent": self.listener.resent,
                "dropped_by_sinks": self.listener.dropped,
                "sinks": self.listener.sinks,
                "bad_connections": self.listener.bad_connections,
            }
        if self.sink_stats is not None:
            doc["sink"] = self.sink_stats
        return doc
