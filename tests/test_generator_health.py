"""Issue 8, section 6: the generator watches itself (CPU share, event-loop lag, schedule lag).

Both ways, over real sockets: a light run is not flagged; a run whose event loop is starved by a CPU hog
in the same process is, in ``summary.json`` and in the final lines.  (A rate far beyond one core is
flagged too: ``test_accounting.test_a_rate_the_generator_cannot_keep_counts_dropped_arrivals``.)
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

from smtpbench.load import engine as engine_mod
from smtpbench.load.health import CPU_SATURATED_PERCENT, LOOP_LAG, LOOP_LAG_BOUND_US, GeneratorHealth, Sample
from smtpbench.load.session import Control
from smtpbench.metrics.recorder import Recorder, new_histogram
from smtpbench.report.table import print_summary
from tests.accounting import assert_accounted
from tests.sinkutil import SinkThread
from tests.test_engine import read_hlog, run

LIGHT = '[workload]\nsessions = 2\nduration = "1.5s"\nmessages_per_session = 3\nthink_time = "20ms"\n'
LIGHT += '[output]\ninterval = "0.25s"\n'


def final_lines(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    print_summary(summary, summary["_dir"], Console(file=buf, width=200))
    return buf.getvalue()


def test_a_light_run_is_not_flagged(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        s = run(tmp_path, srv.port, LIGHT)
    g = s["generator"]
    assert g["saturated"] is False and g["reason"] is None, g
    assert g["samples"] >= 3
    assert 0 < g["cpu_percent_p50"] <= g["cpu_percent_max"] < CPU_SATURATED_PERCENT
    assert g["loop_lag_p99_us"] < LOOP_LAG_BOUND_US
    # The probe wakes every 10 ms: well over 50 lag values in 1.5 s, all in the hlog, none among the phases.
    assert read_hlog(Path(s["_dir"]) / "histograms.hlog")[LOOP_LAG] > 50
    assert LOOP_LAG not in s["phases"]
    assert "saturated" not in final_lines(s)
    assert_accounted(s)


def test_a_cpu_hog_in_the_same_process_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that keeps the event loop busy 200 ms at a time starves the sessions: the run must say so."""
    real_watchdog = engine_mod.watchdog

    async def watchdog_and_hog(control: Control, period: float) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(real_watchdog, control, period)
            while True:
                t = time.perf_counter()
                while time.perf_counter() - t < 0.2:
                    pass
                await trio.sleep(0)

    monkeypatch.setattr(engine_mod, "watchdog", watchdog_and_hog)
    with SinkThread(store_messages=False) as srv:
        s = run(tmp_path, srv.port, LIGHT)
    g = s["generator"]
    assert g["saturated"] is True, g
    assert g["loop_lag_p99_us"] > LOOP_LAG_BOUND_US
    assert "event-loop lag p99" in g["reason"]
    assert "WARNING: the generator was saturated" in final_lines(s)


def health_with(samples: list[Sample], lag_us: int = 1000) -> dict[str, Any]:
    h = GeneratorHealth(Recorder(0.0), 1.0, lambda: 0.0)
    h.samples = samples
    lag = new_histogram()
    lag.record_value(lag_us, 100)
    return h.verdict(lag)


def test_the_saturation_rule() -> None:
    """Saturated when most samples are busy or behind, or the loop lag p99 passes its bound; else not."""
    busy, idle = Sample(95.0, 0.0), Sample(20.0, 0.0)
    assert health_with([busy, busy, idle])["saturated"] is True
    assert health_with([busy, idle, idle])["saturated"] is False
    behind = Sample(40.0, 2.0)
    verdict = health_with([behind, behind, idle])
    assert verdict["saturated"] is True and "behind schedule" in verdict["reason"]
    assert health_with([idle], lag_us=LOOP_LAG_BOUND_US * 2)["saturated"] is True
    assert health_with([])["saturated"] is False
    assert health_with([busy, idle, idle, idle]) == {
        "cpu_percent_p50": 20.0,
        "cpu_percent_max": 95.0,
        "loop_lag_p99_us": 1000,
        "loop_lag_max_us": 1000,
        "samples": 4,
        "saturated": False,
        "reason": None,
    }
