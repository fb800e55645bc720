"""Issue 8, section 1: every session accounted for, over real loopback sockets.

* sessions the run's end cuts off are ``unfinished``, by phase, with the time
  they waited (``unfinished_wait``, also ``corrected.`` in open runs, in the
  hlog too), said in words at the end and shown stuck in the live view;
* open runs count the arrivals that never started (``arrivals_dropped``), so
  that ``sessions_started + arrivals_dropped`` is what the rate asked for;
* a run in which no session completed is ``failed`` (exit 3, one line).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smtpbench.errors import EXIT_RUN_ERROR
from smtpbench.load import engine as engine_mod
from smtpbench.load.execute import execute
from smtpbench.load.profile import load_profile
from smtpbench.report.progress import show_progress
from tests.accounting import assert_accounted
from tests.hostile import HostileServer, MiniSMTP, make_app, no_greeting, only_run_dir, write_profile
from tests.sinkutil import SinkThread
from tests.test_engine import read_hlog, run


def run_cli(tmp_path: Path, target: str, **kw: Any) -> tuple[int, str, dict[str, Any]]:
    """``smtpbench run`` in-process (progress off, final table on); returns (exit code, output, summary)."""
    profile = write_profile(str(tmp_path), target, **kw)
    result = CliRunner().invoke(make_app(), ["run", profile])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    with open(os.path.join(only_run_dir(str(tmp_path)), "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    summary["_dir"] = only_run_dir(str(tmp_path))
    return result.exit_code, result.output, summary


def test_sessions_waiting_for_a_banner_are_unfinished_and_said_in_words(tmp_path: Path) -> None:
    """The issue's first case: a server that never greets, banner timeout longer than the run."""
    with HostileServer(no_greeting) as srv:
        code, output, s = run_cli(tmp_path, srv.target, sessions=10, duration="1s", grace="0.5s", timeout="30s")
    c = s["counts"]
    assert c["sessions_started"] == 10 == c["sessions_unfinished"]
    assert s["unfinished"] == {"banner": 10}
    assert_accounted(s)
    # They waited the whole run (1 s) plus the grace (0.5 s); the histogram and the hlog hold all 10.
    assert s["phases"]["unfinished_wait"]["min_us"] >= 1_400_000
    assert s["unfinished_min_wait_us"]["banner"] >= 1_400_000
    assert read_hlog(Path(s["_dir"]) / "histograms.hlog")["unfinished_wait"] == 10
    assert s["status"] == "failed" and code == EXIT_RUN_ERROR
    assert "dominant cause: unfinished in banner (10)" in s["status_reason"]
    text = " ".join(output.split())
    assert "10 sessions were still waiting for the banner when the run ended (waited >= 1." in text, output


def test_mixed_outcomes_add_up_in_an_open_run(tmp_path: Path) -> None:
    """Stalled final dots: messages and sessions end unfinished; the corrected wait is never below the wait."""
    with HostileServer(MiniSMTP(data_fault="stall")) as srv:
        s = run(
            tmp_path,
            srv.port,
            '[workload]\nmodel = "open"\nrate = 20\nduration = "1s"\ngrace = "0.3s"\n'
            '[smtp.timeouts]\ndata_end = "30s"\n',
        )
    c = s["counts"]
    assert c["sessions_started"] >= 10
    assert c["sessions_unfinished"] == c["sessions_started"] == c["messages_unfinished"] == c["messages_sent"]
    assert s["unfinished"] == {"data_end": c["sessions_started"]}
    assert_accounted(s)
    assert s["corrected"]["unfinished_wait"]["count"] == c["sessions_unfinished"]
    assert s["corrected"]["unfinished_wait"]["min_us"] >= s["phases"]["unfinished_wait"]["min_us"]
    assert c["arrivals_dropped"] == 0


def test_max_in_flight_holding_arrivals_past_the_end_counts_them_dropped(tmp_path: Path) -> None:
    rate, duration = 50, 1.0
    with HostileServer(no_greeting) as srv:
        s = run(
            tmp_path,
            srv.port,
            f'[workload]\nmodel = "open"\nrate = {rate}\nduration = "{duration}s"\ngrace = "0.3s"\n'
            'max_in_flight = 1\n[smtp.timeouts]\nbanner = "30s"\n',
        )
    c = s["counts"]
    assert c["sessions_started"] == 1 == c["sessions_unfinished"]
    # Uniform arrivals at 50/s over 1 s: 49 or 50 intended (the last one sits on the end).
    assert abs(c["sessions_started"] + c["arrivals_dropped"] - rate * duration) <= 1, c
    assert c["arrivals_dropped"] >= 48
    assert_accounted(s)


def test_a_rate_the_generator_cannot_keep_counts_dropped_arrivals(tmp_path: Path) -> None:
    """20,000 sessions/s for 1 s is far beyond one core: most arrivals never start, and say so."""
    rate, duration = 20_000, 1.0
    prof = tmp_path / "p.toml"
    prof.write_text(
        "[target]\nembedded = true\n"
        f'[workload]\nmodel = "open"\nrate = {rate}\nduration = "{duration}s"\ngrace = "1s"\n'
        '[output]\ninterval = "0.25s"\n'
    )
    outcome = execute(load_profile(str(prof), (), results_dir=str(tmp_path / "r")), quiet=True)
    s = outcome.summary
    c = s["counts"]
    assert c["arrivals_dropped"] > 0
    assert abs(c["arrivals_intended"] - rate * duration) <= 1, c
    assert_accounted(s)
    # Section 6: the generator, not the server, limited this run, and the summary says so.
    assert s["generator"]["saturated"] is True, s["generator"]
    assert s["generator"]["reason"]


def test_live_view_shows_stuck_sessions_by_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine_mod, "show_progress", functools.partial(show_progress, plain_every=0.5))
    with HostileServer(no_greeting) as srv:
        path = write_profile(str(tmp_path), srv.target, sessions=3, duration="2s", grace="0.2s", timeout="30s")
        execute(load_profile(path, ()), progress="plain")
    out = capsys.readouterr().out
    assert "stuck > 1s banner=3" in out, out
    assert "generator CPU" in out


def test_identities_hold_against_the_sink_with_rejections(tmp_path: Path) -> None:
    with SinkThread(store_messages=False, reject_data_temp=0.2, reject_rcpt_perm=0.1, seed=5) as srv:
        s = run(tmp_path, srv.port, "[workload]\nsessions = 3\nmessages = 200\nmessages_per_session = 9\n")
    c = s["counts"]
    assert c["messages_sent"] == 200 == c["messages_accepted"] + c["messages_rejected"]
    assert c["sessions_failed"] == c["sessions_unfinished"] == 0
    assert_accounted(s)
    assert s["status"] == "completed" and s["status_reason"] is None
