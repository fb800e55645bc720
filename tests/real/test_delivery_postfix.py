"""Delivery latency through a real Postfix: relayhost = the run's delivery sink (issue 10's proof).

Postfix (tests/real harness, queue retries after 1 s) relays every message for ``relay.test`` to the
delivery sink that the run starts on ``[delivery] listen``; the sink reports each arrival to the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from smtpbench.load.execute import execute
from smtpbench.load.profile import load_profile
from smtpbench.metrics.recorder import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from tests.peers import free_port
from tests.real.conftest import Factory
from tests.real.servers import RealServer
from tests.test_engine import run

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "through-postfix.toml"
#: A run here takes 10-20 s on an idle machine (Postfix start, load, delivery wait): 3x+ headroom when loaded.
pytestmark = pytest.mark.timeout(180)


def relaying_postfix(real_factory: Factory, sink_port: int, **main_cf: str) -> RealServer:
    """Postfix relaying everything that is not example.test to 127.0.0.1:sink_port, for loopback clients."""
    params = {"relayhost": f"[127.0.0.1]:{sink_port}", "mynetworks": "127.0.0.0/8", **main_cf}
    return real_factory("postfix", main_cf=params)


def run_through(tmp_path: Path, server: RealServer, sink_port: int, *overrides: str) -> dict[str, Any]:
    """Run profiles/through-postfix.toml against ``server`` with its delivery sink on ``sink_port``."""
    prof = load_profile(
        str(PROFILE),
        [f'delivery.listen="127.0.0.1:{sink_port}"', 'delivery.wait="40s"', *overrides],
        target=f"{server.host}:{server.port}",
        results_dir=str(tmp_path / "results"),
    )
    outcome = execute(prof, quiet=True)
    summary: dict[str, Any] = json.loads((Path(outcome.results_path) / "summary.json").read_text())
    summary["_dir"] = outcome.results_path
    return summary


def through_postfix(
    tmp_path: Path, real_factory: Factory, overrides: list[str], **main_cf: str
) -> tuple[dict[str, Any], RealServer]:
    """A relaying Postfix (``main_cf`` added) and a run through it to its delivery sink: (summary, server)."""
    sink_port = free_port()
    postfix = relaying_postfix(real_factory, sink_port, **main_cf)
    return run_through(tmp_path, postfix, sink_port, *overrides), postfix


def delivery_intervals(results: str) -> list[tuple[float, int, int]]:
    """(interval start epoch, count, max µs) of each ``delivery`` interval in the run's histograms.hlog."""
    reader = HistogramLogReader(
        str(Path(results) / "histograms.hlog"), HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    )
    out = []
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            return out
        if h.get_tag() == "delivery" and h.get_total_count():
            out.append((h.get_start_time_stamp() / 1000.0, h.get_total_count(), h.get_max_value()))


def test_steady_run_every_accepted_message_delivered_once(tmp_path: Path, real_factory: Factory) -> None:
    s, _ = through_postfix(tmp_path, real_factory, ['workload.duration="6s"'])
    d = s["delivery"]
    accepted = s["counts"]["messages_accepted"]
    assert accepted >= 100 and s["counts"]["errors"] == 0
    assert d["accepted"] == d["delivered"] == accepted
    assert d["lost"] == d["duplicated"] == d["unexpected"] == d["rejected_but_delivered"] == 0
    assert d["outstanding_after_wait"] == 0
    # Postfix relays each message once, all its recipients in one transaction.
    assert d["sink"]["messages_accepted"] == accepted
    assert d["sink"]["recipients_accepted"] == s["phases"]["rcpt"]["count"]
    delivery, end_to_end = s["phases"]["delivery"], s["phases"]["end_to_end"]
    assert delivery["count"] == end_to_end["count"] == accepted
    assert 0 < delivery["p50_us"] < end_to_end["p50_us"]
    assert (Path(s["_dir"]) / "delivery.hgrm").is_file()
    assert "0 lost, 0 duplicated" in (Path(s["_dir"]) / "delivery-problems.txt").read_text()


@pytest.mark.timeout(300)  # up to ~100 s when Postfix's 60 s retry of a locked file comes in (below)
def test_paused_delivery_sink_latency_rises_and_recovers_nothing_lost(tmp_path: Path, real_factory: Factory) -> None:
    """The next hop stops answering for 5 s mid-run: Postfix gives up on the greeting after 2 s, keeps the mail
    queued and retries (after 1 s here); delivery latency rises then falls back, and after the wait every
    accepted message has arrived once."""
    overrides = ['workload.duration="20s"', 'delivery.sink.pause_at="4s"', 'delivery.sink.pause_for="5s"']
    # Postfix's qmgr, finding a deferred queue file still locked by the smtp process that just deferred it
    # ("skipped, still being delivered"), puts it back for a fixed 60 s (qmgr_active.c): with retries every
    # second here that race happens now and then, so the wait (which ends as soon as all arrived) covers it.
    overrides.append('delivery.wait="100s"')
    s, postfix = through_postfix(tmp_path, real_factory, overrides, smtp_helo_timeout="2s")
    d = s["delivery"]
    accepted = s["counts"]["messages_accepted"]
    assert accepted >= 200
    assert d["sink"]["pauses"] == 1 and d["sink"]["paused_ms"] >= 4_900
    assert d["lost"] == d["duplicated"] == d["unexpected"] == 0
    assert d["delivered"] == accepted and d["outstanding_after_wait"] == 0
    intervals = delivery_intervals(s["_dir"])
    worst = max(range(len(intervals)), key=lambda i: intervals[i][2])
    assert intervals[worst][2] >= 3_000_000, intervals  # messages held through the outage waited seconds
    before = [mx for _, _, mx in intervals[:worst]]
    after = [mx for _, _, mx in intervals[worst + 1 :]]
    # Before the outage and once the backlog is through, deliveries take well under a second again.
    assert before and min(before) < 1_000_000, intervals
    assert after and min(after) < 1_000_000, intervals
    assert s["phases"]["delivery"]["max_us"] >= 3_000_000
    assert "timed out while receiving the initial server greeting" in postfix.log_text()  # it did retry


def test_local_delivery_watched_in_maildir(tmp_path: Path, postfix: RealServer) -> None:
    """Without relaying: Postfix delivers example.test into a Maildir, which the run watches."""
    s = run(
        tmp_path,
        postfix.port,
        '[workload]\nmodel = "open"\nrate = 30\nduration = "4s"\n'
        '[message]\nto = "user{n}@example.test"\nrecipients = 2\n'
        f'[delivery]\nmaildir = "{postfix.maildir}/all"\nwait = "60s"\n',
    )
    d = s["delivery"]
    accepted = s["counts"]["messages_accepted"]
    assert accepted >= 60
    # One Maildir file per recipient: each message arrives as two copies, which is no duplicate.
    assert d["accepted"] == d["delivered"] == accepted
    assert d["lost"] == d["duplicated"] == d["unexpected"] == 0
    assert "sink" not in d and "reports" not in d
    assert s["phases"]["delivery"]["count"] == s["phases"]["end_to_end"]["count"] == accepted


def test_deferrals_at_the_next_hop_show_as_retry_cost(tmp_path: Path, real_factory: Factory) -> None:
    """The delivery sink defers 30 % of messages at end of data (451): Postfix retries them (after 1 s here), the
    retry cost shows in delivery latency, and nothing is lost or duplicated."""
    overrides = ['workload.duration="5s"', "delivery.sink.reject_data_temp=0.3", "message.recipients=1"]
    s, _ = through_postfix(tmp_path, real_factory, overrides)
    d = s["delivery"]
    accepted = s["counts"]["messages_accepted"]
    assert accepted >= 100
    assert d["delivered"] == accepted and d["lost"] == d["duplicated"] == 0
    deferred = d["sink"]["messages_rejected_temp"]
    assert deferred >= accepted // 10  # ~30 %, at least once each for some messages
    assert d["sink"]["messages_accepted"] == accepted  # each deferred one came back and was accepted once
    delivery = s["phases"]["delivery"]
    assert delivery["p50_us"] < 500_000 <= delivery["p90_us"], delivery  # the deferred share waited for a retry
