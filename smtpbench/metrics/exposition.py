"""Live OpenMetrics/Prometheus exposition of a run (``--metrics-port``, README "Watching a run live").

Theory of operation
-------------------
Nothing here is on the hot path.  The engine calls :meth:`LiveMetrics.update`
once per ``output.interval`` rotation with what it has at hand then: the
interval histograms just closed, the run counters, the sessions in flight,
the generator's latest health sample and the thresholds as judged at that
rotation.  ``update`` builds every metric family at once and swaps them in
with one reference assignment; the exporter thread's scrape reads whatever
list is current, so a scrape never sees half an update and never takes a
lock the event loop waits on.

The HTTP server is ``prometheus_client``'s own (a daemon thread, plain
``wsgiref``), on a private registry: the run's event loop never serves a
request, and the figures are the same whichever process imports us.  It is
started before any traffic (a port in use is a run error, exit 3) and stopped
at the end of the run.  The library is imported only when a port is set.

Clocks: latencies are measured on ``time.perf_counter`` (monotonic) by the
sessions, exactly as in ``histograms.hlog``; the figures change only at
rotations, stamped on the wall clock (``smtpbench_last_update_timestamp_seconds``).
Histogram buckets are counted from the HdrHistograms (3 significant digits),
so a value within 0.1 % above a bucket bound may be counted in that bucket.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smtpbench.errors import RunError
from smtpbench.metrics import tlsstats
from smtpbench.metrics.recorder import Counters, Interval
from smtpbench.metrics.thresholds import ERROR_KINDS, Threshold

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

#: Histogram bucket upper bounds, seconds: sub-millisecond loopback to minutes-long SMTP timeouts.
BUCKETS_S: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
BUCKETS_S += (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_BOUNDS_US = tuple(round(b * 1_000_000) for b in BUCKETS_S)
#: Recorder tags under this prefix are the generator's own (loop lag), not SMTP phases.
GENERATOR_PREFIX = "generator."
#: The per-interval quantiles exposed as gauges.
QUANTILES = (0.5, 0.99)
#: How long stopping may wait for the exporter thread.
STOP_TIMEOUT_S = 5.0
#: counts.* -> (family, label value) for the families that split one name by a label.
_MESSAGES = ("accepted", "rejected", "failed", "unfinished")
_SESSIONS_ENDED = ("completed", "failed", "unfinished")


@dataclass
class RunState:
    """What the engine knows at one rotation (plain values: metrics/ imports nothing of load/)."""

    intervals: Sequence[Interval]
    counters: Counters
    in_flight: int
    #: Phase each in-flight session is waiting in now.
    phases: Iterable[str]
    status: str
    stopping: bool
    elapsed_s: float
    #: The loop thread's CPU share of one core in the latest health sample (None before the first).
    cpu_percent: float | None = None
    #: Open model: seconds the arrival driver is behind schedule now.
    behind_s: float = 0.0
    #: Each criterion with its latest judgement (``thresholds.evaluate``'s rows), in profile order.
    thresholds: Sequence[tuple[Threshold, Mapping[str, Any]]] = field(default_factory=tuple)
    #: Sessions that sent a PROXY header so far (0 without target.proxy_protocol).
    proxy_announced: int = 0


class _Buckets:
    """A Prometheus histogram's running state for one tag: cumulative from the start of the run."""

    __slots__ = ("counts", "total", "sum_s")

    def __init__(self) -> None:
        self.counts = [0] * len(_BOUNDS_US)
        self.total = 0
        self.sum_s = 0.0

    def add(self, h: HdrHistogram) -> None:
        """Add one closed interval histogram (µs) into the buckets."""
        counts = self.counts
        for item in h.get_recorded_iterator():
            # The lowest value of the HdrHistogram bucket: never undercounts a bound.
            low = h.get_lowest_equivalent_value(item.value_iterated_to)
            n = item.count_at_value_iterated_to
            for i, bound in enumerate(_BOUNDS_US):
                if low <= bound:
                    counts[i] += n
                    break
        n = h.get_total_count()
        self.total += n
        self.sum_s += h.get_mean_value() * n / 1e6

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs, cumulative, ending with ``+Inf`` = every value."""
        out, running = [], 0
        for bound, n in zip(BUCKETS_S, self.counts, strict=True):
            running += n
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(self.total)))
        return out


def _linger(seconds: float) -> None:
    """Sleep ``seconds``, cut short by Ctrl-C or SIGTERM like the run itself.

    The run treats SIGTERM as Ctrl-C (a Kubernetes Job's stop); outside the run's event loop SIGTERM would
    otherwise kill the process with 143 and lose the run's exit status (0, or 1 for a failed threshold).
    """

    def stop(_signo: int, _frame: object) -> None:
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()  # signal handlers: main thread only
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(seconds)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class LiveMetrics:
    """The exporter of one run: ``with LiveMetrics(host, port, info) as live: ... live.update(state)``."""

    def __init__(self, host: str, port: int, info: Mapping[str, str], linger: float = 0.0) -> None:
        self.host, self.port = host, port
        self.info = dict(info)
        #: Seconds the final figures stay served after the run (``output.metrics_linger``).
        self.linger = linger
        self._buckets: dict[str, _Buckets] = {}
        self._last_interval: dict[str, HdrHistogram] = {}
        self._families: list[Any] = []
        self._server: Any = None
        self._thread: Any = None

    # --- serving ----------------------------------------------------------

    def __enter__(self) -> LiveMetrics:
        """Listen on ``host:port`` (raises RunError when it cannot: port in use, unknown host)."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as exc:
            detail = getattr(exc, "strerror", None) or exc
            raise RunError(f"cannot serve metrics on {self.host}:{self.port}: {detail}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        """Serve the final figures ``linger`` seconds more (not after an exception; Ctrl-C or SIGTERM cuts it
        short, and the run keeps its exit status), then stop serving and close the port (bounded: the server
        thread is a daemon)."""
        if self._server is not None and self.linger > 0 and exc[0] is None:
            # A Prometheus scraping every 15 s would otherwise never see the figures of the run's last seconds.
            _linger(self.linger)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(STOP_TIMEOUT_S)
            self._server = None

    def collect(self) -> Iterator[Any]:
        """The families of the latest update (called by the exporter thread at each scrape)."""
        return iter(self._families)

    # --- updating ---------------------------------------------------------

    def update(self, state: RunState) -> None:
        """Fold the closed intervals into the histograms and publish every family anew."""
        self._last_interval = {}
        for iv in state.intervals:
            self._buckets.setdefault(iv.tag, _Buckets()).add(iv.histogram)
            self._last_interval[iv.tag] = iv.histogram
        self._families = self._build(state)  # one assignment: what a scrape sees is whole

    def _build(self, state: RunState) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: list[Any] = []

        def counter(name: str, doc: str, value: float) -> None:
            families.append(CounterMetricFamily(name, doc, value=value))

        def gauge(name: str, doc: str, value: float) -> None:
            families.append(GaugeMetricFamily(name, doc, value=value))

        c = state.counters
        counts = c.counts
        info = GaugeMetricFamily("smtpbench_run_info", "The run (value always 1).", labels=[*self.info, "status"])
        info.add_metric([*self.info.values(), state.status], 1)
        families.append(info)
        gauge("smtpbench_run_elapsed_seconds", "Seconds since the run's start (perf_counter clock).", state.elapsed_s)
        gauge("smtpbench_run_stopping", "1 once arrivals have stopped (end, signal or threshold).", state.stopping)
        gauge("smtpbench_last_update_timestamp_seconds", "Wall-clock time of the latest update.", time.time())

        msgs = CounterMetricFamily(
            "smtpbench_messages", "Messages by outcome (the summary's counts).", labels=["result"]
        )
        for result in _MESSAGES:
            msgs.add_metric([result], counts[f"messages_{result}"])
        families.append(msgs)
        counter("smtpbench_messages_sent", "Messages whose data was sent.", counts["messages_sent"])
        counter("smtpbench_recipients_rejected", "RCPT TO commands the server refused.", counts["recipients_rejected"])
        counter("smtpbench_bytes_sent", "Message bytes sent.", counts["bytes_sent"])
        counter("smtpbench_sessions_started", "Sessions started.", counts["sessions_started"])
        ended = CounterMetricFamily("smtpbench_sessions_ended", "Sessions ended, by outcome.", labels=["result"])
        for result in _SESSIONS_ENDED:
            ended.add_metric([result], counts[f"sessions_{result}"])
        families.append(ended)
        counter("smtpbench_sessions_late", "Open model: sessions started over 10 ms late.", counts["sessions_late"])
        counter("smtpbench_sessions_capped", "Open model: arrivals held by max_in_flight.", counts["sessions_capped"])
        handshakes = CounterMetricFamily(
            "smtpbench_tls_handshakes", "TLS handshakes, full or resumed (summary.json tls).", labels=["handshake"]
        )
        for kind, tag in (("full", tlsstats.FULL), ("resumed", tlsstats.RESUMED)):
            handshakes.add_metric([kind], counts[tag])
        families.append(handshakes)
        # LMTP and PROXY counters are exported at 0 in runs without them, like the TLS ones above: a counter that
        # exists from the first scrape keeps rate()/increase() and the dashboard's panels defined ("0", not "No data").
        recipients = CounterMetricFamily(
            "smtpbench_lmtp_recipients",
            "LMTP: per-recipient replies to the data, by outcome (counts.recipients_delivered / _failed).",
            labels=["result"],
        )
        for result in ("delivered", "failed"):
            recipients.add_metric([result], counts[f"recipients_{result}"])
        families.append(recipients)
        counter(
            "smtpbench_lmtp_messages_partial",
            "LMTP: messages delivered to some recipients but not all (counts.messages_partial).",
            counts["messages_partial"],
        )
        counter(
            "smtpbench_proxy_sessions_announced",
            "Sessions that sent a PROXY protocol header (summary.json proxy.sessions_announced).",
            state.proxy_announced,
        )
        errors = CounterMetricFamily("smtpbench_errors", "Errors by kind (net.errors.classify).", labels=["kind"])
        for kind in sorted(set(ERROR_KINDS) | set(c.errors)):
            errors.add_metric([kind], c.errors[kind])
        families.append(errors)
        replies = CounterMetricFamily(
            "smtpbench_replies", "Server replies by command and code.", labels=["verb", "code"]
        )
        for verb, codes in sorted(c.replies.items()):
            for code, n in sorted(codes.items()):
                replies.add_metric([verb, str(code)], n)
        families.append(replies)

        gauge("smtpbench_sessions_in_flight", "Sessions running now.", state.in_flight)
        waiting = GaugeMetricFamily("smtpbench_sessions_in_phase", "Sessions running now, by phase.", labels=["phase"])
        for phase, n in sorted(Counter(state.phases).items()):
            waiting.add_metric([phase], n)
        families.append(waiting)
        unfinished = GaugeMetricFamily(
            "smtpbench_sessions_unfinished", "Sessions the run's end cut off, by phase.", labels=["phase"]
        )
        for phase, n in sorted(c.unfinished.items()):
            unfinished.add_metric([phase], n)
        families.append(unfinished)

        families += self._latency(lambda tag: not tag.startswith(GENERATOR_PREFIX), "smtpbench_latency", "phase")
        families += self._latency(lambda tag: tag == GENERATOR_PREFIX + "loop_lag", "smtpbench_generator_loop_lag", "")
        cpu = math.nan if state.cpu_percent is None else state.cpu_percent / 100
        gauge("smtpbench_generator_cpu_ratio", "Event-loop thread CPU, share of one core, latest sample.", cpu)
        gauge("smtpbench_generator_behind_schedule_seconds", "Open model: arrival driver lateness.", state.behind_s)
        families += _thresholds(state.thresholds)
        return families

    def _latency(self, wanted: Any, name: str, label: str) -> list[Any]:
        """A histogram (run so far) and per-interval quantile gauges for the tags ``wanted`` picks."""
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        labels = [label] if label else []
        hist = HistogramMetricFamily(f"{name}_seconds", "Since the run's start (perf_counter clock).", labels=labels)
        quant = GaugeMetricFamily(
            f"{name}_interval_seconds", "Quantile over the latest interval only.", labels=[*labels, "quantile"]
        )
        for tag in sorted(t for t in self._buckets if wanted(t)):
            b = self._buckets[tag]
            key = [tag] if label else []
            hist.add_metric(key, b.cumulative(), b.sum_s)
            h = self._last_interval.get(tag)
            if h is not None:  # no values in the latest interval: no quantile (absent, not 0)
                for q in QUANTILES:
                    quant.add_metric([*key, repr(q)], h.get_value_at_percentile(q * 100) / 1e6)
        return [hist, quant]


def _thresholds(judged: Sequence[tuple[Threshold, Mapping[str, Any]]]) -> list[Any]:
    """``smtpbench_threshold_ok`` (1 holds, 0 fails or no data) and ``smtpbench_threshold_value`` per criterion."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["metric", "condition", "abort_on_fail"]
    ok = GaugeMetricFamily(
        "smtpbench_threshold_ok", "1 when the threshold holds at the latest interval.", labels=labels
    )
    value = GaugeMetricFamily(
        "smtpbench_threshold_value",
        "The threshold metric's figure (seconds for durations; NaN: no data).",
        labels=labels,
    )
    for t, row in judged:
        key = [t.metric, t.condition, str(t.abort_on_fail).lower()]
        ok.add_metric(key, 1.0 if row["ok"] else 0.0)
        v = row["value"]
        value.add_metric(key, math.nan if v is None else v / 1e6 if t.kind == "duration" else float(v))
    return [ok, value]
