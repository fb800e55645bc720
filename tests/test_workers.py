"""``smtpbench run --workers N`` over loopback against our sink: exact split, one lossless result, lost workers, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from smtpbench.errors import EXIT_FAILED, EXIT_RUN_ERROR, EXIT_USAGE
from smtpbench.metrics.hlog import read_hlog
from smtpbench.metrics.recorder import new_histogram
from smtpbench.sink.embedded import EmbeddedSink
from tests.hostile import HostileServer, MiniSMTP
from tests.hostile import write_profile as hostile_profile
from tests.sinkutil import SinkThread
from tests.test_exposition import Scraper, free_port, value
from tests.test_interrupt import finish

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, /proc")

#: A run of a few seconds, with two worker processes starting on a loaded 2-core machine: >= 3x headroom.
PROCESS_TIMEOUT_S = 120.0
#: How long the metrics test's endpoint stays open after its run.
LINGER_S = 5.0
GRACE_S = 1.5

PROFILES = {
    "closed": "[workload]\nsessions = 3\nmessages = 60\nmessages_per_session = 4\nseed = 5\n",
    "open": '[workload]\nmodel = "open"\nrate = 60.0\narrival = "uniform"\nmessages = 30\nseed = 6\n',
}


def write_profile(tmp_path: Path, port: int, workload: str) -> Path:
    profile = tmp_path / "profile.toml"
    body = f'[target]\nhost = "127.0.0.1"\nport = {port}\n[message]\nto = "u{{n}}@example.test"\n'
    profile.write_text(body + '[output]\nprogress = "none"\ninterval = "0.25s"\nreport = false\n' + workload)
    return profile


def smtpbench(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "smtpbench", "run", *args, "--results-dir", str(tmp_path / "results")]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_folder(tmp_path: Path) -> Path:
    """The one run folder under ``tmp_path/results`` (or under ``tmp_path`` itself, for a --results-dir)."""
    results = tmp_path / "results" if (tmp_path / "results").is_dir() else tmp_path
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    return run


def summary_of(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return doc


def numbers(srv: Any) -> list[int]:
    return sorted(int(r.split("@")[0][1:]) for m in srv.messages for r in m.rcpt_to)


def hlog_totals(path: Path) -> dict[str, HdrHistogram]:
    totals: dict[str, HdrHistogram] = {}
    for iv in read_hlog(path)[1]:
        totals.setdefault(iv.tag, new_histogram()).add(iv.histogram)
    return totals


def worker_pids(parent: int) -> list[int]:
    """The worker processes of ``parent`` (the marker: their command line names the worker module)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"smtpbench.load.worker_process" in cmdline:
            pids.append(int(entry.name))
    return pids


def wait_for_traffic(
    tmp_path: Path, proc: subprocess.Popen[str], workers: int, count: str = "messages_accepted"
) -> list[int]:
    """Wait (bounded) until every worker has flushed an interval with ``count`` in it; their pids."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.communicate()[1][-2000:]}")
        logs = list((tmp_path / "results").glob("*/workers/*/timeline.jsonl"))
        busy = [p for p in logs if f'"{count}"' in p.read_text()]
        if len(busy) == workers:
            pids = worker_pids(proc.pid)
            assert len(pids) == workers
            return pids
        time.sleep(0.1)
    proc.kill()
    pytest.fail("workers sent nothing within 60 s")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", ["closed", "open"])
def test_two_workers_one_lossless_result_equal_to_the_sink(tmp_path: Path, model: str) -> None:
    total = 60 if model == "closed" else 30
    with SinkThread(store_messages=True) as srv:
        profile = write_profile(tmp_path, srv.port, PROFILES[model])
        code, err, _ = finish(smtpbench(tmp_path, str(profile), "--workers", "2", "-q"), PROCESS_TIMEOUT_S)
        sink_accepted, sink_sessions = srv.stats.messages_accepted, srv.stats.sessions_completed
        seen = numbers(srv)
    assert code == 0, err
    run = run_folder(tmp_path)
    summary = summary_of(run)
    assert summary["status"] == "completed"
    # Every message once, numbered 1..total across both workers, as the sink saw them.
    assert summary["counts"]["messages_accepted"] == sink_accepted == total
    assert summary["transfer"] == {"data": total, "bdat": 0}
    assert summary["counts"]["sessions_completed"] == sink_sessions
    assert seen == list(range(1, total + 1))
    # The load split exactly, seeds derived per worker, one common start.
    workers = summary["workers"]
    assert [w["index"] for w in workers] == [0, 1]
    assert [w["messages_accepted"] for w in workers] == [total // 2, total // 2]
    assert [w["status"] for w in workers] == ["completed", "completed"] and [w["exit_code"] for w in workers] == [0, 0]
    assert len({w["seed"] for w in workers}) == 2 and all(w["pid"] for w in workers)
    parts = [summary_of(run / "workers" / str(i)) for i in range(2)]
    assert [p["shard"] for p in parts] == [{"index": i, "count": 2, "seed": workers[i]["seed"],
                                           "base_seed": summary["seed"]} for i in range(2)]  # fmt: skip
    bases = {read_hlog(run / "workers" / str(i) / "histograms.hlog")[0] for i in range(2)}
    assert len(bases) == 1 and read_hlog(run / "histograms.hlog")[0] in bases
    # Lossless: the merged log holds exactly the values the workers recorded, tag by tag.
    merged = hlog_totals(run / "histograms.hlog")
    per_worker = [hlog_totals(run / "workers" / str(i) / "histograms.hlog") for i in range(2)]
    assert set(merged) == set(per_worker[0]) | set(per_worker[1])
    for tag, h in merged.items():
        expected = new_histogram()
        for totals in per_worker:
            if tag in totals:
                expected.add(totals[tag])
        assert list(h.counts) == list(expected.counts), tag
        assert summary["phases"].get(tag, {"count": h.get_total_count()})["count"] == h.get_total_count()
    assert merged["data_end"].get_total_count() == total
    assert summary["phases"]["transaction"]["count"] == total
    if model == "open":  # coordinated-omission views per worker, merged
        assert merged["corrected.session"].get_total_count() == summary["counts"]["sessions_started"]
    lines = [json.loads(x) for x in (run / "timeline.jsonl").read_text().splitlines()]
    assert sum(x["counts"].get("messages_accepted", 0) for x in lines) == total
    assert [g["index"] for g in summary["generator"]["workers"]] == [0, 1]


def start_timed_run(tmp_path: Path, port: int, duration: str) -> tuple[subprocess.Popen[str], list[int]]:
    """``run --workers 2`` of 2 sessions for ``duration``, once both workers have sent; (process, worker pids)."""
    workload = f'[workload]\nsessions = 2\nduration = "{duration}"\ngrace = "{GRACE_S}s"\n'
    proc = smtpbench(tmp_path, str(write_profile(tmp_path, port, workload)), "--workers", "2", "-q")
    return proc, wait_for_traffic(tmp_path, proc, 2)


@pytest.mark.timeout(300)
def test_a_killed_worker_degrades_the_run_and_keeps_the_rest(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        proc, pids = start_timed_run(tmp_path, srv.port, "6s")
        victim = max(pids)
        os.kill(victim, signal.SIGKILL)
        code, err, _ = finish(proc, PROCESS_TIMEOUT_S)
        sink_accepted = srv.stats.messages_accepted
    assert code == EXIT_RUN_ERROR, err
    assert "Traceback" not in err and "run degraded" in err
    run = run_folder(tmp_path)
    summary = summary_of(run)
    assert summary["status"] == "degraded"
    (lost,) = [w for w in summary["workers"] if w["pid"] == victim]
    (kept,) = [w for w in summary["workers"] if w["pid"] != victim]
    assert lost["status"] == "killed by SIGKILL" and lost["exit_code"] == -signal.SIGKILL
    assert kept["status"] == "completed" and kept["exit_code"] == 0
    assert f"worker {lost['index']} killed by SIGKILL" in summary["status_reason"]
    # Said once: the lost worker's own reason already names it and how it ended.
    assert summary["status_reason"].count("killed by SIGKILL") == 1, summary["status_reason"]
    # The survivor's whole part and the lost one's flushed intervals are in the one result.
    lost_part = summary_of(run / "workers" / str(lost["index"]))
    assert lost_part["status"] == "failed" and lost_part["counts"]["messages_accepted"] > 0
    kept_part = summary_of(run / "workers" / str(kept["index"]))
    accepted = summary["counts"]["messages_accepted"]
    assert accepted == kept_part["counts"]["messages_accepted"] + lost_part["counts"]["messages_accepted"]
    assert kept["messages_accepted"] == kept_part["counts"]["messages_accepted"] > 0
    assert accepted <= sink_accepted  # the killed worker's last, unflushed interval is lost, never invented
    assert hlog_totals(run / "histograms.hlog")["data_end"].get_total_count() == accepted


@pytest.mark.timeout(300)
def test_sigint_to_the_parent_stops_every_worker_with_the_grace(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        proc, pids = start_timed_run(tmp_path, srv.port, "60s")
        proc.send_signal(signal.SIGINT)
        code, err, waited = finish(proc, within=30)
    assert waited < 20, f"took {waited:.1f}s to stop"
    assert code == EXIT_RUN_ERROR, err
    assert "Traceback" not in err and "interrupted" in err
    for pid in pids:  # every worker is gone (reaped by the parent)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    summary = summary_of(run_folder(tmp_path))
    assert summary["status"] == "interrupted"
    assert [w["status"] for w in summary["workers"]] == ["interrupted", "interrupted"]
    assert summary["elapsed_s"] < 30
    assert summary["counts"]["messages_accepted"] == sum(w["messages_accepted"] for w in summary["workers"]) > 0


@pytest.mark.parametrize("value", ["0", "abc", "1025", "-1", ""])
def test_bad_worker_counts_are_one_line_errors(tmp_path: Path, value: str) -> None:
    profile = write_profile(tmp_path, 25, PROFILES["closed"])
    proc = subprocess.run([sys.executable, "-m", "smtpbench", "run", str(profile), "--workers", value],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--workers" in lines[0] and '"auto"' in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()


def test_trace_with_workers_is_refused(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, 25, PROFILES["closed"] + "workers = 2\n")
    proc = subprocess.run([sys.executable, "-m", "smtpbench", "run", str(profile), "--trace", "3"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--trace is not supported with several workers" in proc.stderr


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not Path("/usr/sbin/smtp-sink").exists() or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2,
    reason="needs Postfix smtp-sink, taskset and 2 CPUs",
)
def test_scale_script_runs_with_small_counts(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    env = {**os.environ, "PYTHON": sys.executable, "SINK_CPUS": "1", "WORKERS": "1 2", "ROUNDS": "1",
           "MESSAGES": "200", "SESSIONS": "2", "OUT": str(out)}  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(["bash", str(root / "benchmarks" / "scale.sh")], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert sorted(doc["medians"]) == ["1", "2"] and doc["medians"]["1"]["speedup"] == 1.0
    assert [s["messages"] for s in doc["samples"]] == [200, 400]
    assert "efficiency" in proc.stdout and "load average" in proc.stdout


@pytest.mark.timeout(300)
def test_a_second_sigint_cancels_every_worker_at_once(tmp_path: Path) -> None:
    # The server never answers the final dot: every session is in flight when the signals come.
    with HostileServer(MiniSMTP(data_fault="stall")) as srv:
        profile = hostile_profile(str(tmp_path), srv.target, duration="60s", grace="30s", timeout="60s", sessions=4)
        proc = smtpbench(tmp_path, profile, "--workers", "2", "-q")
        wait_for_traffic(tmp_path, proc, 2, "sessions_started")
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None, "a first SIGINT gives the sessions their grace"
        proc.send_signal(signal.SIGINT)
        code, err, waited = finish(proc, within=60)
    assert waited < 20, f"took {waited:.1f}s after the second SIGINT"
    assert code == EXIT_RUN_ERROR and "Traceback" not in err
    summary = summary_of(run_folder(tmp_path))
    assert summary["status"] == "interrupted"
    assert [w["status"] for w in summary["workers"]] == ["interrupted", "interrupted"]
    assert summary["counts"]["messages_accepted"] == 0
    # Cut off awaiting the final reply in both workers, every session accounted for.
    assert sum(summary["unfinished"].values()) == summary["counts"]["sessions_unfinished"] == 4
    assert summary["unfinished"].get("data_end", 0) > 0, summary["unfinished"]


@pytest.mark.timeout(300)
def test_a_threshold_on_the_merged_figures_stops_every_worker(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        workload = f'[workload]\nsessions = 2\nduration = "60s"\ngrace = "{GRACE_S}s"\n'
        # Each worker alone would pass it for a while longer: judged on the sum of both.
        threshold = '[thresholds]\n"counts.messages_accepted" = { condition = "< 40", abort_on_fail = true }\n'
        profile = write_profile(tmp_path, srv.port, workload + threshold)
        code, err, _ = finish(smtpbench(tmp_path, str(profile), "--workers", "2", "-q"), PROCESS_TIMEOUT_S)
    assert code == EXIT_FAILED, err
    summary = summary_of(run_folder(tmp_path))
    assert summary["status"] == "aborted_by_threshold" and summary["elapsed_s"] < 30
    assert summary["status_reason"].startswith("threshold counts.messages_accepted < 40 failed at")
    assert [w["status"] for w in summary["workers"]] == ["interrupted", "interrupted"]
    assert summary["thresholds"][0]["ok"] is False
    assert summary["thresholds"][0]["value"] == summary["counts"]["messages_accepted"] >= 40


@pytest.mark.timeout(300)
def test_shards_of_workers_merge_into_one_run(tmp_path: Path) -> None:
    total = 60
    with SinkThread(store_messages=True) as srv:
        profile = write_profile(tmp_path, srv.port, PROFILES["closed"].replace("sessions = 3", "sessions = 4"))
        start_at = f"{time.time() + 20:.3f}"  # both shards' four worker processes start within it (>= 3x)
        procs = [
            subprocess.Popen([sys.executable, "-m", "smtpbench", "run", str(profile), "-q", "--workers", "2",
                              "--shard", f"{i}/2", "--start-at", start_at, "--results-dir", str(tmp_path / f"s{i}")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]  # fmt: skip
        for proc in procs:
            code, err, _ = finish(proc, PROCESS_TIMEOUT_S)
            assert code == 0, err
        merge = [sys.executable, "-m", "smtpbench", "merge", str(tmp_path / "s0"), str(tmp_path / "s1")]
        merged = subprocess.run([*merge, "-o", str(tmp_path / "m"), "-q"], capture_output=True, text=True, timeout=60)
        seen = numbers(srv)
    assert merged.returncode == 0, merged.stderr
    summary = summary_of(tmp_path / "m")
    assert summary["status"] == "completed" and summary["counts"]["messages_accepted"] == total
    assert seen == list(range(1, total + 1))  # {n} unique across 2 shards x 2 workers
    shards = [summary_of(run_folder(tmp_path / f"s{i}")) for i in (0, 1)]
    assert [s["shard"]["index"] for s in shards] == [0, 1]
    parts = [w["part"] for s in shards for w in s["workers"]]
    assert parts == [{"index": i, "count": 4} for i in (0, 1, 2, 3)]
    assert [w["messages_accepted"] for s in shards for w in s["workers"]] == [total // 4] * 4


@pytest.mark.timeout(300)
def test_metrics_port_serves_the_merged_figures_of_every_worker(tmp_path: Path) -> None:
    port = free_port()
    scraper = Scraper(port)
    # The sink in its own process: in this one it would compete with the scraper thread for the GIL, and a
    # starved scraper misses the run's second half (seen once on a loaded machine).
    with EmbeddedSink(["--proxy-protocol"]) as (_, sink_port):
        profile = write_profile(tmp_path, sink_port, '[workload]\nsessions = 2\nduration = "4s"\n')
        proxied = 'proxy_protocol = "v1"\nproxy_sources = "198.51.100.0/29"\n[message]'
        # The final figures stay served LINGER_S after the run: the scraper (every 0.2 s) sees them however late
        # the parent's last update comes on a loaded machine.
        lingering = f'[output]\nmetrics_linger = "{LINGER_S:g}s"\n'
        profile.write_text(profile.read_text().replace("[message]", proxied, 1).replace("[output]\n", lingering, 1))
        proc = smtpbench(tmp_path, str(profile), "--workers", "2", "-q", "--metrics-port", str(port))
        scraper.start()
        code, err, _ = finish(proc, PROCESS_TIMEOUT_S)
        scraper.stop.set()
        scraper.join(10)
    assert code == 0, err
    summary = summary_of(run_folder(tmp_path))
    accepted = [value(s, "smtpbench_messages_total", result="accepted") for s in scraper.scrapes if s]
    mid_run = [a for a in accepted if 0 < a < summary["counts"]["messages_accepted"]]
    assert mid_run, accepted  # scraped while both workers were sending
    # Every worker's messages are in the exposition: the last scrape (in the linger) holds the merged totals.
    last = [s for s in scraper.scrapes if s][-1]
    assert accepted == sorted(accepted) and accepted[-1] == summary["counts"]["messages_accepted"]
    assert accepted[-1] > max(w["messages_accepted"] for w in summary["workers"])
    assert value(last, "smtpbench_sessions_started_total") == summary["counts"]["sessions_started"]
    # PROXY sessions announced reach the parent through the workers' timelines: rising, ending at the total.
    announced = [value(s, "smtpbench_proxy_sessions_announced_total") for s in scraper.scrapes if s]
    assert announced == sorted(announced) and announced[-1] == summary["proxy"]["sessions_announced"] > 0
