"""``target.protocol = "lmtp"`` against our sink speaking LMTP (``smtpbench sink --lmtp``), over loopback.

The run's per-recipient counts must equal what the sink saw: every recipient the
sink delivered to (or refused after the data) is one ``DATA_END`` reply to the run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from smtpbench.load.execute import execute
from smtpbench.load.profile import load_profile
from smtpbench.report.table import print_summary
from smtpbench.sink.embedded import EmbeddedSink
from tests.accounting import assert_accounted
from tests.sinkutil import SinkThread, tls_pair
from tests.test_engine import run, write_profile

LMTP = 'protocol = "lmtp"\n'


def no_data(s: dict[str, Any]) -> int:
    """Messages whose data was never sent (every recipient refused at RCPT time: DATA refused, or not sent)."""
    return int(s["counts"]["messages_sent"] - s["replies"]["DATA"].get("354", 0))


def run_with_refusals(tmp_path: Path, smtp: str, messages: int, seed: int) -> tuple[dict[str, Any], Any, list[Any]]:
    """``messages`` to 1..4 recipients each against an LMTP sink refusing some RCPTs and some recipients after the data.

    Returns the summary, the sink's stats and the messages it stored (those that reached someone).
    """
    with SinkThread(
        lmtp=True, reject_data_temp=0.1, reject_data_perm=0.15, reject_rcpt_perm=0.05, seed=seed, store_messages=True
    ) as srv:
        s = run(
            tmp_path,
            srv.port,
            LMTP + f"[smtp]\n{smtp}[workload]\nsessions = 3\nmessages = {messages}\nmessages_per_session = 12\n"
            '[message]\nsize = "3KiB"\nrecipients = {min = 1, max = 4}\n',
        )
        stats, stored = srv.stats, list(srv.messages)
    c = s["counts"]
    assert s["status"] == "completed" and c["sessions_failed"] == 0
    assert_accounted(s)
    assert c["messages_accepted"] + c["messages_rejected"] == messages
    # Per recipient, after the data: exactly the sink's view.
    assert c["recipients_delivered"] == stats.recipients_delivered == sum(len(m.rcpt_to) for m in stored) > 0
    assert c["recipients_failed"] == stats.recipients_failed > 0
    assert stats.recipients_accepted == c["recipients_delivered"] + c["recipients_failed"]
    assert c.get("recipients_rejected", 0) == stats.recipients_rejected > 0
    # Per message: accepted when anyone got it; partial when some did and some did not.
    assert c["messages_accepted"] == stats.messages_accepted
    assert 0 < c["messages_partial"] < c["messages_accepted"]
    assert s["replies"]["LHLO"] == {"250": c["sessions_started"]} and "EHLO" not in s["replies"]
    assert s["unexpected_replies"] == {}
    return s, stats, stored


@pytest.mark.parametrize(("pipelining", "pipeline_data"), [("auto", True), ("auto", False), ("off", False)])
def test_per_recipient_counts_match_the_sink(tmp_path: Path, pipelining: str, pipeline_data: bool) -> None:
    smtp = f'pipelining = "{pipelining}"\npipeline_data = {str(pipeline_data).lower()}\n'
    s, stats, _ = run_with_refusals(tmp_path, smtp, 240, 7)
    c = s["counts"]
    assert sum(s["replies"]["DATA_END"].values()) == c["recipients_delivered"] + c["recipients_failed"]
    rejected_after_data = stats.messages_rejected_temp + stats.messages_rejected_perm
    assert c["messages_rejected"] == rejected_after_data + no_data(s)
    assert s["errors"].get("temp_fail", 0) + s["errors"].get("perm_fail", 0) == c["messages_rejected"]
    # data_end: one sample per message that got its 354 (to the last recipient's reply), like the transactions.
    assert s["phases"]["data_end"]["count"] == s["phases"]["transaction"]["count"] == 240 - no_data(s)


@pytest.mark.parametrize("pipelining", ["auto", "off"])
def test_bdat_over_lmtp_counts_match_the_sink(tmp_path: Path, pipelining: str) -> None:
    """RFC 3030 4: BDAT ... LAST gets one reply per accepted recipient too; pipelined or command by command."""
    s, _, stored = run_with_refusals(
        tmp_path, f'pipelining = "{pipelining}"\nchunking = "on"\nchunk_size = "1KiB"\n', 200, 11
    )
    c = s["counts"]
    assert {m.via for m in stored} == {"BDAT"} and "DATA" not in s["replies"]
    finals = s["replies"]["BDAT_LAST"]  # 503 once for a message none of whose recipients was accepted
    assert sum(n for code, n in finals.items() if code != "503") == c["recipients_delivered"] + c["recipients_failed"]


def test_data_end_waits_for_the_last_recipient(tmp_path: Path) -> None:
    """With the sink's reply to the data delayed 100 ms, every recipient's reply follows it: data_end >= 100 ms."""
    with SinkThread(lmtp=True, store_messages=False, delays={"data_end": 0.100}) as srv:
        s = run(tmp_path, srv.port, LMTP + "[workload]\nsessions = 2\nmessages = 8\n[message]\nrecipients = 3\n")
    c = s["counts"]
    assert c["recipients_delivered"] == 24 and c.get("recipients_failed", 0) == 0 and "messages_partial" not in c
    assert s["phases"]["data_end"]["count"] == 8 and s["phases"]["data_end"]["min_us"] >= 100_000


def test_sink_lmtp_flag_through_the_cli(tmp_path: Path) -> None:
    """``smtpbench sink --lmtp`` (a process of its own): its stats equal the run's per-recipient counts."""
    sink = EmbeddedSink(["--lmtp", "--reject-data-perm", "0.3", "--seed", "5"])
    with sink as (_host, port):
        s = run(tmp_path, port, LMTP + "[workload]\nsessions = 2\nmessages = 60\n[message]\nrecipients = 2\n")
    stats = sink.stats  # printed by the sink process when it stopped
    assert stats is not None and sink.returncode == 0
    c = s["counts"]
    assert c["recipients_delivered"] + c["recipients_failed"] == 120
    assert c["recipients_delivered"] == stats["recipients_delivered"] > 0
    assert c["recipients_failed"] == stats["recipients_failed"] > 0
    assert c["messages_accepted"] == stats["messages_accepted"]


def test_embedded_sink_speaks_lmtp_and_the_summary_line_says_so(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "[target]\nembedded = true\n" + LMTP + "[workload]\nsessions = 2\nmessages = 30\n[message]\nrecipients = 3\n",
    )
    outcome = execute(load_profile(path, (), results_dir=str(tmp_path / "results")), quiet=True)
    s = json.loads((Path(outcome.results_path) / "summary.json").read_text())
    c = s["counts"]
    assert c["messages_accepted"] == 30 and c["recipients_delivered"] == 90
    assert s["replies"]["DATA_END"] == {"250": 90} and s["replies"]["LHLO"] == {"250": c["sessions_started"]}
    buf = io.StringIO()
    print_summary(s, outcome.results_path, Console(file=buf, width=200))
    assert "LMTP: 90 recipients delivered, 0 failed after the data (0 messages only partly delivered)" in buf.getvalue()


def test_lmtp_client_against_an_smtp_server_fails_its_sessions_at_lhlo(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        s = run(tmp_path, srv.port, LMTP + '[workload]\nsessions = 1\nmessages = 2\nduration = "1s"\n')
    assert s["status"] == "failed" and s["counts"]["sessions_failed"] == s["counts"]["sessions_started"] >= 1
    assert s["replies"]["LHLO"] == {"500": s["counts"]["sessions_started"]}
    assert "MAIL" not in s["replies"]


def test_lmtp_over_starttls_says_lhlo_again(tmp_path: Path) -> None:
    """RFC 3207 4.2 holds for LMTP too: after the handshake the session restarts with a second LHLO."""
    pair = tls_pair(tmp_path)
    with SinkThread(lmtp=True, ssl_context=pair.server_context, store_messages=True) as srv:
        s = run(
            tmp_path,
            srv.port,
            LMTP + f'tls = "starttls"\nca_file = "{pair.ca_file}"\n'
            "[workload]\nsessions = 2\nmessages = 10\nmessages_per_session = 5\n[message]\nrecipients = 2\n",
        )
        stored = list(srv.messages)
    c = s["counts"]
    assert s["status"] == "completed" and c["errors"] == 0 and c["recipients_delivered"] == 20
    assert s["replies"]["LHLO"] == {"250": 2 * c["sessions_started"]}
    assert s["replies"]["STARTTLS"] == {"220": c["sessions_started"]}
    assert all(m.tls and b" with LMTPS id " in m.content.split(b"\r\n\r\n", 1)[0] for m in stored)


def test_a_recipient_refused_at_rcpt_does_not_make_a_message_partial(tmp_path: Path) -> None:
    """``messages_partial`` is about the replies after the data (README, LMTP): RCPT refusals are ``recipients_rejected``."""
    with SinkThread(lmtp=True, reject_rcpt_perm=0.4, seed=5, store_messages=False) as srv:
        s = run(tmp_path, srv.port, LMTP + "[workload]\nsessions = 2\nmessages = 60\n[message]\nrecipients = 3\n")
    c = s["counts"]
    # Some accepted messages lost a recipient at RCPT (3 per message, fewer delivered), none after the data.
    assert c["messages_accepted"] > 0 and c["recipients_rejected"] > 0 and c.get("recipients_failed", 0) == 0
    assert c["recipients_delivered"] < 3 * c["messages_accepted"]
    assert c.get("messages_partial", 0) == 0
