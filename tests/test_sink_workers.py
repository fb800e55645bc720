"""``smtpbench sink --workers N`` over loopback: one port, counts summed, signals forwarded, deaths reported."""

from __future__ import annotations

import json
import queue
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smtpbench.errors import ConfigError
from smtpbench.sink.cli import LISTENING_PREFIX, STATS_PREFIX
from smtpbench.sink.embedded import EmbeddedSink
from smtpbench.sink.model import MAX_CLIENT_ADDRESSES, OTHER_CLIENTS
from smtpbench.sink.workers import check_supported, merge_stats
from smtpbench.units import parse_workers_option, worker_count
from tests.sinkutil import RawClient

SINK = [sys.executable, "-m", "smtpbench", "sink"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs SO_REUSEPORT (Linux)")


def worker_pids(parent: int) -> list[int]:
    """The live child processes of ``parent`` (its workers), from /proc."""
    pids: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return sorted(pids)


def send_messages(port: int, connections: int, per_connection: int) -> None:
    """``connections`` sessions in parallel threads, each delivering ``per_connection`` messages."""
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                for j in range(per_connection):
                    s.sendmail(f"s{i}@x.example", ["u@example.test"], f"Subject: {i}.{j}\r\n\r\nhi\r\n".encode())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]


@linux_only
def test_workers_share_the_port_and_their_counts_add_up(tmp_path: Path) -> None:
    """Two workers: every message sent is counted once, both workers serve, stored ids never collide."""
    store = tmp_path / "store"
    sink = EmbeddedSink(["--workers", "2", "--store", str(store)])
    with sink as (_, port):
        send_messages(port, connections=40, per_connection=3)
    assert sink.returncode == 0, sink.stderr
    stats = sink.stats
    assert stats is not None
    assert stats["messages_accepted"] == 120 and stats["connections"] == 40
    assert stats["sessions_completed"] == 40 and stats["client_addresses"] == {"127.0.0.1": 40}
    assert stats["internal_errors"] == 0 and stats["aborted_sessions"] == 0
    workers = stats["workers"]
    assert [w["index"] for w in workers] == [0, 1] and all(w["status"] == "stopped" for w in workers)
    assert sum(w["messages_accepted"] for w in workers) == 120
    assert sum(w["connections"] for w in workers) == 40
    # 40 connections spread by the kernel's hash: all on one worker has probability 2**-39.
    assert all(w["connections"] > 0 for w in workers)
    assert len(list(store.glob("*.eml"))) == 120 and len(list(store.glob("*.json"))) == 120


@linux_only
def test_sigterm_reaches_every_worker_and_open_sessions_get_421() -> None:
    """Sessions open on both workers at the stop each get the shutdown 421; the parent prints one stats line."""
    proc = subprocess.Popen(
        SINK + ["--port", "0", "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(LISTENING_PREFIX + "127.0.0.1:")
        port = int(first.strip().rsplit(":", 1)[1])
        assert len(worker_pids(proc.pid)) == 2
        clients = [RawClient(port, timeout=10) for _ in range(12)]
        for c in clients:
            assert c.ehlo().code == 250
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            got = c.replies(1, timeout=10)
            assert got and got[0].code == 421
            c.close()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith(STATS_PREFIX)]
    assert len(lines) == 1 and "listening" not in out.replace(first, "")
    stats = json.loads(lines[0][len(STATS_PREFIX) :])
    assert stats["connections"] == 12 and stats["active"] == 0
    assert "Traceback" not in err


@linux_only
def test_a_dying_worker_is_reported_and_the_others_go_on() -> None:
    """SIGKILL one worker: the parent says so on stderr at once, the port stays served, exit code 3 at the end."""
    proc = subprocess.Popen(
        SINK + ["--port", "0", "--workers", "2", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])
        errors: queue.Queue[str] = queue.Queue()
        stderr_lines: list[str] = []

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append(line)
                errors.put(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        victim = worker_pids(proc.pid)[0]
        send_messages(port, connections=4, per_connection=1)
        time.sleep(3.5)  # three report intervals: the victim's counters reach the parent
        subprocess.run(["kill", "-KILL", str(victim)], check=True, timeout=10)
        line = errors.get(timeout=10)
        assert f"(pid {victim}) died: killed by SIGKILL" in line
        send_messages(port, connections=6, per_connection=1)  # the survivor takes every new connection
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        out = proc.stdout.read()
        reader.join(10)
        err = "".join(stderr_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 3
    stats = json.loads([x for x in out.splitlines() if x.startswith(STATS_PREFIX)][0][len(STATS_PREFIX) :])
    statuses = {w["pid"]: w["status"] for w in stats["workers"]}
    assert statuses[victim] == "died: killed by SIGKILL"
    assert sorted(statuses.values()) == ["died: killed by SIGKILL", "stopped"]
    assert stats["messages_accepted"] == 10  # the victim's share came in its report before it died
    assert "Traceback" not in err


@linux_only
def test_pause_and_resume_signals_reach_the_workers() -> None:
    """SIGUSR1 to the parent pauses every worker (no greeting), SIGUSR2 resumes them."""
    sink = EmbeddedSink(["--workers", "2"])
    with sink as (_, port):
        sink.send_signal(signal.SIGUSR1)
        time.sleep(2.0)  # parent -> workers: forwarded at once; 2 s is headroom on a loaded machine
        held = []
        for _ in range(6):  # on both workers, most likely
            c = RawClient(port, timeout=0.5, greet=False)
            assert c.replies(1, timeout=0.5) == []
            held.append(c)
        sink.send_signal(signal.SIGUSR2)
        for c in held:
            got = c.replies(1, timeout=10)
            assert got and got[0].code == 220
            c.close()
    assert sink.stats is not None and sink.stats["pauses"] == 1


@pytest.mark.parametrize("value", ["0", "-1", "1025", "many", "1.5"])
def test_bad_worker_counts_exit_2_with_one_line(value: str) -> None:
    proc = subprocess.run(SINK + ["--workers", value], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0] and "Traceback" not in proc.stderr
    assert '(expected an integer between 1 and 1024, or "auto")' in lines[0]  # the words of `run --workers`


def test_parse_workers() -> None:
    assert parse_workers_option("1") == 1 and parse_workers_option(" 16 ") == 16
    assert parse_workers_option("Auto") == "auto" and worker_count("auto") >= 1 and worker_count(3) == 3
    for bad in ("0", "1025", "-1", "x", ""):
        with pytest.raises(ConfigError):
            parse_workers_option(bad)
    if sys.platform.startswith("linux"):
        check_supported()


def test_merge_stats_sums_counters_keeps_shared_ones_and_bounds_addresses() -> None:
    a = {"messages_accepted": 3, "pauses": 1, "paused_ms": 900, "client_addresses": {"127.0.0.1": 2}}
    b = {"messages_accepted": 4, "pauses": 1, "paused_ms": 950, "client_addresses": {"127.0.0.1": 1, "::1": 5}}
    merged = merge_stats([a, b])
    assert merged == {
        "messages_accepted": 7,
        "pauses": 1,
        "paused_ms": 950,
        "client_addresses": {"127.0.0.1": 3, "::1": 5},
    }
    many = [{"client_addresses": {f"10.0.{i // 256}.{i % 256}": 1 for i in range(k, k + 800)}} for k in (0, 800)]
    addresses = merge_stats(many)["client_addresses"]
    assert len(addresses) == MAX_CLIENT_ADDRESSES + 1 and addresses[OTHER_CLIENTS] == 1600 - MAX_CLIENT_ADDRESSES
    assert sum(addresses.values()) == 1600


def test_reuse_port_listeners_share_one_port() -> None:
    """Two sockets from reuse_port_socket on one port both listen (what each worker does)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("SO_REUSEPORT spreading is Linux's")
    from smtpbench.sink.server import reuse_port_socket

    first = reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuse_port_socket("127.0.0.1", port)
    try:
        first.listen(8)
        second.listen(8)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()
