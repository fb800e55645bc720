"""``--metrics-port``: live Prometheus exposition scraped over loopback while a run drives our sink."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR
from smtpbench.metrics.exposition import LiveMetrics
from tests.sinkutil import SinkThread
from tests.test_bad_input import assert_one_line_usage_error, invoke
from tests.test_thresholds import BUDGET, cli_run

#: Every wait here is bounded by this (the run itself lasts ~4 s).
SCRAPE_DEADLINE_S = 60.0
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "smtpbench-dashboard.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Scraper(threading.Thread):
    """Scrapes ``/metrics`` every 0.2 s until stopped; keeps every parsed scrape as {(name, labels): value}."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []
        self.stop = threading.Event()
        self.families: set[str] = set()  # every family announced (some may have no sample yet)

    def run(self) -> None:
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:  # not listening yet (or any more)
                self.stop.wait(0.1)
                continue
            scrape = {}
            for family in text_string_to_metric_families(text):
                self.families.add(family.name)
                for s in family.samples:
                    scrape[(s.name, frozenset(s.labels.items()))] = s.value
            self.scrapes.append(scrape)
            self.stop.wait(0.2)


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


def dashboard_metrics() -> set[str]:
    """Every ``smtpbench_*`` metric name the Grafana dashboard's panel expressions ask for."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dashboard["templating"]["list"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return set(re.findall(r"smtpbench_[a-z0-9_]+", " ".join(exprs)))


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["y"] >= 0 and g["h"] > 0, p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['id']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


def test_scraped_mid_run_counters_rise_and_are_plausible(tmp_path: Path) -> None:
    port = free_port()
    body = (
        '[workload]\nsessions = 2\nduration = "4s"\ngrace = "2s"\n[output]\ninterval = "0.5s"\n'
        '[thresholds]\n"counts.messages_accepted" = ">= 1"\n"transaction.p99" = "< 1us"\n'
    )
    scraper = Scraper(port)
    with SinkThread(store_messages=False, delays={"data_end": 0.010}) as srv:
        scraper.start()
        try:
            code, _out, err, s = cli_run(tmp_path, srv.port, body, "--metrics-port", str(port))
        finally:
            scraper.stop.set()
            scraper.join(SCRAPE_DEADLINE_S)
        accepted_by_sink = srv.stats.messages_accepted
    assert code == EXIT_FAILED, err  # the deliberately impossible transaction.p99 threshold
    assert s["counts"]["messages_accepted"] == accepted_by_sink > 0
    # Before the first interval rotation the endpoint answers with no samples.
    key = ("smtpbench_messages_total", frozenset({("result", "accepted")}))
    live = [sc for sc in scraper.scrapes if sc.get(key, 0) > 0]
    assert len(live) >= 2, len(scraper.scrapes)
    accepted = [value(sc, "smtpbench_messages_total", result="accepted") for sc in live]
    assert accepted == sorted(accepted) and accepted[0] < accepted[-1], accepted  # rising, never falling
    assert accepted[-1] <= s["counts"]["messages_accepted"]
    mid = live[0]  # the first scrape with data: taken during the run
    assert value(mid, "smtpbench_run_stopping") == 0
    assert 0 <= value(mid, "smtpbench_sessions_in_flight") <= 2
    started = value(mid, "smtpbench_sessions_started_total")
    assert 1 <= started <= s["counts"]["sessions_started"]
    assert value(mid, "smtpbench_messages_total", result="rejected") == 0
    assert value(mid, "smtpbench_errors_total", kind="timeout") == 0  # every kind is there, at 0
    assert value(mid, "smtpbench_tls_handshakes_total", handshake="full") == 0  # present, at 0 without TLS
    assert value(mid, "smtpbench_lmtp_recipients_total", result="delivered") == 0  # likewise without LMTP
    assert value(mid, "smtpbench_proxy_sessions_announced_total") == 0  # and without PROXY
    sent = value(mid, "smtpbench_messages_sent_total")
    assert value(mid, "smtpbench_messages_total", result="accepted") <= sent
    # Latency: the histogram counts what the interval histograms held; the sink's 10 ms delay shows.
    n = value(mid, "smtpbench_latency_seconds_count", phase="transaction")
    assert 0 < n == value(mid, "smtpbench_latency_seconds_bucket", phase="transaction", le="+Inf")
    assert value(mid, "smtpbench_latency_seconds_bucket", phase="transaction", le="0.005") == 0
    assert 0.010 <= value(mid, "smtpbench_latency_seconds_sum", phase="transaction") / n < 5
    assert 0.010 <= value(mid, "smtpbench_latency_interval_seconds", phase="transaction", quantile="0.99") < 5
    buckets = [v for (name, _), v in mid.items() if name == "smtpbench_latency_seconds_bucket"]
    assert buckets and all(v >= 0 for v in buckets)
    assert value(mid, "smtpbench_generator_loop_lag_seconds_count") > 0
    cpu = value(live[-1], "smtpbench_generator_cpu_ratio")
    assert not math.isnan(cpu) and 0 <= cpu <= 1.5
    th = {"metric": "counts.messages_accepted", "condition": ">= 1", "abort_on_fail": "false"}
    assert value(mid, "smtpbench_threshold_ok", **th) == 1
    assert value(mid, "smtpbench_threshold_value", **th) > 0
    th = {"metric": "transaction.p99", "condition": "< 1us", "abort_on_fail": "false"}
    assert value(mid, "smtpbench_threshold_ok", **th) == 0
    assert value(mid, "smtpbench_threshold_value", **th) >= 0.010  # seconds, not µs
    # The Grafana dashboard asks only for series the endpoint serves.
    served = {name for sc in live for (name, _) in sc} | scraper.families
    asked = dashboard_metrics()
    assert asked and asked <= served, asked - served
    # Stopped with the run: the port is closed again.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_last_scrape_of_an_lmtp_proxy_run_equals_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LMTP per-recipient and PROXY counters, scraped after the final update, are summary.json's figures."""
    port = free_port()
    last: list[str] = []
    close = LiveMetrics.__exit__

    def scrape_then_close(self: LiveMetrics, *exc: object) -> None:
        # The run's final update is in; the port closes right after, so scrape here (same endpoint, over loopback).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_DEADLINE_S) as resp:
            last.append(resp.read().decode())
        close(self, *exc)

    monkeypatch.setattr(LiveMetrics, "__exit__", scrape_then_close)
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[target]\nembedded = true\nprotocol = "lmtp"\nproxy_protocol = "v2"\nproxy_sources = "198.51.100.0/29"\n'
        "[target.sink]\nreject_data_perm = 0.2\n"  # per recipient after the data: some failed, some partial
        "[workload]\nsessions = 2\nmessages = 40\nmessages_per_session = 5\nseed = 7\n[message]\nrecipients = 3\n"
        '[output]\ninterval = "0.5s"\n'
    )
    results = tmp_path / "results"
    args = ["run", str(profile), "--results-dir", str(results), "--progress", "none", "--metrics-port", str(port)]
    code, _out, err = invoke(args)
    assert code == EXIT_OK, err
    (run,) = results.iterdir()
    s = json.loads((run / "summary.json").read_text())
    c = s["counts"]
    assert len(last) == 1
    families = {f.name: f for f in text_string_to_metric_families(last[0])}  # prometheus_client's own parser
    got = {(x.name, frozenset(x.labels.items())): x.value for f in families.values() for x in f.samples}
    assert c["recipients_delivered"] > 0 and c["recipients_failed"] > 0 and c["messages_partial"] > 0
    assert c["recipients_delivered"] + c["recipients_failed"] == 3 * c["messages_sent"] == 120
    assert value(got, "smtpbench_lmtp_recipients_total", result="delivered") == c["recipients_delivered"]
    assert value(got, "smtpbench_lmtp_recipients_total", result="failed") == c["recipients_failed"]
    assert value(got, "smtpbench_lmtp_messages_partial_total") == c["messages_partial"]
    assert value(got, "smtpbench_proxy_sessions_announced_total") == s["proxy"]["sessions_announced"]
    assert s["proxy"]["sessions_announced"] == c["sessions_started"] > 0
    assert families["smtpbench_lmtp_recipients"].type == "counter"
    # Every dashboard panel, the TLS and LMTP ones included, asks for series this run's endpoint served.
    served = {name for (name, _) in got} | set(families)
    assert dashboard_metrics() <= served, dashboard_metrics() - served


def test_bad_metrics_ports_exit_2(tmp_path: Path) -> None:
    for bad in ("abc", "0", "70000", "-1"):
        code, out, err, _ = cli_run(tmp_path, 9, BUDGET, "--metrics-port", bad)
        assert_one_line_usage_error(code, out, err, f"--metrics-port {bad}", "output.metrics_port")
    code, out, err, _ = cli_run(tmp_path, 9, BUDGET + '[output]\nmetrics_port = "9100"\n')
    assert_one_line_usage_error(code, out, err, "output.metrics_port", "expected an integer between 1 and 65535")
    code, out, err, _ = cli_run(tmp_path, 9, BUDGET, "--set", "output.metrics_host=")
    assert_one_line_usage_error(code, out, err, "output.metrics_host")
    for bad in ("2h", "-1s", "soon"):
        code, out, err, _ = cli_run(tmp_path, 9, BUDGET, "--set", f"output.metrics_linger={bad}")
        assert_one_line_usage_error(code, out, err, "output.metrics_linger")


def test_a_port_in_use_is_a_run_error_before_any_traffic(tmp_path: Path) -> None:
    with socket.socket() as busy, SinkThread(store_messages=False) as srv:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        profile = tmp_path / "p.toml"
        profile.write_text(f'[target]\nhost = "127.0.0.1"\nport = {srv.port}\n' + BUDGET)
        args = ["run", str(profile), "--results-dir", str(tmp_path / "r"), "--metrics-port", str(taken)]
        code, _out, err = invoke(args)
        assert srv.stats.sessions_completed == 0
    assert code == EXIT_RUN_ERROR, err
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in err and "Traceback" not in err


def test_prometheus_client_is_imported_only_when_a_port_is_set() -> None:
    code = "import sys, smtpbench.cli, smtpbench.load.engine; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sigterm_during_the_linger_ends_it_and_keeps_the_exit_status(tmp_path: Path) -> None:
    """SIGTERM (a Kubernetes Job's stop) cuts ``metrics_linger`` short like Ctrl-C: the run's own exit code."""
    port = free_port()
    with SinkThread(store_messages=False) as srv:
        profile = tmp_path / "p.toml"
        profile.write_text(
            f'[target]\nhost = "127.0.0.1"\nport = {srv.port}\n{BUDGET}[output]\nmetrics_linger = "10m"\n'
        )
        results = tmp_path / "r"
        args = ["run", str(profile), "--results-dir", str(results), "--progress", "none", "--metrics-port", str(port)]
        proc = subprocess.Popen([sys.executable, "-m", "smtpbench", *args], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + SCRAPE_DEADLINE_S
            while not list(results.glob("*/summary.json")) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert list(results.glob("*/summary.json")), "the run did not end"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert b"smtpbench_run_info" in resp.read()  # lingering: the final figures still served
            proc.terminate()
            code = proc.wait(SCRAPE_DEADLINE_S)  # far below the 10 min linger
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=SCRAPE_DEADLINE_S)
    assert code == EXIT_OK, err
    assert "Traceback" not in err
