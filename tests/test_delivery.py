"""End-to-end delivery tracking without a real MTA: the run's own delivery sink, an external sink
reporting with --report-to, Maildir and mbox ends written by a real (aiosmtpd) server, the report
protocol over a real socket, and the tracker's accounting."""

from __future__ import annotations

import json
import mailbox
import re
import signal
import socket
import subprocess
import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import trio

from smtpbench.delivery import wire
from smtpbench.delivery.ids import MessageIds, find_id
from smtpbench.delivery.listener import ReportListener, bind
from smtpbench.delivery.tracker import Tracker
from smtpbench.metrics.recorder import Recorder
from smtpbench.sink.embedded import EmbeddedSink
from tests.hostile import cli_argv
from tests.peers import aiosmtpd_server, free_port
from tests.test_engine import read_hlog, run

ID_LINE = re.compile(r"^(lost|duplicated) (\S+)", re.M)


def problems(s: dict[str, Any]) -> list[tuple[str, str]]:
    return ID_LINE.findall((Path(s["_dir"]) / "delivery-problems.txt").read_text())


def run_own_sink(tmp_path: Path, body: str, wait: str, sink_knobs: str) -> dict[str, Any]:
    """Run ``body`` against the delivery sink the run itself starts (the sink is the server under test)."""
    port = free_port()
    delivery = f'[delivery]\nlisten = "127.0.0.1:{port}"\nwait = {wait}\n[delivery.sink]\n{sink_knobs}\n'
    return run(tmp_path, port, body + delivery)


def test_sink_alone_blackhole_lost_equals_what_the_sink_dropped(tmp_path: Path) -> None:
    """The run's own delivery sink is the server: 1 % blackholed -> lost is exactly the sink's count."""
    s = run_own_sink(
        tmp_path,
        "[workload]\nsessions = 4\nmessages = 3000\nmessages_per_session = 25\nseed = 11\n"
        '[message]\nsize = "2KiB"\nrecipients = {min = 1, max = 3}\n',
        '"3s"',
        'blackhole = "1%"',
    )
    d = s["delivery"]
    dropped = d["sink"]["messages_blackholed"]
    assert s["counts"]["messages_accepted"] == 3000 == d["accepted"] == d["sink"]["messages_accepted"]
    assert 10 <= dropped <= 60  # ~1 % of 3000
    assert d["lost"] == dropped
    assert d["delivered"] == 3000 - dropped == d["reports"]["received"] == d["sink"]["reports_sent"]
    assert d["duplicated"] == d["unexpected"] == d["rejected_but_delivered"] == 0
    assert d["reports"]["dropped_by_sinks"] == 0
    assert d["outstanding_after_wait"] == dropped
    listed = problems(s)
    assert len(listed) == dropped and {kind for kind, _ in listed} == {"lost"}
    assert all(ident.startswith(s["run_id"] + ".0.") for _, ident in listed)
    # The server itself reports the arrival before its 250: delivery latency 0, end_to_end > 0.
    assert s["phases"]["delivery"]["count"] == 3000 - dropped
    assert s["phases"]["end_to_end"]["count"] == 3000 - dropped
    assert s["phases"]["end_to_end"]["p50_us"] > 0
    hlog = read_hlog(Path(s["_dir"]) / "histograms.hlog")
    assert hlog["delivery"] == hlog["end_to_end"] == 3000 - dropped
    assert (Path(s["_dir"]) / "delivery.hgrm").is_file() and (Path(s["_dir"]) / "end_to_end.hgrm").is_file()


def test_throughput_is_over_the_load_not_the_delivery_wait(tmp_path: Path) -> None:
    """Blackholed messages keep the run in its delivery wait (2 s) after a 1 s load: elapsed_s includes the wait,
    throughput does not (it was divided by elapsed_s, a third of the rate the server took)."""
    s = run_own_sink(
        tmp_path,
        '[workload]\nmodel = "open"\nrate = 100\nduration = "1s"\ngrace = "1s"\nseed = 5\n',
        '"2s"',
        'blackhole = "20%"',
    )
    d, counts, load_s, elapsed_s = s["delivery"], s["counts"], s["load_s"], s["elapsed_s"]
    assert d["lost"] > 0 and d["waited_s"] >= 2.0  # the wait ran its full length
    # The load is its 1 s and at most the 1 s grace; the run also spans the wait (and its own start and end,
    # 0.27 s once on a loaded machine: elapsed_s - waited_s is no measure of the load).
    assert 1.0 <= load_s <= 3.0 and elapsed_s >= load_s + d["waited_s"] - 0.01, (load_s, elapsed_s)
    for key, count in (("messages_per_s", "messages_accepted"), ("sessions_per_s", "sessions_completed")):
        assert s["throughput"][key] == pytest.approx(counts[count] / load_s, rel=0.01), s["throughput"]
        assert s["throughput"][key] >= 1.5 * counts[count] / elapsed_s  # not over the wait: >= (3 + 2) / 3 x


def test_ctrl_c_ends_the_delivery_wait(tmp_path: Path) -> None:
    """Every message blackholed, a 2-minute wait: a SIGINT once the load is over ends the wait at once; the run
    is ``interrupted`` (exit 3) with its delivery counts written."""
    port = free_port()
    (tmp_path / "p.toml").write_text(
        f'[target]\nhost = "127.0.0.1"\nport = {port}\n'
        '[workload]\nsessions = 2\nmessages = 20\nmessages_per_session = 5\n[output]\ninterval = "0.25s"\n'
        f'[delivery]\nlisten = "127.0.0.1:{port}"\nwait = "2m"\n[delivery.sink]\nblackhole = 1.0\n'
    )
    argv = [*cli_argv(), "run", str(tmp_path / "p.toml"), "--results-dir", str(tmp_path / "r"), "--quiet"]
    proc = subprocess.Popen([*argv, "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the load is over once the timeline shows all 20 accepted
            lines = [json.loads(x) for t in (tmp_path / "r").glob("*/timeline.jsonl") for x in t.read_text().split()]
            if sum(x["counts"].get("messages_accepted", 0) for x in lines) == 20:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # past the end of the load's nursery into the wait
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - asked < 20 and proc.returncode == 3, err
    (folder,) = (tmp_path / "r").iterdir()
    s = json.loads((folder / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["delivery"]["lost"] == 20 and s["delivery"]["accepted"] == 20
    assert 0 < s["delivery"]["waited_s"] < 20


def test_every_file_of_a_delivery_run_is_in_the_readme_table(tmp_path: Path) -> None:
    """README "Results format" lists each file a run writes; delivery-problems.txt was missing from it."""
    s = run_own_sink(tmp_path, "[workload]\nsessions = 2\nmessages = 20\n", '"5s"', 'blackhole = "50%"')
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Results format", 1)[1].split("### `summary.json`", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)`", table, re.M))
    written = {p.name if p.is_file() else p.name + "/" for p in Path(s["_dir"]).iterdir()}
    written = {"<phase>.hgrm" if name.endswith(".hgrm") else name for name in written}
    assert "delivery-problems.txt" in written and s["delivery"]["lost"] > 0
    assert written <= listed, written - listed


def test_external_sink_reports_to_the_run(tmp_path: Path) -> None:
    """A sink started on its own (as on the next hop's machine) with --report-to; started before the run listens."""
    report_port = free_port()
    with EmbeddedSink(["--report-to", f"127.0.0.1:{report_port}", "--delay-data-end", "5ms"]) as (_, sink_port):
        s = run(
            tmp_path,
            sink_port,
            "[workload]\nsessions = 3\nmessages = 600\nmessages_per_session = 10\n"
            f'[delivery]\nreport_listen = "127.0.0.1:{report_port}"\nwait = "30s"\n',
        )
    d = s["delivery"]
    assert d["accepted"] == d["delivered"] == 600
    assert d["lost"] == d["duplicated"] == d["unexpected"] == 0
    assert d["outstanding_after_wait"] == 0 and d["waited_s"] < 30
    assert d["reports"]["sinks"] == 1 and d["reports"]["received"] == 600
    assert "sink" not in d  # not the run's own sink: its stats are the sink's
    assert s["phases"]["delivery"]["count"] == 600
    # end_to_end covers the session up to the message's acceptance: at least the sink's 5 ms delay.
    assert s["phases"]["end_to_end"]["min_us"] >= 5_000
    assert problems(s) == []


def test_multi_process_sink_reports_every_message_once(tmp_path: Path) -> None:
    """``sink --workers 2 --report-to``: each worker reports what it accepted, under its own token; none twice."""
    report_port = free_port()
    sink = EmbeddedSink(["--workers", "2", "--report-to", f"127.0.0.1:{report_port}", "--delay-data-end", "2ms"])
    with sink as (_, sink_port):
        s = run(
            tmp_path,
            sink_port,
            "[workload]\nsessions = 4\nmessages = 800\nmessages_per_session = 5\n"
            f'[delivery]\nreport_listen = "127.0.0.1:{report_port}"\nwait = "20s"\n',
        )
    stats = sink.stats  # the parent's merged stats, printed when it stopped
    assert stats is not None and sink.returncode == 0
    d = s["delivery"]
    assert s["counts"]["messages_accepted"] == d["accepted"] == d["delivered"] == 800
    assert d["lost"] == d["duplicated"] == d["unexpected"] == d["rejected_but_delivered"] == 0
    assert d["outstanding_after_wait"] == 0 and d["waited_s"] < 20
    # Both workers served sessions and reported (160 sessions spread by SO_REUSEPORT: both get some).
    assert [w["status"] for w in stats["workers"]] == ["stopped", "stopped"]
    assert all(w["messages_accepted"] > 0 for w in stats["workers"]), stats["workers"]
    assert d["reports"]["sinks"] == 2 and d["reports"]["received"] == 800 == stats["reports_sent"]
    assert d["reports"]["dropped_by_sinks"] == 0 == stats["reports_dropped"]
    assert problems(s) == []


class MailboxHandler:
    """aiosmtpd handler delivering each message locally, as an MTA's local delivery agent would."""

    def __init__(self, box: mailbox.Mailbox[Any], copies: int = 1) -> None:
        self.box = box
        self.copies = copies
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for _ in range(self.copies):
            self.box.add(message_from_bytes(envelope.content))
        self.box.flush()
        self.accepted += 1
        return "250 2.0.0 OK"


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_folder_ends_count_each_message(tmp_path: Path, kind: str) -> None:
    """A server delivering into a Maildir / an mbox: every message found once; one stale message is ignored."""
    path = tmp_path / kind
    box: mailbox.Mailbox[Any] = mailbox.Maildir(path) if kind == "maildir" else mailbox.mbox(path)
    box.add(b"From: old@example.test\r\nX-Smtpbench-Id: 20200101-000000-0000.0.1\r\n\r\nbefore the run\r\n")
    box.flush()
    handler = MailboxHandler(box)
    with aiosmtpd_server(handler) as (ctl, _):
        s = run(
            tmp_path,
            ctl.port,
            "[workload]\nsessions = 2\nmessages = 120\nmessages_per_session = 6\n"
            f'[delivery]\n{kind} = "{path}"\nwait = "30s"\n',
        )
    d = s["delivery"]
    assert handler.accepted == 120
    assert d["accepted"] == d["delivered"] == 120
    assert d["lost"] == d["duplicated"] == d["unexpected"] == 0
    assert s["phases"]["delivery"]["count"] == 120


def test_duplicated_copies_are_listed(tmp_path: Path) -> None:
    """A server that delivers every message twice (one recipient each): all duplicated, listed by id."""
    path = tmp_path / "maildir"
    handler = MailboxHandler(mailbox.Maildir(path), copies=2)
    with aiosmtpd_server(handler) as (ctl, _):
        s = run(
            tmp_path,
            ctl.port,
            f'[workload]\nsessions = 1\nmessages = 20\n[delivery]\nmaildir = "{path}"\nwait = "30s"\n',
        )
    d = s["delivery"]
    assert d["delivered"] == d["duplicated"] == 20 and d["lost"] == 0
    assert sorted(ident for kind, ident in problems(s) if kind == "duplicated") == sorted(
        f"{s['run_id']}.0.{n}" for n in range(1, 21)
    )


class RefusingThirdRecipient(MailboxHandler):
    """Refuses each message's third recipient at RCPT, then delivers a copy per accepted recipient plus one more."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if ".2@" in address:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for _ in range(len(envelope.rcpt_tos) + 1):
            self.box.add(message_from_bytes(envelope.content))
        self.box.flush()
        self.accepted += 1
        return "250 2.0.0 OK"


def test_duplicate_counts_against_accepted_recipients(tmp_path: Path) -> None:
    """3 RCPTs, the third refused, 3 copies delivered: one more than the 2 accepted recipients, so duplicated
    (it was compared with the 3 RCPTs sent, and no message was found duplicated)."""
    path = tmp_path / "maildir"
    handler = RefusingThirdRecipient(mailbox.Maildir(path))
    with aiosmtpd_server(handler) as (ctl, _):
        s = run(
            tmp_path,
            ctl.port,
            "[workload]\nsessions = 2\nmessages = 30\nmessages_per_session = 5\n"
            '[message]\nrecipients = 3\nto = "u{n}.{rcpt}@relay.test"\n'
            f'[delivery]\nmaildir = "{path}"\nwait = "30s"\n',
        )
    d = s["delivery"]
    assert handler.accepted == 30 and s["counts"]["recipients_rejected"] == 30
    assert d["accepted"] == d["delivered"] == 30
    assert d["duplicated"] == 30 and d["lost"] == d["unexpected"] == 0
    dups = re.findall(r"^duplicated \S+ (\d+)/(\d+)$", (Path(s["_dir"]) / "delivery-problems.txt").read_text(), re.M)
    assert dups == [("3", "2")] * 30


def test_every_message_carries_its_id(tmp_path: Path) -> None:
    """X-Smtpbench-Id and Message-ID carry <run-id>.0.<n>, unique per message; no delivery section needed."""
    seen: list[bytes] = []

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen.append(envelope.content)
            return "250 OK"

    with aiosmtpd_server(Keep()) as (ctl, _):
        s = run(tmp_path, ctl.port, "[workload]\nsessions = 2\nmessages = 30\nmessages_per_session = 5\n")
    ids = [find_id(content) for content in seen]
    assert sorted(ids, key=lambda i: int(str(i).rsplit(".", 1)[1])) == [f"{s['run_id']}.0.{n}" for n in range(1, 31)]
    for content in seen:
        msg = message_from_bytes(content)
        assert msg.get_all("Message-ID") == [f"<{msg['X-Smtpbench-Id']}@smtpbench.example>"]
    assert "delivery" not in s


def test_paused_sink_holds_replies(tmp_path: Path) -> None:
    """A scheduled pause of the delivery sink: replies stop for the pause, nothing is lost."""
    s = run_own_sink(
        tmp_path,
        '[workload]\nsessions = 2\nduration = "3s"\nthink_time = "20ms"\n',
        '"20s"',
        'pause_at = "1s"\npause_for = "1s"',
    )
    d = s["delivery"]
    assert d["sink"]["pauses"] == 1 and 900 <= d["sink"]["paused_ms"] <= 1500
    assert d["lost"] == 0 and d["delivered"] == d["accepted"] > 20
    assert s["phases"]["session"]["max_us"] >= 800_000  # some session waited out the pause


def ungreeted(port: int) -> socket.socket:
    """A connection the sink does not greet within 0.5 s: proof that a SIGUSR1 sent just before was handled."""
    deadline = time.monotonic() + 20
    while True:
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.settimeout(0.5)
        try:
            held.recv(100)
        except TimeoutError:
            return held
        held.close()
        assert time.monotonic() < deadline, "SIGUSR1 did not pause the sink"


def test_sink_pause_and_resume_by_signal() -> None:
    """SIGUSR1 pauses a running sink (a new connection gets no greeting), SIGUSR2 resumes it (the greeting comes)."""
    sink = EmbeddedSink()
    with sink as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            assert conn.recv(100).startswith(b"220")
        sink.send_signal(signal.SIGUSR1)
        with ungreeted(port) as held:
            sink.send_signal(signal.SIGUSR2)
            held.settimeout(10)
            assert held.recv(100).startswith(b"220")
    assert sink.stats is not None and sink.stats["pauses"] == 1


def test_sigusr1_pause_lasts_pause_for() -> None:
    """``--pause-for`` alone (no --pause-at) is the length of a SIGUSR1 pause: it ends with no SIGUSR2."""
    sink = EmbeddedSink(["--pause-for", "2s"])
    with sink as (_, port):
        sent = time.monotonic()
        sink.send_signal(signal.SIGUSR1)
        with ungreeted(port) as held:
            held.settimeout(20)
            assert held.recv(100).startswith(b"220")  # the pause ended by itself
        time.sleep(max(0.0, sent + 4 - time.monotonic()))  # a slow greeting above cannot cut the pause short
    assert sink.stats is not None and sink.stats["pauses"] == 1
    assert 1_800 <= sink.stats["paused_ms"] <= 10_000, sink.stats["paused_ms"]


# --------------------------------------------------------------- the report protocol and the tracker


def test_report_listener_dedups_resent_records_and_rejects_garbage() -> None:
    ids = MessageIds("20261202-000000-abcd")
    tracker = Tracker(ids, Recorder(time.time()))
    for n in (1, 2, 3):
        tracker.sent(n, 1, time.perf_counter())
        tracker.replied(n, True, time.perf_counter())
    listener = ReportListener(bind("127.0.0.1", 0), tracker)
    now = time.time()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.serve)
            port = listener.sock.getsockname()[1]
            first = await trio.open_tcp_stream("127.0.0.1", port)
            await first.send_all(
                wire.hello("aa") + wire.arrival(1, now, 1, ids.id_of(1)) + wire.arrival(2, now, 1, None)
            )
            await first.aclose()
            # Reconnected: seq 2 is sent again, then new ones; a second sink reports message 3.
            again = await trio.open_tcp_stream("127.0.0.1", port)
            await again.send_all(
                wire.hello("aa")
                + wire.arrival(2, now, 1, None)
                + wire.arrival(3, now, 1, ids.id_of(2))
                + wire.dropped(4)
            )
            other = await trio.open_tcp_stream("127.0.0.1", port)
            await other.send_all(wire.hello("bb") + wire.arrival(1, now, 1, ids.id_of(3)))
            bad = await trio.open_tcp_stream("127.0.0.1", port)
            await bad.send_all(b"A 1 2 3 x\n")  # no hello first
            with trio.fail_after(10):
                while listener.reports < 4 or listener.bad_connections < 1:
                    await trio.sleep(0.01)
            for stream in (again, other, bad):
                await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert listener.reports == 4 and listener.resent == 1 and listener.sinks == 2
    assert listener.dropped == 4 and listener.bad_connections == 1
    summary = tracker.summary()
    assert summary["delivered"] == 3 and summary["unexpected"] == 1 and summary["lost"] == 0


def test_tracker_accounting() -> None:
    """Each kind of outcome lands in its own count; delivery latency runs from the 250."""
    ids = MessageIds("r1")
    rec = Recorder(time.time())
    t = Tracker(ids, rec)
    base = time.perf_counter()
    t.sent(1, 1, base)  # delivered once
    t.replied(1, True, base + 0.010)
    t.sent(2, 2, base)  # two recipients, each copy once: not a duplicate
    t.replied(2, True, base + 0.010)
    t.sent(3, 1, base)  # lost
    t.replied(3, True, base + 0.010)
    t.sent(4, 1, base)  # rejected, yet delivered
    t.replied(4, False, base + 0.010)
    t.sent(5, 1, base)  # arrived twice
    t.replied(5, True, base + 0.010)
    t.sent(6, 1, base)  # no reply ever (session cut), arrived anyway
    at = t.offset + base + 0.110
    for ident, copies in (("r1.0.1", 1), ("r1.0.2", 1), ("r1.0.2", 1), ("r1.0.4", 1), ("r1.0.5", 1), ("r1.0.5", 1)):
        t.arrived(ident, at, copies)
    t.arrived("r1.0.6", at)
    t.arrived("r1.0.99", at)  # never sent
    t.arrived("other-run.0.1", at)
    t.arrived(None, at)
    assert t.summary() == {
        "accepted": 4,
        "delivered": 3,
        "lost": 1,
        "duplicated": 1,
        "unexpected": 3,
        "rejected_but_delivered": 1,
        "delivered_unacknowledged": 1,
        "arrived_before_reply": 0,
    }
    assert t.outstanding == 1
    assert t.problems_text().splitlines()[1:] == ["lost r1.0.3", "duplicated r1.0.5 2/1"]
    rec.rotate(time.time())
    assert rec.totals["delivery"].get_total_count() == 3
    assert 99_000 <= rec.totals["delivery"].get_value_at_percentile(50) <= 101_000
    assert 109_000 <= rec.totals["end_to_end"].get_value_at_percentile(50) <= 111_000


def test_reporter_never_blocks_and_counts_drops() -> None:
    """No run listening: reports beyond the buffer are dropped and counted, report() returns at once."""
    from smtpbench.delivery.reporter import Reporter

    port = free_port()

    async def main() -> Reporter:
        reporter = Reporter("127.0.0.1", port, capacity=100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reporter.run)
            start = time.perf_counter()
            for n in range(1000):
                reporter.report(f"x.0.{n}", 1, time.time())
            assert time.perf_counter() - start < 1.0
            assert reporter.pending == 100 and reporter.dropped == 900
            # Now the run listens: the buffered reports and the drop count arrive.
            sock = bind("127.0.0.1", port)
            tracker = Tracker(MessageIds("x"), Recorder(time.time()))
            listener = ReportListener(sock, tracker)
            nursery.start_soon(listener.serve)
            with trio.fail_after(20):
                while listener.reports < 100 or listener.dropped < 900:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        return reporter

    reporter = trio.run(main)
    assert reporter.sent == 100


def test_sink_cli_stats_count_blackholed(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    with EmbeddedSink(["--blackhole", "1", "--seed", "1", "--stats-file", str(stats)]) as (_, port):
        s = run(tmp_path, port, "[workload]\nsessions = 1\nmessages = 5\n")
    assert s["counts"]["messages_accepted"] == 5
    written = json.loads(stats.read_text())
    assert written["messages_blackholed"] == 5 == written["messages_accepted"]


def test_thresholds_compare_and_report_show_delivery(tmp_path: Path) -> None:
    """Thresholds and compare have the delivery phases and counts (--fail-if on lost), the HTML report charts the new phases."""
    from tests.test_compare_report import compare_json, invoke

    body = (
        "[workload]\nsessions = 2\nmessages = 400\nmessages_per_session = 20\nseed = 5\n"
        '[thresholds]\n"delivery.lost" = "== 0"\n"end_to_end.p50" = "< 10s"\n'
    )
    clean = run_own_sink(tmp_path, body, '"2s"', "blackhole = 0")
    lossy = run_own_sink(tmp_path, body, '"2s"', 'blackhole = "10%"')
    assert clean["delivery"]["lost"] == 0 < lossy["delivery"]["lost"]
    # Thresholds gate on delivery counts and phases.
    assert [t["ok"] for t in clean["thresholds"]] == [True, True]
    assert [(t["metric"], t["ok"]) for t in lossy["thresholds"]] == [("delivery.lost", False), ("end_to_end.p50", True)]
    code, doc = compare_json(clean["_dir"], lossy["_dir"], "--fail-if", "delivery.lost > 0")
    assert code == 1
    metrics = {r["metric"]: r for r in doc["rows"]}
    assert metrics["delivery.lost"]["new"][0]["delta"] == lossy["delivery"]["lost"]
    assert {"end_to_end.p99", "delivery.p50", "delivery.duplicated"} <= set(metrics)
    code, _ = compare_json(lossy["_dir"], clean["_dir"], "--fail-if", "delivery.lost > 0")
    assert code == 0
    code, _, err = invoke("report", lossy["_dir"], "-o", str(tmp_path / "report.html"))
    assert code == 0, err
    html = (tmp_path / "report.html").read_text()
    assert "end_to_end" in html and "delivery" in html
