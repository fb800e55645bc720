"""``execute()``: one run in this process, set up before any traffic, results written whatever happens.

Everything that can fail on bad input or environment is prepared before the
event loop starts (results folder, resolved profile, message pool, TLS
context, embedded sink, delivery sink, metrics endpoint); then
:class:`~smtpbench.load.engine.Engine` runs the workload.  A run split over
worker processes (``--workers``) is :mod:`smtpbench.load.workers`: each worker
is one ``execute()`` in its own process.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import trio

from smtpbench.delivery.end import DeliveryRun
from smtpbench.errors import RunError
from smtpbench.load.engine import Engine
from smtpbench.load.profile import Profile, resolved_toml
from smtpbench.load.results import ResultsDir, new_run_id
from smtpbench.load.split import ShardPlan
from smtpbench.report.progress import choose_mode


def embedded_sink_args(profile: Profile) -> list[str]:
    """The embedded sink's options: [target.sink]'s knobs, and it speaks what the run speaks (LMTP, PROXY headers)."""
    t = profile.target
    return [
        *t.sink.to_cli_args(),
        *(["--lmtp"] if t.protocol == "lmtp" else []),
        *(["--proxy-protocol"] if t.proxy_protocol != "none" else []),
    ]


@dataclass
class RunOutcome:
    """What a finished run produced."""

    status: str
    results_path: str
    summary: dict[str, Any]


def execute(
    profile: Profile,
    *,
    quiet: bool = False,
    progress: str | None = None,
    shard: ShardPlan | None = None,
    recorded: Profile | None = None,
    trace: int = 0,
    run_id: str | None = None,
    address: tuple[str, int] | None = None,
) -> RunOutcome:
    """Run ``profile`` to the end and write its results.

    ``shard`` places the run in a larger one (``profile`` holds its share of
    the load already); ``recorded`` is the profile written to profile.toml
    (the whole run's, so that every shard records the same one).  ``trace``
    writes the exchanges of that many sampled sessions, and of the first
    session of each error kind, to ``RUN/traces/`` (:mod:`smtpbench.load.trace`).
    ``run_id`` names the results folder (default: a new run id); ``address``
    is the target already resolved to ``(host, port)`` by the caller (a
    worker uses its parent's embedded sink instead of starting its own).

    Raises :class:`ConfigError` (exit 2) or :class:`RunError` (exit 3) for
    problems found before any traffic; after that, results are always written.
    """
    results = ResultsDir(profile.output.results_dir, run_id or new_run_id())
    results.write_profile(resolved_toml(recorded or profile))
    mode = choose_mode(progress or profile.output.progress, quiet)
    with ExitStack() as stack:
        host, port = address or (profile.target.host, profile.target.port)
        if profile.target.embedded and address is None:
            from smtpbench.sink.embedded import EmbeddedSink

            try:
                host, port = stack.enter_context(EmbeddedSink(embedded_sink_args(profile)))
            except (OSError, RuntimeError) as exc:
                raise RunError(f"could not start the embedded sink: {exc}") from None
        delivery = None
        if profile.delivery is not None:
            delivery = DeliveryRun(profile.delivery)
            delivery.start(stack)
        engine = Engine(profile, host, port, results, mode, shard, delivery, trace)
        out = profile.output
        if out.metrics_port is not None:  # imported only when asked for: start-up does not pay for it
            from smtpbench.metrics.exposition import LiveMetrics

            info = {"run_id": results.run_id, "model": profile.workload.model, "target": f"{host}:{port}"}
            engine.live = stack.enter_context(LiveMetrics(out.metrics_host, out.metrics_port, info, out.metrics_linger))
        start = time.perf_counter()
        try:
            trio.run(engine.main)
        except BaseException:
            if engine.status == "completed":
                engine.status = "failed"
            raise
        finally:  # what was measured is written however the run ended
            if delivery is not None:
                delivery.finish(results.path)
            engine.judge()
            if engine.control.tracer is not None:
                engine.control.tracer.finish()
            # From the common start time for a shard (not from the wait before it).
            begin = engine.t0 if shard is not None and engine.t0 else start
            summary = engine.summary(time.perf_counter() - begin)
            results.write_final(summary, engine.recorder.totals)
    return RunOutcome(engine.status, str(results.path), summary)
