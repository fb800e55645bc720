"""The load engine against our own sink: pipelining, data pipelined with the next envelope, knobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import cli_argv
from tests.sinkutil import SinkThread
from tests.test_engine import read_hlog, run


@pytest.mark.parametrize("pipeline_data", [True, False])
def test_pipelined_counts_match_sink(tmp_path: Path, pipeline_data: bool) -> None:
    with SinkThread(store_messages=False) as srv:
        s = run(
            tmp_path,
            srv.port,
            f"[smtp]\npipeline_data = {str(pipeline_data).lower()}\n"
            "[workload]\nsessions = 5\nmessages = 400\nmessages_per_session = 37\n"
            '[message]\nsize = "2KiB"\nrecipients = {min = 1, max = 3}\n',
        )
        stats = srv.stats
    assert s["status"] == "completed" and s["counts"]["errors"] == 0
    assert s["counts"]["messages_accepted"] == 400 == stats.messages_accepted
    assert s["phases"]["rcpt"]["count"] == stats.recipients_accepted
    assert s["counts"]["sessions_completed"] == s["counts"]["sessions_started"] == stats.sessions_completed
    assert s["phases"]["transaction"]["count"] == 400
    assert s["phases"]["mail"]["count"] == 400
    assert s["unexpected_replies"] == {}
    totals = read_hlog(Path(s["_dir"]) / "histograms.hlog")
    assert totals["data_end"] == 400


@pytest.mark.parametrize("pipeline_data", [True, False])
def test_sink_delay_at_end_of_data_is_measured(tmp_path: Path, pipeline_data: bool) -> None:
    """A 100 ms delay before the reply to the final dot gives data_end p50 within 25 % above 100 ms.

    The delay was 20 ms (20..23 ms): under load (load average 7 on 2 cores, a CPU hog) the median
    reached 23.2..25.6 ms with the sink in a thread or in its own process alike (scheduler wake-up
    noise, not the client), so it failed by chance.  100 ms keeps the relative precision.  At load
    average ~8 the median once reached 117 ms (sink in a thread sharing the GIL): the bound is 125 ms.
    """
    with SinkThread(store_messages=False, delays={"data_end": 0.100}) as srv:
        s = run(
            tmp_path,
            srv.port,
            f"[smtp]\npipeline_data = {str(pipeline_data).lower()}\n"
            "[workload]\nsessions = 4\nmessages = 80\nmessages_per_session = 10\n",
        )
        accepted = srv.stats.messages_accepted
    p50 = s["phases"]["data_end"]["p50_us"]
    assert 100_000 <= p50 <= 125_000, p50
    assert s["phases"]["mail"]["p50_us"] < 5_000  # the delay is not blamed on the next MAIL
    assert s["counts"]["messages_accepted"] == 80 == accepted


def test_sink_rejects_are_counted_like_the_sink_saw_them(tmp_path: Path) -> None:
    with SinkThread(store_messages=False, reject_data_temp=0.1, reject_rcpt_perm=0.05, seed=3) as srv:
        s = run(tmp_path, srv.port, "[workload]\nsessions = 3\nmessages = 300\nmessages_per_session = 20\n")
        stats = srv.stats
    c = s["counts"]
    assert c["messages_accepted"] == stats.messages_accepted
    assert c.get("recipients_rejected", 0) == stats.recipients_rejected > 0
    assert stats.messages_rejected_temp > 0
    assert c["messages_accepted"] + c["messages_rejected"] == 300
    assert s["errors"]["temp_fail"] == stats.messages_rejected_temp


@pytest.mark.parametrize("pipeline_data", [True, False])
def test_354_after_every_recipient_refused_gets_a_lone_dot(tmp_path: Path, pipeline_data: bool) -> None:
    """A pipelined envelope whose recipients are all refused but whose DATA gets 354 (fault S-03):
    RFC 2920 3.1 says the client should send a single dot.  Before, the RSET (or QUIT) that followed
    was read as message text and every session ended in a timeout."""
    with SinkThread(store_messages=False, faults={"S-03"}, reject_rcpt_perm=1.0) as srv:
        s = run(
            tmp_path,
            srv.port,
            f'[smtp]\npipelining = "on"\npipeline_data = {str(pipeline_data).lower()}\n'
            "[workload]\nsessions = 2\nmessages = 6\nmessages_per_session = 3\n",
        )
        stats = srv.stats
    assert s["status"] == "completed", s["status_reason"]
    assert s["errors"] == {"perm_fail": 6}
    c = s["counts"]
    assert c["messages_rejected"] == 6 == c["recipients_rejected"] and c["messages_accepted"] == 0
    assert c["sessions_completed"] == 2 == stats.sessions_completed
    assert s["phases"]["rset"]["count"] == 6  # the dot, timed like the RSET it replaces
    assert stats.bytes_received == 0 and stats.messages_accepted == 0


def test_replies_out_of_order_are_a_protocol_error_not_a_timeout(tmp_path: Path) -> None:
    """Fault P-01 sends a pipelined group's RCPT replies after its DATA reply: the 354 pairs with RCPT.  The
    session used to send RSET into the message content and time out (5 s here); now it ends at once."""
    t0 = time.monotonic()
    with SinkThread(store_messages=False, faults={"P-01"}) as srv:
        s = run(
            tmp_path,
            srv.port,
            '[smtp]\npipelining = "on"\ntimeouts.data_end = "5s"\ntimeouts.other = "5s"\n'
            "[workload]\nsessions = 2\nmessages = 6\nmessages_per_session = 3\n",
        )
    assert set(s["errors"]) == {"protocol"}, s["errors"]
    assert s["errors"]["protocol"] == s["counts"]["sessions_failed"] == 6  # each at its first message
    assert time.monotonic() - t0 < 4.0  # one timeout would be 5 s


def test_a_refused_greeting_backs_the_loop_off(tmp_path: Path) -> None:
    """A server that greets 554 and hangs up (fault C-02): each closed loop backs off 0.05, 0.1, 0.2, 0.4,
    0.8 s between sessions that could not open, so 2 loops try at most 12 times in 1.5 s (a slow machine only
    makes fewer); retrying at once made ~2,500 sessions a second."""
    s = run_on_sink(tmp_path, '[workload]\nsessions = 2\nduration = "1.5s"\n', faults={"C-02"})
    c = s["counts"]
    assert s["errors"] == {"perm_fail": c["sessions_started"]} and 2 <= c["sessions_started"] <= 12, c


def run_on_sink(tmp_path: Path, body: str, **sink: Any) -> dict[str, Any]:
    """``run`` the profile ``body`` against a fresh sink (``sink``: its settings)."""
    with SinkThread(store_messages=False, **sink) as srv:
        return run(tmp_path, srv.port, body)


@pytest.mark.parametrize("pipeline_data", [True, False])
def test_transaction_is_this_messages_service_not_the_previous_ones(tmp_path: Path, pipeline_data: bool) -> None:
    """Issue 8, section 2: with the end of data delayed 20 ms, transaction p50 ~ data_end p50 + mail p50.

    With ``pipeline_data`` the next MAIL goes out with the previous data; its transaction starts at the
    previous final reply, so it must not carry that message's 20 ms wait as well (which gave ~2x before).
    """
    s = run_on_sink(
        tmp_path,
        f"[smtp]\npipeline_data = {str(pipeline_data).lower()}\n"
        "[workload]\nsessions = 4\nmessages = 120\nmessages_per_session = 10\n",
        delays={"data_end": 0.020},
    )
    ph = s["phases"]
    expected = ph["data_end"]["p50_us"] + ph["mail"]["p50_us"]
    assert abs(ph["transaction"]["p50_us"] - expected) <= 0.15 * expected, (ph["transaction"], expected)
    assert s["counts"]["messages_accepted"] == 120


def test_think_time_pauses_between_messages_of_a_session(tmp_path: Path) -> None:
    """One session of 3 messages with think_time 150 ms: two pauses inside the session, none in a transaction."""
    s = run_on_sink(
        tmp_path, '[workload]\nsessions = 1\nmessages = 3\nmessages_per_session = 3\nthink_time = "150ms"\n'
    )
    assert s["counts"]["sessions_completed"] == 1 and s["counts"]["messages_accepted"] == 3
    assert s["phases"]["session"]["min_us"] >= 300_000
    # Were the pause inside, 2 of the 3 transactions (the p50) would last >= 150 ms.
    assert s["phases"]["transaction"]["p50_us"] < 150_000


def test_session_pause_pauses_between_sessions_of_a_closed_loop(tmp_path: Path) -> None:
    """One loop, session_pause 400 ms, 1.2 s: at most 4 sessions (0, 0.4, 0.8, 1.2 s), none holding the pause."""
    s = run_on_sink(
        tmp_path, '[workload]\nsessions = 1\nduration = "1.2s"\nsession_pause = "400ms"\nmessages_per_session = 2\n'
    )
    c = s["counts"]
    assert 1 <= c["sessions_started"] <= 4, c
    assert c["sessions_completed"] == c["sessions_started"]
    assert s["phases"]["session"]["p50_us"] < 400_000


def test_the_end_of_the_run_cuts_a_session_pause_short(tmp_path: Path) -> None:
    """A loop pausing between sessions stops at the run's end, not at the end of its grace (30 s here)."""
    t0 = time.monotonic()
    s = run_on_sink(tmp_path, '[workload]\nsessions = 2\nduration = "1s"\nsession_pause = "60s"\ngrace = "30s"\n')
    elapsed = time.monotonic() - t0
    assert s["counts"]["sessions_started"] == 2 == s["counts"]["sessions_completed"]
    assert elapsed < 10.0, elapsed  # ~1.2 s; it took 31 s when only the grace deadline ended the pause


def test_the_end_of_the_run_cuts_a_think_time_short(tmp_path: Path) -> None:
    """A session pausing 60 s between its messages QUITs at the run's end, not at the end of its 30 s grace."""
    t0 = time.monotonic()
    s = run_on_sink(
        tmp_path,
        '[workload]\nsessions = 2\nduration = "1s"\nthink_time = "60s"\nmessages_per_session = 5\ngrace = "30s"\n',
    )
    elapsed = time.monotonic() - t0
    c = s["counts"]
    assert c["sessions_completed"] == 2 and c["messages_accepted"] == 2, c  # one message each, then QUIT
    assert elapsed < 10.0, elapsed  # ~1.2 s; 31 s when only the grace deadline ended the pause


def test_embedded_sink_delays_the_quit_reply(tmp_path: Path) -> None:
    """``[target.sink.delay] quit`` reaches the embedded sink: every session's ``quit`` phase waits it out."""
    from smtpbench.load.execute import execute
    from smtpbench.load.profile import load_profile
    from tests.test_engine import write_profile

    body = '[target]\nembedded = true\n[target.sink]\ndelay = { quit = "300ms" }\n'
    path = write_profile(tmp_path, body + "[workload]\nsessions = 2\nmessages = 4\n")
    outcome = execute(load_profile(path, results_dir=str(tmp_path / "results")), quiet=True)
    quit = json.loads((Path(outcome.results_path) / "summary.json").read_text())["phases"]["quit"]
    assert quit["count"] == 4 and quit["min_us"] >= 300_000, quit


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not reaped, is not running)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_killed_run_does_not_leave_its_embedded_sink(tmp_path: Path) -> None:
    """SIGKILL a run mid-load: its embedded sink (a child process) stops too; it used to serve on, orphaned."""
    (tmp_path / "p.toml").write_text('[target]\nembedded = true\n[workload]\nsessions = 1\nduration = "60s"\n')
    argv = [*cli_argv(), "run", str(tmp_path / "p.toml"), "--results-dir", str(tmp_path / "r"), "--quiet"]
    proc = subprocess.Popen([*argv, "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sinks: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "r").glob("*/timeline.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)  # the first interval is written: the sink listens and the load runs
        sinks = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    finally:
        proc.kill()
        proc.wait(30)
    assert sinks, "the run started no child process"
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in sinks) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in sinks if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the embedded sink outlived its run"
