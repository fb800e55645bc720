"""The load engine against our own sink: pipelining, data pipelined with the next envelope, knobs."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    """A 20 ms delay before the reply to the final dot gives data_end p50 close to 20 ms."""
    with SinkThread(store_messages=False, delays={"data_end": 0.020}) as srv:
        s = run(
            tmp_path,
            srv.port,
            f"[smtp]\npipeline_data = {str(pipeline_data).lower()}\n"
            "[workload]\nsessions = 4\nmessages = 80\nmessages_per_session = 10\n",
        )
        accepted = srv.stats.messages_accepted
    p50 = s["phases"]["data_end"]["p50_us"]
    assert 20_000 <= p50 <= 23_000, p50
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
